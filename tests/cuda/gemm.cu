// SPDX-License-Identifier: MIT
// cuda_kernels::gemm against cpu_kernels::gemm (oneDNN sgemm / Eigen) on the same row-major operands.
// Bound, per element: |C_gpu - C_cpu| <= 2 (k + 2) u (|alpha| sum_l |op(A)_il op(B)_lj| + |beta C0_ij|), the sum of
// the two implementations' standard error bounds (Higham, Accuracy and Stability, 3.5), u = 2^-24 (float) or 2^-53
// (double); with TF32 allowed the inputs carry 2^-11 relative rounding, so u_in = 2^-11 is added per product.
// half / bfloat16 (16-bit A, B, C; FP32 accumulation): against the exact product of the 16-bit inputs (in double),
// |C_gpu - C| <= 2 (k + 2) 2^-24 (|alpha| sum |a b| + |beta C0|) + u16 |C| + 2^-24, where u16 = 2^-11 (half) or 2^-8
// (bfloat16) is the one rounding of the result to 16 bits.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "spo/tensor/cuda/gemm.hpp"
#include "spo/tensor/cuda/memory.hpp"

#include "reference.hpp"

using namespace spo;

namespace {

struct Case {
  bool trans_a, trans_b;
  std::int64_t m, n, k, pad;  // leading dimension = columns + pad
  double alpha, beta;
};

template <class T>
void check_case(const Case& c, std::uint64_t seed, bool allow_tf32 = false) {
  INFO("trans_a " << c.trans_a << " trans_b " << c.trans_b << " m " << c.m << " n " << c.n << " k " << c.k << " pad "
                  << c.pad << " alpha " << c.alpha << " beta " << c.beta << " tf32 " << allow_tf32 << " seed " << seed);
  const std::int64_t a_rows = c.trans_a ? c.k : c.m, a_cols = c.trans_a ? c.m : c.k;
  const std::int64_t b_rows = c.trans_b ? c.n : c.k, b_cols = c.trans_b ? c.k : c.n;
  const std::int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  Generator g{seed, 0};
  auto a = Tensor<T, cpu>::uninitialized(Shape{std::max<std::int64_t>(a_rows * lda, 1)});
  auto b = Tensor<T, cpu>::uninitialized(Shape{std::max<std::int64_t>(b_rows * ldb, 1)});
  auto c0 = Tensor<T, cpu>::uninitialized(Shape{std::max<std::int64_t>(c.m * ldc, 1)});
  cuda_test::cpu_fill_normal(a, g, T(0), T(1));
  cuda_test::cpu_fill_normal(b, g, T(0), T(1));
  cuda_test::cpu_fill_normal(c0, g, T(0), T(1));
  if (c.beta == 0)  // beta == 0 must not read C: NaN there must not reach the result
    for (std::int64_t i = 0; i < c0.numel(); ++i) c0[i] = std::numeric_limits<T>::quiet_NaN();

  Tensor<T, cpu> c_cpu = c0;
  cuda_test::cpu_gemm(c.trans_a, c.trans_b, c.m, c.n, c.k, T(c.alpha), a.data(), lda, b.data(), ldb, T(c.beta),
                      c_cpu.data(), ldc);
  const auto da = to_device(a), db = to_device(b);
  auto dc = to_device(c0);
  cuda_kernels::Gemm<T>::run({c.trans_a, c.trans_b, c.m, c.n, c.k, T(c.alpha), da.data(), lda, db.data(), ldb,
                              T(c.beta), dc.data(), ldc, allow_tf32});
  const auto c_gpu = to_host(dc);

  const double u = std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
  const double u_in = allow_tf32 ? 0x1p-11 : 0.0;
  double worst = 0;
  for (std::int64_t i = 0; i < c.m; ++i)
    for (std::int64_t j = 0; j < c.n; ++j) {
      double mag = 0;
      for (std::int64_t l = 0; l < c.k; ++l) {
        const double av = a[c.trans_a ? l * lda + i : i * lda + l], bv = b[c.trans_b ? j * ldb + l : l * ldb + j];
        mag += std::abs(av * bv);
      }
      const double c_in = c.beta == 0 ? 0.0 : std::abs(c.beta * static_cast<double>(c0[i * ldc + j]));
      const double bound = 2.0 * ((c.k + 2) * u + u_in) * (std::abs(c.alpha) * mag + c_in) + 1e-300;
      const double d = std::abs(static_cast<double>(c_gpu[i * ldc + j]) - static_cast<double>(c_cpu[i * ldc + j]));
      worst = std::max(worst, d / bound);
      REQUIRE(std::isfinite(static_cast<double>(c_gpu[i * ldc + j])));
    }
  MESSAGE("worst error / bound = " << worst);
  CHECK(worst <= 1.0);
  // Padding columns of C are never written.
  for (std::int64_t i = 0; i < c.m; ++i)
    for (std::int64_t j = c.n; j < ldc; ++j)
      if (c.beta != 0) CHECK(c_gpu[i * ldc + j] == c0[i * ldc + j]);
}

/// The 16-bit case: inputs drawn in float and rounded to H; the reference is the double product of the rounded values.
template <class H>
void check_half_case(const Case& c, std::uint64_t seed) {
  INFO("16-bit " << (std::is_same_v<H, spo::half> ? "half" : "bfloat16") << " trans_a " << c.trans_a << " trans_b "
                 << c.trans_b << " m " << c.m << " n " << c.n << " k " << c.k << " pad " << c.pad << " alpha "
                 << c.alpha << " beta " << c.beta);
  const std::int64_t a_rows = c.trans_a ? c.k : c.m, a_cols = c.trans_a ? c.m : c.k;
  const std::int64_t b_rows = c.trans_b ? c.n : c.k, b_cols = c.trans_b ? c.k : c.n;
  const std::int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  Generator g{seed, 0};
  auto draw = [&](std::int64_t n, bool nan) {  // [n] in H
    auto f = Tensor<float, cpu>::uninitialized(Shape{std::max<std::int64_t>(n, 1)});
    cuda_test::cpu_fill_normal(f, g, 0.f, 1.f);
    auto h = Tensor<H, cpu>::uninitialized(f.shape());
    for (std::int64_t i = 0; i < f.numel(); ++i) h[i] = H(nan ? std::numeric_limits<float>::quiet_NaN() : f[i]);
    return h;
  };
  const auto a = draw(a_rows * lda, false), b = draw(b_rows * ldb, false), c0 = draw(c.m * ldc, c.beta == 0);
  const auto da = to_device(a), db = to_device(b);
  auto dc = to_device(c0);
  cuda_kernels::Gemm<H>::run({c.trans_a, c.trans_b, c.m, c.n, c.k, static_cast<float>(c.alpha), da.data(), lda,
                              db.data(), ldb, static_cast<float>(c.beta), dc.data(), ldc, false});
  const auto c_gpu = to_host(dc);
  const double u16 = std::is_same_v<H, spo::half> ? 0x1p-11 : 0x1p-8;
  double worst = 0;
  for (std::int64_t i = 0; i < c.m; ++i)
    for (std::int64_t j = 0; j < c.n; ++j) {
      double sum = 0, mag = 0;
      for (std::int64_t l = 0; l < c.k; ++l) {
        const double av = static_cast<float>(a[c.trans_a ? l * lda + i : i * lda + l]);
        const double bv = static_cast<float>(b[c.trans_b ? j * ldb + l : l * ldb + j]);
        sum += av * bv;
        mag += std::abs(av * bv);
      }
      const double cv = c.beta == 0 ? 0.0 : static_cast<float>(c0[i * ldc + j]);
      const double want = c.alpha * sum + c.beta * cv;
      const double got = static_cast<float>(c_gpu[i * ldc + j]);
      REQUIRE(std::isfinite(got));
      const double bound = 2.0 * (c.k + 2) * 0x1p-24 * (std::abs(c.alpha) * mag + std::abs(c.beta * cv)) +
                           u16 * std::abs(want) + 0x1p-24;
      worst = std::max(worst, std::abs(got - want) / bound);
    }
  MESSAGE("worst error / bound = " << worst);
  CHECK(worst <= 1.0);
  for (std::int64_t i = 0; i < c.m; ++i)  // padding columns of C are never written
    for (std::int64_t j = c.n; j < ldc; ++j)
      if (c.beta != 0) CHECK(c_gpu[i * ldc + j] == c0[i * ldc + j]);
}

const std::vector<Case> cases = {
    {false, false, 37, 53, 71, 0, 1.0, 0.0},    {true, false, 37, 53, 71, 3, 1.5, 0.5},
    {false, true, 37, 53, 71, 5, -0.75, 1.0},   {true, true, 37, 53, 71, 1, 2.0, -1.0},
    {false, false, 1, 1, 1, 0, 1.0, 0.0},       {false, false, 1, 300, 64, 0, 1.0, 1.0},
    {false, true, 256, 320, 512, 0, 1.0, 0.0},  {true, false, 96, 40, 1000, 2, 0.125, 0.25},
    {false, false, 512, 384, 256, 0, 1.0, 0.0},
};

}  // namespace

