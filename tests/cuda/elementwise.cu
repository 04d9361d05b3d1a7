// SPDX-License-Identifier: MIT
// axpy, scale, fill, conversions between storage scalars and SiLU forward/backward on spo::cuda against the CPU
// (spo::axpy, spo::scale, spo::convert_scalar, cpu_kernels::activation_*).
// Bounds, per element, written as |gpu - cpu| <= abs + rel |cpu|:
//   axpy: one rounding each side, a fused multiply-add on either: float abs 0, rel 2^-22 of |alpha x| + |y| terms;
//   scale: one rounded product each side: exact;
//   fill: exact;
//   convert: bitwise (the device runs the host's convert_scalar): every 16-bit pattern out of half / bfloat16, and
//            floats into them at every rounding boundary kind (ties, subnormals, overflow, NaN, -0);
//   SiLU: the CPU float logistic is Eigen's rational approximation (a few ulp on [-9, 18], exp(x) below -9, which
//         is off by a relative e^x <= 1.3e-4 there, i.e. <= 2e-7 absolute in x s(x)); the device uses expf (2 ulp):
//         float forward abs 1e-6 rel 1e-6; backward abs 2e-6 |dy| rel 2e-6. double (exp on both sides, <= 2 ulp):
//         abs 1e-15 (1 + |dy|) rel 1e-13.
#include <cmath>
#include <cstring>
#include <vector>

#include <doctest/doctest.h>

#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/rng.cuh"

#include "reference.hpp"

using namespace spo;

TEST_CASE_TEMPLATE("axpy == spo::axpy (shapes checked, odd sizes, in the caller's scale)", T, float, double) {
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{255}, std::int64_t{257}, std::int64_t{300001}}) {
    INFO("n = " << n << ", seed = 31");
    Generator g{31, 0};
    auto x = Tensor<T, cpu>::uninitialized(Shape{n}), y = Tensor<T, cpu>::uninitialized(Shape{n});
    cuda_test::cpu_fill_normal(x, g, T(0), T(1));
    cuda_test::cpu_fill_normal(y, g, T(0), T(1));
    auto dx = to_device(x);
    auto dy = to_device(y);
    const T alpha = T(-1.75);
    axpy<T>(alpha, dx.view(), dy.view());
    Tensor<T, cpu> ref = y;
    cuda_test::cpu_axpy(alpha, x, ref);
    const auto got = to_host(dy);
    const double ulp = std::is_same_v<T, float> ? 0x1p-23 : 0x1p-52;
    for (std::int64_t i = 0; i < n; ++i) {
      const double scale = std::abs(static_cast<double>(alpha) * x[i]) + std::abs(static_cast<double>(y[i]));
      REQUIRE(std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i])) <= 2 * ulp * scale);
    }
  }
  Tensor<T, cuda> a(Shape{2, 3}), b(Shape{3, 2});
  CHECK_THROWS_WITH_AS(axpy<T>(T(1), a.view(), b.view()), doctest::Contains("[3, 2]"), spo::error);
}

TEST_CASE_TEMPLATE("scale == spo::scale bitwise (odd sizes, a power of two and an arbitrary factor)", T, float,
                   double) {
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{257}, std::int64_t{300001}})
    for (const T alpha : {T(0x1p-16), T(-0.3)}) {
      INFO("n = " << n << ", alpha = " << alpha);
      Generator g{32, 0};
      auto y = Tensor<T, cpu>::uninitialized(Shape{n});
      cuda_test::cpu_fill_normal(y, g, T(0), T(1));
      auto dy = to_device(y);
      scale<T>(alpha, dy.view());
      cuda_test::cpu_scale(alpha, y);
      const auto got = to_host(dy);
      REQUIRE(std::memcmp(got.data(), y.data(), static_cast<std::size_t>(n) * sizeof(T)) == 0);
    }
}

TEST_CASE_TEMPLATE("convert == convert_scalar bitwise: every 16-bit pattern out, special and random floats in", H,
                   spo::half, bfloat16) {
  // Out of H: all 65536 patterns, NaNs included (their payloads survive the conversion to float).
  Tensor<H, cpu> all(Shape{1 << 16});  // [65536]
  for (std::int64_t i = 0; i < all.numel(); ++i) all[i] = H::from_bits(static_cast<std::uint16_t>(i));
  const auto wide = to_host(cast<float>(to_device(all)));  // [65536]
  std::int64_t out_mismatch = 0;
  for (std::int64_t i = 0; i < all.numel(); ++i) {
    const float want = convert_scalar<float>(all[i]);
    out_mismatch += std::memcmp(&want, &wide[i], sizeof(float)) != 0;
  }
  CHECK(out_mismatch == 0);
  // Into H: the widened patterns themselves, their midpoints with the next pattern (ties), +-0, +-inf, NaN, the
  // overflow threshold neighbourhood, tiny subnormals, and 200001 normal draws at several scales.
  std::vector<float> in(wide.data(), wide.data() + wide.numel());
  for (std::int64_t i = 0; i + 1 < wide.numel(); ++i)
    if (std::isfinite(wide[i]) && std::isfinite(wide[i + 1])) in.push_back(0.5f * (wide[i] + wide[i + 1]));
  for (float v : {0.f, -0.f, INFINITY, -INFINITY, NAN, 65504.f, 65519.f, 65520.f, 65536.f, 1e-8f, -3e-8f, 6e-8f,
                  3.4e38f, -3.4e38f, 1e-40f})
    in.push_back(v);
  Generator g{5, 0};
  auto r = Tensor<float, cpu>::uninitialized(Shape{200001});  // [200001]
  cuda_test::cpu_fill_normal(r, g, 0.f, 1.f);
  for (std::int64_t i = 0; i < r.numel(); ++i) in.push_back(r[i] * std::ldexp(1.f, static_cast<int>(i % 61) - 30));
  Tensor<float, cpu> x(Shape{static_cast<std::int64_t>(in.size())}, in);  // [n]
  const auto narrow = to_host(cast<H>(to_device(x)));                     // [n]
  std::int64_t in_mismatch = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) in_mismatch += !(narrow[i] == convert_scalar<H>(x[i]));
  CHECK(in_mismatch == 0);
}

