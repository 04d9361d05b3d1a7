// SPDX-License-Identifier: MIT
/// @brief A safetensors file mapped into memory and read tensor by tensor: a multi-GB checkpoint is never copied
/// whole, and the pages of a tensor already converted can be given back.
#pragma once

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/safetensors.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace spo::io {

/*!
  WHAT THIS REPRESENTS
    One safetensors file, validated as load_safetensors validates it (the same header checks and messages), with its
    data mapped read-only instead of read: bytes(name) points into the mapping. A TensorStore.
    release(name) tells the kernel the pages of that tensor are no longer needed, so a checkpoint converted tensor by
    tensor into a model never holds more than about one tensor of the file in resident memory.
  ENSURES
    - a missing path, a directory, a file that cannot be mapped or a corrupt header: spo::input_error / spo::error
      naming the path
    - movable, not copyable; the mapping lives as long as the object
!*/
class MappedSafetensors {
 public:
  std::string source;
  std::map<std::string, std::string> metadata;

  explicit MappedSafetensors(const std::filesystem::path& path) : source(path.string()) {
    require_regular_file(path);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) detail::throw_io(path, "cannot open for reading", errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      detail::throw_io(path, "cannot determine size", err);
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        detail::throw_io(path, "cannot map into memory", err);
      }
      base_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);
    try {
      parse();
    } catch (...) {
      unmap();
      throw;
    }
  }
  MappedSafetensors(MappedSafetensors&& o) noexcept
      : source(std::move(o.source)),
        metadata(std::move(o.metadata)),
        base_(std::exchange(o.base_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        data_begin_(o.data_begin_),
        entries_(std::move(o.entries_)) {}
  MappedSafetensors& operator=(MappedSafetensors&& o) noexcept {
    if (this != &o) {
      unmap();
      source = std::move(o.source);
      metadata = std::move(o.metadata);
      base_ = std::exchange(o.base_, nullptr);
      size_ = std::exchange(o.size_, 0);
      data_begin_ = o.data_begin_;
      entries_ = std::move(o.entries_);
    }
    return *this;
  }
  MappedSafetensors(const MappedSafetensors&) = delete;
  MappedSafetensors& operator=(const MappedSafetensors&) = delete;
  ~MappedSafetensors() { unmap(); }

  bool contains(std::string_view name) const { return entries_.find(name) != entries_.end(); }
  std::size_t size() const { return entries_.size(); }
  std::vector<std::string> names() const { return detail::keys_of(entries_); }
  TensorBytes bytes(std::string_view name) const {
    const Entry& e = entry(name);
    return {e.dtype, e.shape, {base_ + data_begin_ + e.begin, static_cast<std::size_t>(e.end - e.begin)}};
  }
  /// Gives the whole pages inside tensor `name`'s bytes back to the kernel (they are re-read from the file if
  /// touched again).
  void release(std::string_view name) const {
    const Entry& e = entry(name);
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto first = reinterpret_cast<std::uintptr_t>(base_ + data_begin_ + e.begin);
    const auto last = reinterpret_cast<std::uintptr_t>(base_ + data_begin_ + e.end);
    const std::uintptr_t lo = (first + page - 1) / page * page, hi = last / page * page;
    if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  }

 private:
  struct Entry {
    Dtype dtype = Dtype::f32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0, end = 0;
  };

  const Entry& entry(std::string_view name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw input_error(source + ": no tensor named \"" + std::string(name) + "\"");
    return it->second;
  }

  void parse() {
    if (size_ < 8)
      detail::corrupt(source, "file has " + std::to_string(size_) + " bytes, fewer than the 8-byte header length");
    const auto n = detail::load_le<std::uint64_t>(base_);
    if (n > safetensors_max_header_bytes)
      detail::corrupt(source, "header length " + std::to_string(n) + " exceeds the limit of " +
                                  std::to_string(safetensors_max_header_bytes) + " bytes");
    if (n > size_ - 8)
      detail::corrupt(source, "header length " + std::to_string(n) + " is past the end of the " +
                                  std::to_string(size_) + "-byte file");
    const std::string_view text(reinterpret_cast<const char*>(base_ + 8), n);
    detail::ParsedHeader h = detail::parse_header(text, size_ - 8 - n, source);
    data_begin_ = 8 + n;
    metadata = std::move(h.metadata);
    for (auto& e : h.entries)
      entries_.emplace(std::move(e.name), Entry{e.info.dtype, std::move(e.info.shape), e.begin, e.end});
  }

  void unmap() {
    if (base_) ::munmap(const_cast<std::byte*>(base_), size_);
    base_ = nullptr;
  }

  const std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t data_begin_ = 0;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace spo::io