TEST_CASE_TEMPLATE("gemm == cpu_kernels::gemm: all transpositions, padded leading dims, alpha/beta, odd sizes", T,
                   float, double) {
  std::uint64_t seed = 100;
  for (const auto& c : cases) check_case<T>(c, seed++);
}

TEST_CASE_TEMPLATE("gemm edge cases: k = 0 scales C by beta (zeroes it for beta = 0); m = 0 and n = 0 do nothing", T,
                   float, double) {
  check_case<T>({false, false, 5, 6, 0, 0, 1.0, 0.5}, 7);
  check_case<T>({true, true, 5, 6, 0, 2, 1.0, 0.0}, 8);
  check_case<T>({false, false, 0, 6, 4, 0, 1.0, 0.5}, 9);
  check_case<T>({false, false, 5, 0, 4, 0, 1.0, 0.5}, 10);
}

TEST_CASE_TEMPLATE("gemm on 16-bit operands accumulates in FP32 and rounds C once: every case of the FP32 test", H,
                   spo::half, bfloat16) {
  std::uint64_t seed = 300;
  for (const auto& c : cases) check_half_case<H>(c, seed++);
  check_half_case<H>({false, false, 5, 6, 0, 0, 1.0, 0.5}, 400);  // k = 0: C = beta C
}