TEST_CASE("convert between float and double == the C++ conversions") {
  Generator g{6, 0};
  auto d = Tensor<double, cpu>::uninitialized(Shape{100003});  // [100003]
  cuda_test::cpu_fill_normal(d, g, 0.0, 1e3);
  const auto f = to_host(cast<float>(to_device(d)));  // [100003]
  const auto back = to_host(cast<double>(to_device(f)));
  std::int64_t mismatch = 0;
  for (std::int64_t i = 0; i < d.numel(); ++i)
    mismatch += f[i] != static_cast<float>(d[i]) || back[i] != static_cast<double>(f[i]);
  CHECK(mismatch == 0);
}

TEST_CASE_TEMPLATE("fill sets every element exactly", T, float, double) {
  auto t = Tensor<T, cuda>::uninitialized(Shape{3, 1000, 7});
  fill(t.view(), T(0.3));
  const auto h = to_host(t);
  for (std::int64_t i = 0; i < h.numel(); ++i) REQUIRE(h[i] == T(0.3));
}

TEST_CASE_TEMPLATE("SiLU forward and backward == cpu_kernels::activation_* with nn::SiLUFunction", T, float, double) {
  constexpr bool is_float = std::is_same_v<T, float>;
  Generator g{41, 0};
  const std::int64_t n = 100003;
  auto x = Tensor<T, cpu>::uninitialized(Shape{n}), dy = Tensor<T, cpu>::uninitialized(Shape{n});
  cuda_test::cpu_fill_normal(x, g, T(0), T(4));
  cuda_test::cpu_fill_normal(dy, g, T(0), T(1));
  const std::vector<T> special{T(0),   T(-0.0), T(1),  T(-1), T(-1.2785), T(-9),  T(-9.5),
                               T(-30), T(18),   T(25), T(80), T(-80),     T(-100)};
  for (std::size_t i = 0; i < special.size(); ++i) x[static_cast<std::int64_t>(i)] = special[i];

  Tensor<T, cpu> y_ref(Shape{n}), dx_ref(Shape{n});
  cuda_test::cpu_silu_forward(x.data(), y_ref.data(), n);
  cuda_test::cpu_silu_backward(x.data(), dy.data(), dx_ref.data(), n);

  const auto d_x = to_device(x), d_dy = to_device(dy);
  Tensor<T, cuda> d_y(Shape{n}), d_dx(Shape{n});
  cuda_kernels::activation_forward<cuda_kernels::SiluOp, T>(d_x.data(), d_y.data(), n);
  cuda_kernels::activation_backward<cuda_kernels::SiluOp, T>(d_x.data(), d_dy.data(), d_dx.data(), n);
  const auto y = to_host(d_y), dx = to_host(d_dx);

  const double f_abs = is_float ? 1e-6 : 1e-15, f_rel = is_float ? 1e-6 : 1e-13;
  const double b_abs = is_float ? 2e-6 : 1e-15, b_rel = is_float ? 2e-6 : 1e-13;
  double worst_f = 0, worst_b = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    INFO("x = " << x[i] << ", dy = " << dy[i]);
    const double ef = std::abs(static_cast<double>(y[i]) - y_ref[i]) / (f_abs + f_rel * std::abs(y_ref[i]));
    const double eb = std::abs(static_cast<double>(dx[i]) - dx_ref[i]) /
                      (b_abs * (1 + std::abs(static_cast<double>(dy[i]))) + b_rel * std::abs(dx_ref[i]));
    REQUIRE(ef <= 1.0);
    REQUIRE(eb <= 1.0);
    worst_f = std::max(worst_f, ef);
    worst_b = std::max(worst_b, eb);
  }
  MESSAGE("worst error / bound: forward " << worst_f << ", backward " << worst_b);

  // In place, as the CPU layers allow.
  auto inplace = d_x;
  cuda_kernels::activation_forward<cuda_kernels::SiluOp, T>(inplace.data(), inplace.data(), n);
  const auto y_inplace = to_host(inplace);
  CHECK(std::memcmp(y_inplace.data(), y.data(), y.bytes()) == 0);
}
