// SPDX-License-Identifier: MIT
// fill_normal / fill_uniform on spo::cuda produce the CPU's Philox stream and advance the generator identically.
// Bounds (stated per case): uniform numbers are exact (integer Philox, exact 2^-24 scaling, lo = 0, hi = 1);
// normal numbers use the device's double log/sin/cos (<= 2 ulp in double, CUDA math guide) against glibc's, so
// double results agree to 1e-14 relative and float results, rounded once from double, to 1 ulp (2^-23 relative).
#include <cstring>

#include <doctest/doctest.h>

#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/rng.cuh"

#include "reference.hpp"

using namespace spo;

namespace {
template <class T>
constexpr double normal_rel_tol = std::is_same_v<T, float> ? 0x1p-23 : 1e-14;
}  // namespace

TEST_CASE_TEMPLATE("fill_normal: device == CPU stream at odd sizes and offsets; generators end equal", T, float,
                   double) {
  for (const std::int64_t n :
       {std::int64_t{1}, std::int64_t{3}, std::int64_t{5}, std::int64_t{1023}, (std::int64_t{1} << 20) + 3}) {
    for (const std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{7}, std::uint64_t{1} << 33}) {
      INFO("n = " << n << ", offset = " << offset << ", seed = 20240611");
      Generator g_cpu{20240611, offset}, g_dev{20240611, offset};
      auto h = Tensor<T, cpu>::uninitialized(Shape{n});
      cuda_test::cpu_fill_normal(h, g_cpu, T(0), T(1));
      auto d = Tensor<T, cuda>::uninitialized(Shape{n});
      fill_normal(d.view(), g_dev);
      CHECK(g_dev == g_cpu);
      CHECK(cuda_test::worst_ratio(to_host(d), h, 1e-300, normal_rel_tol<T>) <= 1.0);
    }
  }
}

TEST_CASE_TEMPLATE("fill_normal with mean and stddev; consecutive draws continue the stream", T, float, double) {
  Generator g_cpu{5, 0}, g_dev{5, 0};
  auto h1 = Tensor<T, cpu>::uninitialized(Shape{777}), h2 = Tensor<T, cpu>::uninitialized(Shape{64, 9});
  cuda_test::cpu_fill_normal(h1, g_cpu, T(0.5), T(3));
  cuda_test::cpu_fill_normal(h2, g_cpu, T(-2), T(0.25));
  auto d1 = Tensor<T, cuda>::uninitialized(Shape{777}), d2 = Tensor<T, cuda>::uninitialized(Shape{64, 9});
  fill_normal(d1.view(), g_dev, T(0.5), T(3));
  fill_normal(d2.view(), g_dev, T(-2), T(0.25));
  CHECK(g_dev == g_cpu);
  // mean + stddev * z: the device may fuse the multiply-add (one rounding less), so allow 1 ulp of the larger term.
  CHECK(cuda_test::worst_ratio(to_host(d1), h1, 4 * normal_rel_tol<T>, 4 * normal_rel_tol<T>) <= 1.0);
  CHECK(cuda_test::worst_ratio(to_host(d2), h2, 4 * normal_rel_tol<T>, 4 * normal_rel_tol<T>) <= 1.0);
}

TEST_CASE_TEMPLATE("fill_uniform: bitwise equal to the CPU on [0, 1); within 1 ulp on [lo, hi)", T, float, double) {
  for (const std::int64_t n : {std::int64_t{2}, std::int64_t{4099}, std::int64_t{1} << 18}) {
    INFO("n = " << n << ", seed = 99");
    Generator g_cpu{99, 3}, g_dev{99, 3};
    auto h = Tensor<T, cpu>::uninitialized(Shape{n});
    cuda_test::cpu_fill_uniform(h, g_cpu, T(0), T(1));
    auto d = Tensor<T, cuda>::uninitialized(Shape{n});
    fill_uniform(d.view(), g_dev);
    CHECK(g_dev == g_cpu);
    const auto back = to_host(d);
    CHECK(std::memcmp(back.data(), h.data(), h.bytes()) == 0);

    cuda_test::cpu_fill_uniform(h, g_cpu, T(-3), T(5));
    fill_uniform(d.view(), g_dev, T(-3), T(5));
    const double ulp = std::is_same_v<T, float> ? 0x1p-23 : 0x1p-52;
    CHECK(cuda_test::worst_ratio(to_host(d), h, 8 * ulp, ulp) <= 1.0);
  }
}