TEST_CASE("gemm with allow_tf32 runs within the TF32 bound (inputs rounded to a 10-bit mantissa)") {
  check_case<float>({false, true, 256, 320, 512, 0, 1.0, 0.0}, 200, true);
  check_case<float>({true, false, 37, 53, 71, 3, 1.5, 0.5}, 201, true);
}

TEST_CASE("gemm on two Streams with the cached handle: repeated products agree with the CPU") {
  cuda_runtime::Stream s1, s2;
  Generator g{77, 0};
  auto a = Tensor<float, cpu>::uninitialized(Shape{64, 48}), b = Tensor<float, cpu>::uninitialized(Shape{48, 32});
  cuda_test::cpu_fill_normal(a, g, 0.f, 1.f);
  cuda_test::cpu_fill_normal(b, g, 0.f, 1.f);
  Tensor<float, cpu> c_cpu(Shape{64, 32}), mag(Shape{64, 32});
  cuda_test::cpu_gemm(false, false, 64, 32, 48, 1.f, a.data(), 48, b.data(), 32, 0.f, c_cpu.data(), 32);
  Tensor<float, cpu> abs_a = a, abs_b = b;
  for (std::int64_t i = 0; i < a.numel(); ++i) abs_a[i] = std::abs(a[i]);
  for (std::int64_t i = 0; i < b.numel(); ++i) abs_b[i] = std::abs(b[i]);
  cuda_test::cpu_gemm(false, false, 64, 32, 48, 1.f, abs_a.data(), 48, abs_b.data(), 32, 0.f, mag.data(), 32);
  const auto da = to_device(a), db = to_device(b);
  Tensor<float, cuda> c1(Shape{64, 32}), c2(Shape{64, 32});
  for (int rep = 0; rep < 3; ++rep) {
    cuda_kernels::gemm<float>(false, false, 64, 32, 48, 1.f, da.data(), 48, db.data(), 32, 0.f, c1.data(), 32, s1);
    cuda_kernels::gemm<float>(false, false, 64, 32, 48, 1.f, da.data(), 48, db.data(), 32, 0.f, c2.data(), 32, s2);
  }
  s1.synchronize();
  s2.synchronize();
  const auto h1 = to_host(c1), h2 = to_host(c2);
  const double gamma = 2.0 * (48 + 2) * 0x1p-24 * 1.001;  // 1.001: |A||B| itself is rounded to float
  for (std::int64_t i = 0; i < c_cpu.numel(); ++i) {
    REQUIRE(std::abs(h1[i] - c_cpu[i]) <= gamma * mag[i]);
    REQUIRE(std::abs(h2[i] - c_cpu[i]) <= gamma * mag[i]);
  }
}
