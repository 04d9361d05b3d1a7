// SPDX-License-Identifier: MIT
/// @brief oneDNN engine and stream of the process, and a shape-keyed cache of primitives (creation costs 0.15-2 ms).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

#include "spo/core/error.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cpu_kernels {

/*!
  WHAT THIS REPRESENTS
    The CPU engine and one in-order stream shared by every oneDNN call of the library. oneDNN runs on the
    process's OpenMP pool (Debian's build uses the OpenMP runtime), the same pool as spo::parallel_for and Eigen.
!*/
class DnnlContext {
 public:
  static DnnlContext& instance() {
    static DnnlContext* ctx = new DnnlContext();  // leaked on purpose: primitives may outlive static objects
    return *ctx;
  }
  const dnnl::engine& engine() const { return engine_; }
  dnnl::stream& stream() { return stream_; }

 private:
  DnnlContext() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}
  dnnl::engine engine_;
  dnnl::stream stream_;
};

/// A cache key: the operation kind and up to 16 integers describing the problem (shapes, strides, flags).
struct DnnlKey {
  std::int32_t kind = 0;
  std::array<std::int64_t, 16> v{};

  friend bool operator==(const DnnlKey& a, const DnnlKey& b) { return a.kind == b.kind && a.v == b.v; }
};

struct DnnlKeyHash {
  std::size_t operator()(const DnnlKey& k) const noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull ^ static_cast<std::uint64_t>(k.kind);
    for (std::int64_t x : k.v) h = (h ^ static_cast<std::uint64_t>(x)) * 0x100000001b3ull;
    return static_cast<std::size_t>(h ^ (h >> 29));
  }
};

/// Bit pattern of a float as a key entry (alpha/beta baked into a primitive's attributes).
inline std::int64_t float_key(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return static_cast<std::int64_t>(u);
}

/*!
  WHAT THIS REPRESENTS
    A process-wide map from DnnlKey to an entry E (primitive descriptors, primitives, memory descriptors) built
    once by a factory. Entries are never evicted: a training run sees a handful of distinct shapes.
  THREAD SAFETY
    get() may be called concurrently; the returned reference stays valid for the life of the process.
!*/
template <class E>
class DnnlCache {
 public:
  static DnnlCache& instance() {
    static DnnlCache* cache = new DnnlCache();
    return *cache;
  }
  const E& get(const DnnlKey& key, const std::function<E()>& make) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) it = map_.emplace(key, std::make_unique<E>(make())).first;
    return *it->second;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return map_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<DnnlKey, std::unique_ptr<E>, DnnlKeyHash> map_;
};

/// A float buffer from spo's caching allocator holding one oneDNN memory of descriptor md (any layout).
struct DnnlBuffer {
  Tensor<float, cpu> storage;
  dnnl::memory mem;

  DnnlBuffer() = default;
  explicit DnnlBuffer(const dnnl::memory::desc& md) {
    const std::int64_t n = static_cast<std::int64_t>((md.get_size() + sizeof(float) - 1) / sizeof(float));
    storage = Tensor<float, cpu>::uninitialized(Shape{n});
    mem = dnnl::memory(md, DnnlContext::instance().engine(), storage.data());
  }
};

/// A oneDNN memory over caller-owned data (no copy).
inline dnnl::memory dnnl_wrap(const dnnl::memory::desc& md, const void* data) {
  return dnnl::memory(md, DnnlContext::instance().engine(), const_cast<void*>(data));
}

}  // namespace spo::cpu_kernels
