// SPDX-License-Identifier: MIT
// Tensor<T, cuda> on the device: uploads and downloads are exact, copies are deep, zero-filling and the caching
// allocator behave as on the CPU; a Stream works. Bounds: every comparison here is exact (bitwise).
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include <doctest/doctest.h>

#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"

#include "reference.hpp"

using namespace spo;

namespace {
template <class T>
bool bitwise_equal(const Tensor<T, cpu>& a, const Tensor<T, cpu>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}
}  // namespace

TEST_CASE_TEMPLATE("to_device / to_host round-trip every bit; shapes are kept", T, float, double) {
  Generator g{11, 0};
  Tensor<T, cpu> h = Tensor<T, cpu>::uninitialized(Shape{3, 5, 7});
  cuda_test::cpu_fill_normal(h, g, T(0), T(1));
  h[0] = std::numeric_limits<T>::quiet_NaN();
  h[1] = -std::numeric_limits<T>::infinity();
  h[2] = T(-0.0);
  h[3] = std::numeric_limits<T>::denorm_min();
  const Tensor<T, cuda> d = to_device(h);
  CHECK(d.shape() == Shape{3, 5, 7});
  CHECK(d.numel() == 105);
  const Tensor<T, cpu> back = to_host(d);
  CHECK(bitwise_equal(back, h));
}

TEST_CASE("Tensor<T, cuda>: zero-filled construction, deep copy, assignment across sizes, move, reshape") {
  Tensor<float, cuda> z(Shape{4, 33});
  const auto hz = to_host(z);
  for (std::int64_t i = 0; i < hz.numel(); ++i) REQUIRE(hz[i] == 0.f);

  Tensor<float, cpu> h(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor<float, cuda> a = to_device(h);
  Tensor<float, cuda> b = a;  // deep copy: changing a afterwards leaves b alone
  fill(a.view(), 7.f);
  CHECK(bitwise_equal(to_host(b), h));
  CHECK(to_host(a)[5] == 7.f);
  CHECK(a.data() != b.data());

  Tensor<float, cuda> c(Shape{10});
  c = b;  // different element count: reallocates
  CHECK(c.shape() == Shape{2, 3});
  CHECK(bitwise_equal(to_host(c), h));

  const float* p = c.data();
  Tensor<float, cuda> m = std::move(c);
  CHECK(m.data() == p);
  CHECK(c.empty());
  m.reshape(Shape{3, 2});
  CHECK(to_host(m).shape() == Shape{3, 2});
  m.fill_zero();
  CHECK(to_host(m)[4] == 0.f);

  Tensor<float, cuda> e;  // empty tensors copy and transfer without touching the device
  Tensor<float, cuda> e2 = e;
  CHECK(e2.empty());
  CHECK(to_host(e2).empty());
}

TEST_CASE("caching_allocator<cuda> hands a freed block of the same size class back; in-use bytes are counted") {
  auto& pool = caching_allocator<cuda>::instance();
  const std::size_t in_use = pool.in_use_bytes();
  const float* first = nullptr;
  {
    auto t = Tensor<float, cuda>::uninitialized(Shape{1000});  // 4000 bytes -> the 4 KiB class
    first = t.data();
    CHECK(pool.in_use_bytes() == in_use + 4096);
    CHECK(reinterpret_cast<std::uintptr_t>(first) % raw_allocator<cuda>::alignment == 0);
  }
  CHECK(pool.in_use_bytes() == in_use);
  auto again = Tensor<float, cuda>::uninitialized(Shape{1024});  // same class
  CHECK(again.data() == first);
}

TEST_CASE("Stream: create, work on it, synchronize, move; the device is described") {
  cuda_runtime::Stream s;
  CHECK(s.get() != nullptr);
  auto t = Tensor<double, cuda>::uninitialized(Shape{1 << 16});
  cuda_kernels::Fill<double>::run({t.numel(), 2.5, t.data()}, s);
  s.synchronize();
  cuda_runtime::Stream moved = std::move(s);
  CHECK(s.get() == nullptr);
  CHECK(moved.get() != nullptr);
  CHECK(to_host(t)[(1 << 16) - 1] == 2.5);
  const std::string d = cuda_runtime::device_description(0);
  MESSAGE("device: " << d);
  CHECK(d.find(cuda_runtime::device_name(0)) == 0);
  CHECK(d.find("sm_") != std::string::npos);
}
