// SPDX-License-Identifier: MIT
#include "spo/tensor/cpu/attention_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "spo/tensor/ops.hpp"

using namespace spo;
using cpu_kernels::AttentionShape;

namespace {

/// softmax(scale q k^T) v for one head with plain loops in double; q [n, d], k/v [m, d] read at the given strides.
template <class T>
std::vector<double> loop_attention(const T* q, const T* k, const T* v, std::int64_t qs, std::int64_t ks, std::int64_t n,
                                   std::int64_t m, std::int64_t d, double scale, std::vector<double>* lse = nullptr) {
  std::vector<double> out(n * d, 0.0), p(m);
  for (std::int64_t i = 0; i < n; ++i) {
    double mx = -1e300;
    for (std::int64_t j = 0; j < m; ++j) {
      double s = 0;
      for (std::int64_t c = 0; c < d; ++c) s += double(q[i * qs + c]) * double(k[j * ks + c]);
      p[j] = s * scale;
      mx = std::max(mx, p[j]);
    }
    double z = 0;
    for (std::int64_t j = 0; j < m; ++j) z += (p[j] = std::exp(p[j] - mx));
    for (std::int64_t j = 0; j < m; ++j)
      for (std::int64_t c = 0; c < d; ++c) out[i * d + c] += p[j] / z * double(v[j * ks + c]);
    if (lse) lse->push_back(mx + std::log(z));
  }
  return out;
}

struct Case {
  std::int64_t batch, heads, n, m, d;
};

/// Fused and reference kernels on the same random operands, in the packed or the interleaved layout.
template <class T>
void compare_fused_with_reference(const Case& c, bool interleaved, double tol) {
  const AttentionShape s{c.batch, c.heads, c.n, c.m, c.d};
  Generator g{static_cast<std::uint64_t>(c.n * 131 + c.m * 7 + c.d + interleaved), 0};
  INFO("seed " << g.seed << " batch " << c.batch << " heads " << c.heads << " n " << c.n << " m " << c.m << " d " << c.d
               << (interleaved ? " interleaved" : " packed"));
  auto q = randn<T>(Shape{c.batch * c.heads * c.n * c.d}, g, T(1.5));
  auto k = randn<T>(Shape{c.batch * c.heads * c.m * c.d}, g);
  auto v = randn<T>(Shape{c.batch * c.heads * c.m * c.d}, g);
  auto dout = randn<T>(q.shape(), g);
  auto layout = [&](auto* p, std::int64_t rows) {
    return interleaved ? cpu_kernels::interleaved_heads(p, c.heads, rows, c.d)
                       : cpu_kernels::packed_heads(p, c.heads, rows, c.d);
  };
  const T scale = T(1) / std::sqrt(T(c.d));
  Tensor<T> o(q.shape()), o_ref(q.shape()), lse(Shape{c.batch * c.heads * c.n});
  Tensor<T> dq(q.shape()), dk(k.shape()), dv(v.shape()), dq_ref(q.shape()), dk_ref(k.shape()), dv_ref(v.shape());
  cpu_kernels::attention_forward<T>(s, layout(q.data(), c.n), layout(k.data(), c.m), layout(v.data(), c.m),
                                    layout(o.data(), c.n), lse.data(), scale);
  cpu_kernels::attention_forward_reference<T>(s, layout(q.data(), c.n), layout(k.data(), c.m), layout(v.data(), c.m),
                                              layout(o_ref.data(), c.n), scale);
  CHECK(max_abs_diff<T>(o.view(), o_ref.view()) < tol);

  // lse against plain loops on head (b, h) = (last, last)
  const std::int64_t b = c.batch - 1, h = c.heads - 1;
  auto qh = layout(static_cast<const T*>(q.data()), c.n), kh = layout(static_cast<const T*>(k.data()), c.m);
  auto vh = layout(static_cast<const T*>(v.data()), c.m);
  std::vector<double> lse_loop;
  auto o_loop = loop_attention(qh.head(b, h), kh.head(b, h), vh.head(b, h), qh.row_stride, kh.row_stride, c.n, c.m, c.d,
                               double(scale), &lse_loop);
  auto oh = layout(static_cast<const T*>(o.data()), c.n);
  double worst_o = 0, worst_lse = 0;
  for (std::int64_t i = 0; i < c.n; ++i) {
    worst_lse = std::max(worst_lse, std::abs(lse_loop[i] - double(lse[(b * c.heads + h) * c.n + i])));
    for (std::int64_t cc = 0; cc < c.d; ++cc)
      worst_o = std::max(worst_o, std::abs(o_loop[i * c.d + cc] - double(oh.head(b, h)[i * oh.row_stride + cc])));
  }
  CHECK(worst_o < tol);
  CHECK(worst_lse < tol * 10);

  cpu_kernels::attention_backward<T>(s, layout(q.data(), c.n), layout(k.data(), c.m), layout(v.data(), c.m),
                                     layout(o.data(), c.n), layout(dout.data(), c.n), lse.data(),
                                     layout(dq.data(), c.n), layout(dk.data(), c.m), layout(dv.data(), c.m), scale);
  cpu_kernels::attention_backward_reference<T>(s, layout(q.data(), c.n), layout(k.data(), c.m), layout(v.data(), c.m),
                                               layout(dout.data(), c.n), layout(dq_ref.data(), c.n),
                                               layout(dk_ref.data(), c.m), layout(dv_ref.data(), c.m), scale);
  CHECK(max_abs_diff<T>(dq.view(), dq_ref.view()) < tol);
  CHECK(max_abs_diff<T>(dk.view(), dk_ref.view()) < tol);
  CHECK(max_abs_diff<T>(dv.view(), dv_ref.view()) < tol);
}

// Sizes straddle the blocks (64 queries, 256 / 128 keys): partial blocks, several key blocks (online rescaling),
// one row, M != N both ways, single-head problems (the forward then splits a head's queries over several work
// items, the backward splits its keys into chunks and reduces dQ) and many heads (whole heads per work item).
const std::vector<Case> cases = {{1, 1, 1, 1, 4},     {2, 3, 5, 7, 3},      {2, 2, 70, 45, 8},  {1, 2, 130, 300, 16},
                                 {1, 1, 200, 513, 8}, {3, 1, 64, 256, 32},  {2, 2, 257, 8, 32}, {1, 1, 129, 129, 5},
                                 {8, 2, 130, 70, 8},  {4, 4, 200, 300, 17}, {16, 1, 65, 9, 40}, {2, 3, 70, 33, 48}};

}  // namespace

