// SPDX-License-Identifier: MIT
/// @brief Benchmarks of nn::Attention (self and cross) and of the fused and reference attention kernels.
//
// FLOP convention (shared with the PyTorch peer; multiply-add = 2 flops), for x [B, N, Cq], context [B, M, Cc],
// H heads of width d, inner = H * d (self-attention: M = N, Cc = Cq):
//   proj    = 2*B*N*Cq*inner  (to_q)  +  2 * 2*B*M*Cc*inner  (to_k, to_v)  +  2*B*N*inner*Cq  (to_out.0)
//   core    = 4*B*H*N*M*d     (q k^T and p v)
//   forward = proj + core
//   fwd+bwd = 3 * proj + 2.5 * core
// Projections count backward as 2x forward (dx and dW); the core's fwd+bwd is counted as 2.5x its forward
// (the kernel actually performs 2 forward + 5 backward products, one of them the recomputed q k^T), so core
// figures are conservative. Softmax, bias and elementwise work are not counted.
#include <cmath>

#include <benchmark/benchmark.h>

#include "spo/nn/attention.hpp"
#include "spo/tensor/cpu/attention_kernels.hpp"

using namespace spo;

namespace {

struct Dims {
  std::int64_t batch, n, query_dim, heads, m, context_dim;  // m = 0: self-attention
  std::int64_t d() const { return query_dim / heads; }
  std::int64_t keys() const { return m == 0 ? n : m; }
  std::int64_t ctx_dim() const { return m == 0 ? query_dim : context_dim; }
  double proj_flops() const {
    const double inner = double(heads * d());
    return 2.0 * batch * n * query_dim * inner + 4.0 * batch * keys() * ctx_dim() * inner +
           2.0 * batch * n * inner * query_dim;
  }
  double core_flops() const { return 4.0 * batch * heads * n * keys() * d(); }
};

Dims dims_of(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2), state.range(3), state.range(4), state.range(5)};
}

