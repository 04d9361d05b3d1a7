// SPDX-License-Identifier: MIT
#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;

namespace {

/// C = alpha op(A) op(B) + beta C by the definition, in double; A and B stored row-major with leading dims.
void naive_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const float* a,
                std::int64_t lda, const float* b, std::int64_t ldb, double beta, std::vector<double>& c,
                std::int64_t ldc) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double av = ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      c[i * ldc + j] = alpha * acc + (beta == 0.0 ? 0.0 : beta * c[i * ldc + j]);
    }
}

struct Case {
  std::int64_t m, n, k;
};

using GemmFn = void (*)(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t,
                        const float*, std::int64_t, float, float*, std::int64_t);

/// Runs one product through `fn` and the naive reference; returns max |diff| / (1 + max |ref|).
double check_one(GemmFn fn, bool ta, bool tb, Case cs, float alpha, float beta, std::int64_t pad, Generator& g) {
  const auto [m, n, k] = cs;
  const std::int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + 2 * pad;
  auto a = randn<float>(Shape{(ta ? k : m) * lda + 1}, g);
  auto b = randn<float>(Shape{(tb ? n : k) * ldb + 1}, g);
  auto c = randn<float>(Shape{m * ldc + 1}, g);
  std::vector<double> ref(c.data(), c.data() + c.numel());
  const float sentinel = c[m * ldc];
  naive_gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, ref, ldc);
  fn(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  double err = 0.0, scale = 1.0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < ldc; ++j) {
      const std::int64_t idx = i * ldc + j;
      err = std::max(err, std::abs(static_cast<double>(c[idx]) - ref[idx]));  // padding columns must be untouched
      scale = std::max(scale, std::abs(ref[idx]));
    }
  CHECK(c[m * ldc] == sentinel);
  return err / scale;
}

const std::vector<Case> awkward{{1, 1, 1},    {1, 37, 5},     {37, 1, 5},    {3, 5, 700},    {17, 33, 65},
                                {64, 64, 64}, {129, 31, 257}, {200, 190, 3}, {255, 257, 129}};

}  // namespace

TEST_CASE("float gemm paths match the naive product for every transposition, beta and leading dimension") {
  Generator g{21, 0};
  const std::vector<std::pair<const char*, GemmFn>> paths{{"gemm<float>", &cpu_kernels::gemm<float>},
                                                          {"gemm_dnnl", &cpu_kernels::gemm_dnnl},
                                                          {"gemm_dnnl_matmul", &cpu_kernels::gemm_dnnl_matmul},
                                                          {"gemm_eigen<float>", &cpu_kernels::gemm_eigen<float>}};
  for (const auto& [name, fn] : paths)
    for (const auto& cs : awkward)
      for (int t = 0; t < 4; ++t)
        for (auto [alpha, beta] : {std::pair{1.f, 0.f}, std::pair{0.5f, 1.f}, std::pair{-2.f, 0.25f}})
          for (std::int64_t pad : {0, 3}) {
            const bool ta = t & 1, tb = t & 2;
            INFO(name << " m=" << cs.m << " n=" << cs.n << " k=" << cs.k << " ta=" << ta << " tb=" << tb
                      << " alpha=" << alpha << " beta=" << beta << " pad=" << pad);
            CHECK(check_one(fn, ta, tb, cs, alpha, beta, pad, g) < 2e-6 * std::sqrt(static_cast<double>(cs.k)));
          }
}

TEST_CASE("float gemm with beta = 0 ignores NaN in C; k = 0 scales C by beta") {
  Tensor<float> a(Shape{64, 64}), b(Shape{64, 64}), c(Shape{64, 64});
  as_array(a) = 1.f;
  as_array(b) = 2.f;
  as_array(c) = std::nanf("");
  cpu_kernels::gemm<float>(false, false, 64, 64, 64, 1.f, a.data(), 64, b.data(), 64, 0.f, c.data(), 64);
  CHECK(as_array(c).isFinite().all());
  CHECK(c[0] == doctest::Approx(128.f));
  as_array(c) = 3.f;
  cpu_kernels::gemm<float>(false, false, 64, 64, 0, 1.f, a.data(), 64, b.data(), 64, 0.5f, c.data(), 64);
  CHECK(c[5] == 1.5f);
}

TEST_CASE("gemm_batched matches per-matrix naive products (attention-like strides)") {
  Generator g{22, 0};
  // Q K^T with heads interleaved: q [B, T, H, d] viewed per (b, h) with lda = H d; scores [B H, T, S].
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const std::int64_t batch = 6, m = 19, n = 23, k = 16, pad = 5;
    const std::int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    const std::int64_t sa = (ta ? k : m) * lda + 7, sb = (tb ? n : k) * ldb + 3, sc = m * ldc + 2;
    auto a = randn<float>(Shape{batch * sa}, g);
    auto b = randn<float>(Shape{batch * sb}, g);
    auto c = randn<float>(Shape{batch * sc}, g);
    std::vector<double> ref(c.data(), c.data() + c.numel());
    for (std::int64_t i = 0; i < batch; ++i) {
      std::vector<double> ci(ref.begin() + i * sc, ref.begin() + (i + 1) * sc);
      naive_gemm(ta, tb, m, n, k, 0.5, a.data() + i * sa, lda, b.data() + i * sb, ldb, 1.0, ci, ldc);
      std::copy(ci.begin(), ci.end(), ref.begin() + i * sc);
    }
    cpu_kernels::gemm_batched<float>(batch, ta, tb, m, n, k, 0.5f, a.data(), lda, sa, b.data(), ldb, sb, 1.f, c.data(),
                                     ldc, sc);
    double err = 0.0;
    for (std::int64_t i = 0; i < c.numel(); ++i) err = std::max(err, std::abs(c[i] - ref[static_cast<std::size_t>(i)]));
    INFO("ta=" << ta << " tb=" << tb);
    CHECK(err < 1e-4);
  }
}

TEST_CASE("gemm_batched with a shared operand (stride 0) matches per-matrix products") {
  Generator g{23, 0};
  const std::int64_t batch = 5, m = 33, n = 40, k = 24;
  auto a = randn<float>(Shape{m, k}, g);  // shared by every product
  auto b = randn<float>(Shape{batch, k, n}, g);
  Tensor<float> c(Shape{batch, m, n});
  cpu_kernels::gemm_batched<float>(batch, false, false, m, n, k, 1.f, a.data(), k, 0, b.data(), n, k * n, 0.f, c.data(),
                                   n, m * n);
  double err = 0.0;
  for (std::int64_t i = 0; i < batch; ++i) {
    std::vector<double> ref(static_cast<std::size_t>(m * n));
    naive_gemm(false, false, m, n, k, 1.0, a.data(), k, b.data() + i * k * n, n, 0.0, ref, n);
    for (std::int64_t j = 0; j < m * n; ++j)
      err = std::max(err, std::abs(c[i * m * n + j] - ref[static_cast<std::size_t>(j)]));
  }
  CHECK(err < 1e-4);
}
