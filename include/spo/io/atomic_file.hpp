// SPDX-License-Identifier: MIT
/// @brief Crash-safe file replacement: write `<path>.tmp.<pid>`, fsync, rename over the target, fsync the directory.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "spo/core/error.hpp"

namespace spo::io {

namespace detail {
[[noreturn]] inline void throw_io(const std::filesystem::path& path, std::string_view what, int err) {
  throw error(path.string() + ": " + std::string(what) + ": " + std::strerror(err));
}
}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    A pending replacement of the file at `path` (POSIX). Bytes go to `<path>.tmp.<pid>`; commit() flushes and
    fsyncs them, renames the temporary over `path` (atomic on POSIX file systems) and fsyncs the directory so the
    rename itself survives a crash.
  ENSURES
    - Readers of `path` see either the old content or the complete new content, never a mixture.
    - If commit() is not reached (an exception, an early return) the destructor removes the temporary and `path`
      is untouched. Any failed system call throws spo::error naming the path and errno's message.
!*/
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path)
      : path_(std::move(path)), tmp_(path_.string() + ".tmp." + std::to_string(::getpid())) {
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (!file_) detail::throw_io(tmp_, "cannot create temporary file", errno);
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter() { discard(); }

  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& temporary_path() const { return tmp_; }

  void write(const void* data, std::size_t bytes) {
    SPO_CHECK(file_ != nullptr, path_.string() << ": write after commit or discard");
    if (bytes && std::fwrite(data, 1, bytes, file_) != bytes) detail::throw_io(tmp_, "write failed", errno);
  }
  void write(std::string_view s) { write(s.data(), s.size()); }
  void write(std::span<const std::byte> s) { write(s.data(), s.size()); }

  void commit() {
    SPO_CHECK(file_ != nullptr, path_.string() << ": commit after commit or discard");
    if (std::fflush(file_) != 0) detail::throw_io(tmp_, "flush failed", errno);
    if (::fsync(::fileno(file_)) != 0) detail::throw_io(tmp_, "fsync failed", errno);
    std::FILE* f = std::exchange(file_, nullptr);
    if (std::fclose(f) != 0) {
      const int err = errno;
      std::remove(tmp_.c_str());
      detail::throw_io(tmp_, "close failed", err);
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const int err = errno;
      std::remove(tmp_.c_str());
      detail::throw_io(path_, "rename from " + tmp_.string() + " failed", err);
    }
    fsync_directory(path_.has_parent_path() ? path_.parent_path() : std::filesystem::path("."));
  }

  /// Abandons the write: closes and removes the temporary. Called by the destructor when commit() was not reached.
  void discard() noexcept {
    if (file_) {
      std::fclose(file_);
      file_ = nullptr;
      std::remove(tmp_.c_str());
    }
  }

  static void fsync_directory(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) detail::throw_io(dir, "cannot open directory for fsync", errno);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) detail::throw_io(dir, "directory fsync failed", err);
  }

 private:
  std::filesystem::path path_, tmp_;
  std::FILE* file_ = nullptr;
};

/// Replaces `path` with `bytes` atomically (see AtomicFileWriter).
inline void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit();
}
inline void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  AtomicFileWriter w(path);
  w.write(text);
  w.commit();
}

/// Whole file as bytes; a missing or unreadable file throws spo::error naming the path.
inline std::vector<std::byte> read_file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::throw_io(path, "cannot open for reading", errno);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) detail::throw_io(path, "cannot determine size", errno);
  in.seekg(0);
  std::vector<std::byte> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) detail::throw_io(path, "read failed", errno);
  return bytes;
}

inline std::string read_file_text(const std::filesystem::path& path) {
  const auto bytes = read_file_bytes(path);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace spo::io