void set_counters(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <bool Backward>
void attention_layer(benchmark::State& state) {
  const Dims dm = dims_of(state);
  Generator g{1, 0};
  nn::Attention<float> attn(dm.query_dim, dm.heads, dm.d(), dm.m == 0 ? 0 : dm.context_dim);
  attn.reset_parameters(g);
  auto x = randn<float>(Shape{dm.batch, dm.n, dm.query_dim}, g);         // [B, N, Cq]
  auto ctx = randn<float>(Shape{dm.batch, dm.keys(), dm.ctx_dim()}, g);  // [B, M, Cc]
  auto dy = randn<float>(x.shape(), g);                                  // [B, N, Cq]
  for (auto _ : state) {
    if (dm.m == 0) {
      auto y = attn.forward(x);
      benchmark::DoNotOptimize(y.data());
      if constexpr (Backward) {
        auto dx = attn.backward(dy);
        benchmark::DoNotOptimize(dx.data());
      }
    } else {
      auto y = attn.forward(x, ctx);
      benchmark::DoNotOptimize(y.data());
      if constexpr (Backward) {
        auto grads = attn.backward_context(dy);
        benchmark::DoNotOptimize(grads.dx.data());
      }
    }
    benchmark::ClobberMemory();
  }
  set_counters(state, Backward ? 3.0 * dm.proj_flops() + 2.5 * dm.core_flops() : dm.proj_flops() + dm.core_flops());
  state.SetItemsProcessed(state.iterations() * dm.batch * dm.n);
}

void BM_Nn_AttentionForward(benchmark::State& state) { attention_layer<false>(state); }
void BM_Nn_AttentionForwardBackward(benchmark::State& state) { attention_layer<true>(state); }

/// The core alone on [B * H, N, d] heads: fused (Fused = true) or materialised reference.
template <bool Fused, bool Backward>
void attention_core(benchmark::State& state) {
  const Dims dm = dims_of(state);
  const std::int64_t d = dm.d(), m = dm.keys();
  const cpu_kernels::AttentionShape s{dm.batch, dm.heads, dm.n, m, d};
  Generator g{2, 0};
  auto q = randn<float>(Shape{dm.batch * dm.heads, dm.n, d}, g);  // [B*H, N, d]
  auto k = randn<float>(Shape{dm.batch * dm.heads, m, d}, g);     // [B*H, M, d]
  auto v = randn<float>(k.shape(), g);                            // [B*H, M, d]
  auto dout = randn<float>(q.shape(), g);                         // [B*H, N, d]
  Tensor<float> o(q.shape()), lse(Shape{dm.batch * dm.heads, dm.n}), dq(q.shape()), dk(k.shape()), dv(v.shape());
  auto ph = [&](auto* p, std::int64_t rows) { return cpu_kernels::packed_heads(p, dm.heads, rows, d); };
  const float scale = 1.0f / std::sqrt(float(d));
  for (auto _ : state) {
    if constexpr (Fused) {
      cpu_kernels::attention_forward<float>(s, ph(q.data(), dm.n), ph(k.data(), m), ph(v.data(), m), ph(o.data(), dm.n),
                                            lse.data(), scale);
      if constexpr (Backward)
        cpu_kernels::attention_backward<float>(s, ph(q.data(), dm.n), ph(k.data(), m), ph(v.data(), m),
                                               ph(o.data(), dm.n), ph(dout.data(), dm.n), lse.data(),
                                               ph(dq.data(), dm.n), ph(dk.data(), m), ph(dv.data(), m), scale);
    } else {
      cpu_kernels::attention_forward_reference<float>(s, ph(q.data(), dm.n), ph(k.data(), m), ph(v.data(), m),
                                                      ph(o.data(), dm.n), scale);
      if constexpr (Backward)
        cpu_kernels::attention_backward_reference<float>(s, ph(q.data(), dm.n), ph(k.data(), m), ph(v.data(), m),
                                                         ph(dout.data(), dm.n), ph(dq.data(), dm.n), ph(dk.data(), m),
                                                         ph(dv.data(), m), scale);
    }
    benchmark::DoNotOptimize(o.data());
    benchmark::DoNotOptimize(dq.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, Backward ? 2.5 * dm.core_flops() : dm.core_flops());
}

void BM_Tensor_AttentionCoreForward(benchmark::State& state) { attention_core<true, false>(state); }
void BM_Tensor_AttentionCoreForwardBackward(benchmark::State& state) { attention_core<true, true>(state); }
void BM_Tensor_AttentionCoreReferenceForward(benchmark::State& state) { attention_core<false, false>(state); }
void BM_Tensor_AttentionCoreReferenceForwardBackward(benchmark::State& state) { attention_core<false, true>(state); }

// {B, N, Cq, H, M (0: self), Cc}: the tiny SD UNet's 16x16 and 8x8 transformer blocks, and its cross-attention
// to 8 text tokens of width 64; SD1.5's 64x64 self-attention at 512x512 (8 heads of 40, both CFG rows).
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "N", "C", "H", "M", "Cc"});
  b->Args({64, 256, 64, 2, 0, 0});
  b->Args({64, 64, 128, 4, 0, 0});
  b->Args({64, 256, 64, 2, 8, 64});
  b->Args({2, 4096, 320, 8, 0, 0});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_Nn_AttentionForward)->Apply(shapes);
BENCHMARK(BM_Nn_AttentionForwardBackward)->Apply(shapes);
BENCHMARK(BM_Tensor_AttentionCoreForward)->Apply(shapes);
BENCHMARK(BM_Tensor_AttentionCoreForwardBackward)->Apply(shapes);
BENCHMARK(BM_Tensor_AttentionCoreReferenceForward)->Apply(shapes);
BENCHMARK(BM_Tensor_AttentionCoreReferenceForwardBackward)->Apply(shapes);
