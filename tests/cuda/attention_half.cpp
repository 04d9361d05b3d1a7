// SPDX-License-Identifier: MIT
// Multi-head attention of spo::cuda in half and bfloat16 (cuda_kernels::attention_forward / attention_backward,
// tensor/cuda/attention.hpp) against the same attention in double on the same 16-bit q, k, v and dO, cross- and
// causal self-attention, with the score buffer small enough to split the problems into chunks, or below one problem
// so that the queries of each problem are split into tiles.
// The device keeps S, the softmax, lse, dP and delta in FP32 and rounds P and dS to 16 bits as GEMM operands, O, dQ,
// dK and dV once as outputs. With u16 the unit roundoff of the format (2^-11 half, 2^-8 bfloat16), P, dP, delta
// the exact values and D_i = sum_c |dO_ic| |O_ic| (delta is formed from the stored, rounded O):
//   O_i:   |gpu - ref| <= u16 |ref| + 4 u16 sum_j P_ij |V_j|
//   lse_i: |gpu - ref| <= 1e-5 (1 + |ref|)                                 (FP32 softmax of FP32 scores)
//   dV_j:  |gpu - ref| <= u16 |ref| + 4 u16 sum_i P_ij |dO_i|
//   dQ_i:  |gpu - ref| <= u16 |ref| + 4 u16 scale sum_j A_ij |K_j|,  A_ij = P_ij (|dP_ij| + |delta_i| + D_i)
//   dK_j:  |gpu - ref| <= u16 |ref| + 4 u16 scale sum_i A_ij |Q_i|
// Each term is a sum of the rounding errors of one 16-bit operand in the products that form the result, with a factor
// 4 for the FP32 scores and sums (their errors are below 2^-16 relative here); an indexing or masking error is of the
// order of the magnitudes themselves.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/cuda/attention.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/ops.hpp"

#include "half_values.hpp"

using namespace spo;
using cuda_test::representable;
using cuda_test::unit_roundoff;

