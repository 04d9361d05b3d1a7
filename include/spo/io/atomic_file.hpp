// SPDX-License-Identifier: MIT
/// @brief Crash-safe file replacement (write `<path>.tmp.<pid>`, fsync, rename over the target, fsync the directory),
/// removal of temporaries orphaned by killed processes, and whole-file reads of regular files.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

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

/*!
  ENSURES
    - Returns normally when `path` names a regular file, following symbolic links.
    - Otherwise throws spo::input_error "<path>: no such file", "<path>: is a directory, expected a file",
      "<path>: not a regular file" (a FIFO, socket or device) or "<path>: cannot access: <reason>".
    - Every reader of whole files (read_file_bytes, read_file_text, load_safetensors) calls it first, so that a
      directory or a FIFO given where a file is expected is reported as such rather than read as garbage or waited on.
!*/
inline void require_regular_file(const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (st.type() == std::filesystem::file_type::not_found) throw input_error(path.string() + ": no such file");
  if (ec) throw input_error(path.string() + ": cannot access: " + ec.message());
  if (st.type() == std::filesystem::file_type::directory)
    throw input_error(path.string() + ": is a directory, expected a file");
  if (st.type() != std::filesystem::file_type::regular) throw input_error(path.string() + ": not a regular file");
}

/// Whole file as bytes; a path that is not a regular file throws spo::input_error (require_regular_file), a failed
/// read spo::error, both naming the path.
inline std::vector<std::byte> read_file_bytes(const std::filesystem::path& path) {
  require_regular_file(path);
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

namespace detail {
/// The pid of a file name "<name>.tmp.<pid>" (as AtomicFileWriter names its temporaries): a non-empty <name> and
/// <pid> all decimal digits, positive and within pid_t; otherwise 0.
inline pid_t temporary_owner(std::string_view filename) {
  const std::size_t dot = filename.rfind(".tmp.");
  if (dot == std::string_view::npos || dot == 0) return 0;
  const std::string_view digits = filename.substr(dot + 5);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) return 0;
  pid_t pid = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (ec != std::errc() || end != digits.data() + digits.size() || pid <= 0) return 0;
  return pid;
}
}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    Clean-up after crashes: a process killed while an AtomicFileWriter was open (kill -9, power loss) leaves its
    `<path>.tmp.<pid>` behind, and no later run would ever remove it.
  ENSURES
    - Removes every regular file directly in `dir` (not in subdirectories) named "<name>.tmp.<pid>" whose pid
      names no live process (kill(pid, 0) fails with ESRCH), and returns the removed paths in directory order.
    - Temporaries of live processes (this one included) are kept: they may be writes in progress. So are
      directories, symbolic links and names that do not match. A missing `dir` removes nothing.
    - Pids are those of this machine's (and pid namespace's) processes: call it only on directories that no process
      of another machine or container writes to at the same time.
    - A failure to list `dir` or to remove a file throws spo::error naming the path.
!*/
inline std::vector<std::filesystem::path> remove_orphaned_temporaries(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> removed;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return removed;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) throw error(dir.string() + ": cannot list directory: " + ec.message());
  for (const auto& entry : it) {
    const pid_t pid = detail::temporary_owner(entry.path().filename().native());
    if (pid == 0 || !entry.is_regular_file(ec) || entry.is_symlink(ec)) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or alive under another user (EPERM)
    if (!std::filesystem::remove(entry.path(), ec) && ec)
      throw error(entry.path().string() + ": cannot remove orphaned temporary: " + ec.message());
    removed.push_back(entry.path());
  }
  return removed;
}

}  // namespace spo::io