TEST_CASE_TEMPLATE("fused attention matches the materialised reference (forward, lse, backward)", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-4 : 1e-11;
  for (const auto& c : cases)
    for (bool interleaved : {false, true}) compare_fused_with_reference<T>(c, interleaved, tol);
}

TEST_CASE("the reference backward is the gradient of sum(o * dout) (finite differences, double)") {
  const Case c{1, 2, 5, 4, 3};
  const AttentionShape s{c.batch, c.heads, c.n, c.m, c.d};
  Generator g{99, 0};
  auto q = randn<double>(Shape{c.heads * c.n * c.d}, g), k = randn<double>(Shape{c.heads * c.m * c.d}, g);
  auto v = randn<double>(k.shape(), g), dout = randn<double>(q.shape(), g);
  auto ph = [&](auto* p, std::int64_t rows) { return cpu_kernels::packed_heads(p, c.heads, rows, c.d); };
  const double scale = 0.7;
  auto objective = [&] {
    Tensor<double> o(q.shape());
    cpu_kernels::attention_forward_reference<double>(s, ph(q.data(), c.n), ph(k.data(), c.m), ph(v.data(), c.m),
                                                     ph(o.data(), c.n), scale);
    return dot<double>(o.view(), dout.view());
  };
  Tensor<double> dq(q.shape()), dk(k.shape()), dv(v.shape());
  cpu_kernels::attention_backward_reference<double>(s, ph(q.data(), c.n), ph(k.data(), c.m), ph(v.data(), c.m),
                                                    ph(dout.data(), c.n), ph(dq.data(), c.n), ph(dk.data(), c.m),
                                                    ph(dv.data(), c.m), scale);
  for (auto [x, gx] : {std::pair{&q, &dq}, std::pair{&k, &dk}, std::pair{&v, &dv}}) {
    for (std::int64_t i = 0; i < x->numel(); ++i) {
      const double saved = (*x)[i], step = 1e-6;
      (*x)[i] = saved + step;
      const double fp = objective();
      (*x)[i] = saved - step;
      const double fm = objective();
      (*x)[i] = saved;
      CHECK((*gx)[i] == doctest::Approx((fp - fm) / (2 * step)).epsilon(1e-6));
    }
  }
}

