// SPDX-License-Identifier: MIT
// Causal attention kernels (AttentionShape::causal): fused vs materialised reference vs plain loops, and the
// reference backward vs finite differences.
#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "spo/tensor/cpu/attention_kernels.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;
using cpu_kernels::AttentionShape;

namespace {

/// softmax over keys j <= i of scale q_i . k_j, times v, for one packed head with plain loops in double; also the
/// rows' log-sum-exp.
template <class T>
std::vector<double> loop_causal(const T* q, const T* k, const T* v, std::int64_t n, std::int64_t m, std::int64_t d,
                                double scale, std::vector<double>& lse) {
  std::vector<double> out(n * d, 0.0), p(m);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t visible = std::min(m, i + 1);
    double mx = -1e300;
    for (std::int64_t j = 0; j < visible; ++j) {
      double s = 0;
      for (std::int64_t c = 0; c < d; ++c) s += double(q[i * d + c]) * double(k[j * d + c]);
      p[j] = s * scale;
      mx = std::max(mx, p[j]);
    }
    double z = 0;
    for (std::int64_t j = 0; j < visible; ++j) z += (p[j] = std::exp(p[j] - mx));
    for (std::int64_t j = 0; j < visible; ++j)
      for (std::int64_t c = 0; c < d; ++c) out[i * d + c] += p[j] / z * double(v[j * d + c]);
    lse.push_back(mx + std::log(z));
  }
  return out;
}

struct Case {
  std::int64_t batch, heads, n, m, d;
};

template <class T>
void compare_causal(const Case& c, double tol) {
  const AttentionShape s{c.batch, c.heads, c.n, c.m, c.d, true};
  Generator g{static_cast<std::uint64_t>(c.n * 131 + c.m * 7 + c.d), 0};
  INFO("seed " << g.seed << " batch " << c.batch << " heads " << c.heads << " n " << c.n << " m " << c.m << " d "
               << c.d);
  auto q = randn<T>(Shape{c.batch * c.heads * c.n * c.d}, g, T(1.5));
  auto k = randn<T>(Shape{c.batch * c.heads * c.m * c.d}, g);
  auto v = randn<T>(Shape{c.batch * c.heads * c.m * c.d}, g);
  auto dout = randn<T>(q.shape(), g);
  auto ph = [&](auto* p, std::int64_t rows) { return cpu_kernels::packed_heads(p, c.heads, rows, c.d); };
  const T scale = T(1) / std::sqrt(T(c.d));
  Tensor<T> o(q.shape()), o_ref(q.shape()), o_full(q.shape()), lse(Shape{c.batch * c.heads * c.n});
  Tensor<T> dq(q.shape()), dk(k.shape()), dv(v.shape()), dq_ref(q.shape()), dk_ref(k.shape()), dv_ref(v.shape());
  cpu_kernels::attention_forward<T>(s, ph(q.data(), c.n), ph(k.data(), c.m), ph(v.data(), c.m), ph(o.data(), c.n),
                                    lse.data(), scale);
  cpu_kernels::attention_forward_reference<T>(s, ph(q.data(), c.n), ph(k.data(), c.m), ph(v.data(), c.m),
                                              ph(o_ref.data(), c.n), scale);
  CHECK(max_abs_diff<T>(o.view(), o_ref.view()) < tol);

  // Plain loops on every head; the mask must matter (the unmasked output differs) whenever a row misses a key.
  double worst_o = 0, worst_lse = 0;
  for (std::int64_t bh = 0; bh < c.batch * c.heads; ++bh) {
    std::vector<double> lse_loop;
    auto o_loop = loop_causal(q.data() + bh * c.n * c.d, k.data() + bh * c.m * c.d, v.data() + bh * c.m * c.d, c.n, c.m,
                              c.d, double(scale), lse_loop);
    for (std::int64_t i = 0; i < c.n; ++i) {
      worst_lse = std::max(worst_lse, std::abs(lse_loop[i] - double(lse[bh * c.n + i])));
      for (std::int64_t cc = 0; cc < c.d; ++cc)
        worst_o = std::max(worst_o, std::abs(o_loop[i * c.d + cc] - double(o[(bh * c.n + i) * c.d + cc])));
    }
  }
  CHECK(worst_o < tol);
  CHECK(worst_lse < tol * 10);
  if (c.m > 1) {
    AttentionShape full = s;
    full.causal = false;
    cpu_kernels::attention_forward_reference<T>(full, ph(q.data(), c.n), ph(k.data(), c.m), ph(v.data(), c.m),
                                                ph(o_full.data(), c.n), scale);
    CHECK(max_abs_diff<T>(o_full.view(), o_ref.view()) > 1e-3);
  }

  // Prefill the outputs so that rows the kernel must zero (keys no query sees) are caught.
  fill(dk.view(), T(7));
  fill(dv.view(), T(7));
  cpu_kernels::attention_backward<T>(s, ph(q.data(), c.n), ph(k.data(), c.m), ph(v.data(), c.m), ph(o.data(), c.n),
                                     ph(dout.data(), c.n), lse.data(), ph(dq.data(), c.n), ph(dk.data(), c.m),
                                     ph(dv.data(), c.m), scale);
  cpu_kernels::attention_backward_reference<T>(s, ph(q.data(), c.n), ph(k.data(), c.m), ph(v.data(), c.m),
                                               ph(dout.data(), c.n), ph(dq_ref.data(), c.n), ph(dk_ref.data(), c.m),
                                               ph(dv_ref.data(), c.m), scale);
  CHECK(max_abs_diff<T>(dq.view(), dq_ref.view()) < tol);
  CHECK(max_abs_diff<T>(dk.view(), dk_ref.view()) < tol);
  CHECK(max_abs_diff<T>(dv.view(), dv_ref.view()) < tol);
}

// Sizes straddle the blocks (64 queries, 256 / 128 keys): the diagonal inside a block, whole key blocks after
// every query of a block (skipped), keys that no query sees (m > n: zero dK, dV), queries past the last key
// (n > m), single-head problems (query groups in the forward, key chunks in the backward) and many heads.
const std::vector<Case> cases = {{1, 1, 1, 1, 4},     {2, 3, 5, 7, 3},     {2, 2, 70, 45, 8},  {1, 2, 130, 300, 16},
                                 {1, 1, 200, 513, 8}, {3, 1, 64, 256, 32}, {2, 2, 257, 8, 32}, {1, 1, 129, 129, 5},
                                 {1, 1, 300, 300, 8}, {4, 4, 77, 77, 17},  {2, 3, 77, 77, 16}, {1, 1, 600, 600, 16}};

}  // namespace

TEST_CASE_TEMPLATE("causal fused attention matches the reference and plain loops (forward, lse, backward)", T, float,
                   double) {
  const double tol = std::is_same_v<T, float> ? 2e-4 : 1e-11;
  for (const auto& c : cases) compare_causal<T>(c, tol);
}

TEST_CASE("the causal reference backward is the gradient of sum(o * dout) (finite differences, double)") {
  for (const Case c : {Case{1, 2, 5, 4, 3}, Case{1, 1, 3, 6, 2}}) {
    const AttentionShape s{c.batch, c.heads, c.n, c.m, c.d, true};
    Generator g{98, 0};
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
}