namespace {

/// Restores the score buffer bound when the scope ends.
struct ScoreBufferScope {
  std::size_t saved = cuda_kernels::attention_score_buffer_bytes();
  explicit ScoreBufferScope(std::size_t bytes) { cuda_kernels::attention_score_buffer_bytes() = bytes; }
  ~ScoreBufferScope() { cuda_kernels::attention_score_buffer_bytes() = saved; }
  ScoreBufferScope(const ScoreBufferScope&) = delete;
  ScoreBufferScope& operator=(const ScoreBufferScope&) = delete;
};

struct Case {
  const char* name;
  cuda_kernels::AttentionShape shape;
  std::int64_t tile = 0;  ///< query rows per tile (a score buffer below one problem); 0: two problems per chunk
};

const std::vector<Case> cases = {
    {"cross-attention, 2 x 3 heads, 19 queries, 77 keys, d 8", {2, 3, 19, 77, 8, false}},
    {"causal self-attention, 1 x 2 heads, 33 tokens, d 16", {1, 2, 33, 33, 16, true}},
    {"self-attention, 3 x 1 head, 64 tokens, d 40 (SD1.5's head width)", {3, 1, 64, 64, 40, false}},
    // Query tiles: dK and dV sum over tiles in FP32; the causal mask starts each tile at its own first query.
    {"cross-attention in query tiles of 5 (19 = 5 + 5 + 5 + 4)", {2, 3, 19, 77, 8, false}, 5},
    {"causal self-attention in query tiles of 7", {1, 2, 33, 33, 16, true}, 7},
    {"self-attention, 2 x 2 heads, 64 tokens in query tiles of 1", {2, 2, 64, 64, 40, false}, 1},
};

template <class H>
void check_case(const Case& c, std::uint64_t seed) {
  const double u16 = unit_roundoff<H>();
  const auto& s = c.shape;
  INFO(c.name << ", " << (std::same_as<H, spo::half> ? "half" : "bfloat16"));
  const std::int64_t B = s.batch, Hh = s.heads, n = s.n, m = s.m, d = s.d, ld = s.inner();
  const double scale = 1 / std::sqrt(static_cast<double>(d));
  Generator gen{seed, 0};
  const auto q = representable<H>(Shape{B, n, ld}, gen), k = representable<H>(Shape{B, m, ld}, gen);
  const auto v = representable<H>(Shape{B, m, ld}, gen), dout = representable<H>(Shape{B, n, ld}, gen);

  const auto qd = to_device(cast<H>(q)), kd = to_device(cast<H>(k)), vd = to_device(cast<H>(v));
  const auto dod = to_device(cast<H>(dout));
  auto od = Tensor<H, cuda>::uninitialized(q.shape());
  auto lsed = Tensor<float, cuda>::uninitialized(Shape{B, Hh, n});
  auto dqd = Tensor<H, cuda>::uninitialized(q.shape()), dkd = Tensor<H, cuda>::uninitialized(k.shape());
  auto dvd = Tensor<H, cuda>::uninitialized(v.shape());
  {
    const ScoreBufferScope small(static_cast<std::size_t>((c.tile ? c.tile : 2 * n) * m) * sizeof(float));
    cuda_kernels::attention_forward<H>(s, qd.data(), kd.data(), vd.data(), od.data(), lsed.data(),
                                       static_cast<float>(scale));
    cuda_kernels::attention_backward<H>(s, qd.data(), kd.data(), vd.data(), od.data(), dod.data(), lsed.data(),
                                        dqd.data(), dkd.data(), dvd.data(), static_cast<float>(scale));
  }
  const auto o = cast<double>(to_host(od)), lse = cast<double>(to_host(lsed));
  const auto dq = cast<double>(to_host(dqd)), dk = cast<double>(to_host(dkd)), dv = cast<double>(to_host(dvd));

  int failures = 0;
  auto expect = [&](double got, double ref, double bound, const char* what) {
    if (std::abs(got - ref) <= bound) return;
    if (++failures <= 5) MESSAGE(what << ": got " << got << ", want " << ref << " within " << bound);
  };
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < Hh; ++h) {
      auto at = [&](const Tensor<double, cpu>& t, std::int64_t rows, std::int64_t row, std::int64_t col) {
        return t[(b * rows + row) * ld + h * d + col];
      };
      // P, dP, delta and the exact results of this (b, h).
      std::vector<double> P(static_cast<std::size_t>(n * m), 0.0), dP(P.size(), 0.0),
          delta(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t visible = s.causal ? std::min(i + 1, m) : m;
        double mx = -INFINITY;
        std::vector<double> sc(static_cast<std::size_t>(visible));
        for (std::int64_t j = 0; j < visible; ++j) {
          double dot = 0;
          for (std::int64_t x = 0; x < d; ++x) dot += at(q, n, i, x) * at(k, m, j, x);
          sc[static_cast<std::size_t>(j)] = scale * dot;
          mx = std::max(mx, scale * dot);
        }
        double sum = 0;
        for (const double z : sc) sum += std::exp(z - mx);
        expect(lse[(b * Hh + h) * n + i], mx + std::log(sum), 1e-5 * (1 + std::abs(mx + std::log(sum))), "lse");
        for (std::int64_t j = 0; j < visible; ++j)
          P[static_cast<std::size_t>(i * m + j)] = std::exp(sc[static_cast<std::size_t>(j)] - mx) / sum;
        for (std::int64_t j = 0; j < m; ++j) {
          double dot = 0;
          for (std::int64_t x = 0; x < d; ++x) dot += at(dout, n, i, x) * at(v, m, j, x);
          dP[static_cast<std::size_t>(i * m + j)] = dot;
          delta[static_cast<std::size_t>(i)] += P[static_cast<std::size_t>(i * m + j)] * dot;
        }
      }
      // sum_y |dO_iy| |O_iy|: the magnitude of delta_i's terms, part of the bound of every product with dS.
      auto delta_magnitude = [&](std::int64_t i) {
        double D = 0;
        for (std::int64_t y = 0; y < d; ++y) D += std::abs(at(dout, n, i, y)) * std::abs(at(o, n, i, y));
        return D;
      };
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t x = 0; x < d; ++x) {
          double ref = 0, mag = 0, dq_ref = 0, dq_mag = 0;
          const double D = delta_magnitude(i);
          for (std::int64_t j = 0; j < m; ++j) {
            const double p = P[static_cast<std::size_t>(i * m + j)], dp = dP[static_cast<std::size_t>(i * m + j)];
            const double dl = delta[static_cast<std::size_t>(i)];
            ref += p * at(v, m, j, x);
            mag += p * std::abs(at(v, m, j, x));
            dq_ref += scale * p * (dp - dl) * at(k, m, j, x);
            dq_mag += scale * p * (std::abs(dp) + std::abs(dl) + D) * std::abs(at(k, m, j, x));
          }
          expect(at(o, n, i, x), ref, u16 * std::abs(ref) + 4 * u16 * mag, "O");
          expect(at(dq, n, i, x), dq_ref, u16 * std::abs(dq_ref) + 4 * u16 * dq_mag, "dQ");
        }
      for (std::int64_t j = 0; j < m; ++j)
        for (std::int64_t x = 0; x < d; ++x) {
          double dv_ref = 0, dv_mag = 0, dk_ref = 0, dk_mag = 0;
          for (std::int64_t i = 0; i < n; ++i) {
            const double D = delta_magnitude(i);
            const double p = P[static_cast<std::size_t>(i * m + j)], dp = dP[static_cast<std::size_t>(i * m + j)];
            const double dl = delta[static_cast<std::size_t>(i)];
            dv_ref += p * at(dout, n, i, x);
            dv_mag += p * std::abs(at(dout, n, i, x));
            dk_ref += scale * p * (dp - dl) * at(q, n, i, x);
            dk_mag += scale * p * (std::abs(dp) + std::abs(dl) + D) * std::abs(at(q, n, i, x));
          }
          expect(at(dv, m, j, x), dv_ref, u16 * std::abs(dv_ref) + 4 * u16 * dv_mag, "dV");
          expect(at(dk, m, j, x), dk_ref, u16 * std::abs(dk_ref) + 4 * u16 * dk_mag, "dK");
        }
    }
  CHECK(failures == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("attention in 16 bits: O, lse, dQ, dK and dV within the rounding of the 16-bit operands", H,
                   spo::half, bfloat16) {
  std::uint64_t seed = 300;
  for (const Case& c : cases) check_case<H>(c, seed++);
}