TEST_CASE("attention kernels reject empty key sets and handle empty query sets") {
  Tensor<float> q(Shape{4}), o(Shape{4}), lse(Shape{1});
  auto ph = [](auto* p) { return cpu_kernels::packed_heads(p, 1, 1, 4); };
  CHECK_THROWS_WITH_AS(cpu_kernels::attention_forward<float>(AttentionShape{1, 1, 1, 0, 4}, ph(q.data()), ph(q.data()),
                                                             ph(q.data()), ph(o.data()), lse.data(), 1.0f),
                       doctest::Contains("1 queries attend to zero keys"), spo::error);
  Tensor<float> k(Shape{3, 4}, std::vector<float>(12, 1.0f)), dk(Shape{3, 4}), dv(Shape{3, 4});
  dk[0] = 5;
  auto pk = [](auto* p) { return cpu_kernels::packed_heads(p, 1, 3, 4); };
  cpu_kernels::attention_backward<float>(AttentionShape{1, 1, 0, 3, 4}, ph(q.data()), pk(k.data()), pk(k.data()),
                                         ph(q.data()), ph(q.data()), lse.data(), ph(q.data()), pk(dk.data()),
                                         pk(dv.data()), 1.0f);
  CHECK(dk[0] == 0.0f);
}

TEST_CASE_TEMPLATE("the tile GEMM gives plain-loop products for every row remainder, width and operand stride", T,
                   float, double) {
  // tile_rows and simd_width follow the ISA the test is compiled for; the sizes cover every remainder of both.
  using cpu_kernels::detail::round_up;
  constexpr std::int64_t lanes = cpu_kernels::detail::simd_width<T>, rows = cpu_kernels::detail::tile_rows;
  Generator g{7, 0};
  for (std::int64_t m : {std::int64_t{1}, rows - 1, rows, rows + 1, 2 * rows + 3})
    for (std::int64_t n : {std::int64_t{1}, lanes - 1, lanes, lanes + 1, 2 * lanes, 3 * lanes + 2})
      for (std::int64_t k : {1, 5, 40})
        for (bool transposed_a : {false, true})
          for (bool accumulate : {false, true}) {
            CAPTURE(m);
            CAPTURE(n);
            CAPTURE(k);
            CAPTURE(transposed_a);
            CAPTURE(accumulate);
            const std::int64_t ldb = round_up(n, lanes), ldc = n + 3;
            auto a = randn<T>(Shape{m * k}, g), b_src = randn<T>(Shape{k * n}, g), c0 = randn<T>(Shape{m * ldc}, g);
            std::vector<T> b(k * ldb);  // [k, ldb], padded by pack_panel
            cpu_kernels::detail::pack_panel(b_src.data(), n, std::int64_t{1}, k, n, b.data(), ldb);
            const std::int64_t a_r = transposed_a ? 1 : k, a_k = transposed_a ? m : 1;  // A [m, k] or A^T [k, m]
            std::vector<T> c(c0.data(), c0.data() + m * ldc);
            cpu_kernels::detail::tile_gemm(m, n, k, a.data(), a_r, a_k, b.data(), ldb, c.data(), ldc, accumulate);
            double worst = 0;
            for (std::int64_t i = 0; i < m; ++i)
              for (std::int64_t j = 0; j < ldc; ++j) {
                // columns past n stay untouched; the product is added to C or replaces it
                double want = j >= n || accumulate ? double(c0[i * ldc + j]) : 0.0;
                if (j < n)
                  for (std::int64_t kk = 0; kk < k; ++kk)
                    want += double(a[i * a_r + kk * a_k]) * double(b_src[kk * n + j]);
                worst = std::max(worst, std::abs(want - double(c[i * ldc + j])));
              }
            CHECK(worst < (std::is_same_v<T, float> ? 1e-4 : 1e-12));
          }
}
