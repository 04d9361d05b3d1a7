// SPDX-License-Identifier: MIT
/// @brief GroupNorm and SiLU throughput (float, [B, C, H, W]), forward (no grad) and forward+backward.
/// Peer: bench/torch_peer.py (torch.nn.GroupNorm, F.silu). Counters: items = B C H W elements per pass;
/// bytes = the tensors a minimal implementation touches per call: forward 2 (read x, write y), forward+backward
/// GroupNorm 6 (x, y, xhat; dy, xhat, dx) and SiLU 5 (x, y; x, dy, dx) elements of 4 bytes each.
#include <benchmark/benchmark.h>

#include "spo/core/rng.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;

namespace {

Shape shape_of(const benchmark::State& state) {
  return Shape{state.range(0), state.range(1), state.range(2), state.range(3)};
}

void set_counters(benchmark::State& state, std::int64_t numel, double tensors_touched) {
  const auto calls = static_cast<std::int64_t>(state.iterations());
  state.SetItemsProcessed(calls * numel);
  state.SetBytesProcessed(static_cast<std::int64_t>(tensors_touched * static_cast<double>(calls * numel) * 4.0));
}

void BM_Nn_GroupNorm_Forward(benchmark::State& state) {
  const Shape s = shape_of(state);
  Generator g{1, 0};
  auto x = randn<float>(s, g);
  nn::GroupNorm<float> norm(state.range(4), s[1]);
  nn::no_grad_guard guard;
  for (auto _ : state) {
    auto y = norm.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, s.numel(), 2);
}

void BM_Nn_GroupNorm_ForwardBackward(benchmark::State& state) {
  const Shape s = shape_of(state);
  Generator g{1, 0};
  auto x = randn<float>(s, g);
  auto dy = randn<float>(s, g);
  nn::GroupNorm<float> norm(state.range(4), s[1]);
  for (auto _ : state) {
    auto y = norm.forward(x);
    auto dx = norm.backward(dy);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dx.data());
  }
  set_counters(state, s.numel(), 6);
}

void BM_Nn_SiLU_Forward(benchmark::State& state) {
  const Shape s = shape_of(state);
  Generator g{1, 0};
  auto x = randn<float>(s, g);
  nn::SiLU<float> act;
  nn::no_grad_guard guard;
  for (auto _ : state) {
    auto y = act.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, s.numel(), 2);
}

void BM_Nn_SiLU_ForwardBackward(benchmark::State& state) {
  const Shape s = shape_of(state);
  Generator g{1, 0};
  auto x = randn<float>(s, g);
  auto dy = randn<float>(s, g);
  nn::SiLU<float> act;
  for (auto _ : state) {
    auto y = act.forward(x);
    auto dx = act.backward(dy);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dx.data());
  }
  set_counters(state, s.numel(), 5);
}

// (B, C, H, W, groups) as in torch_peer.py's NORM_SHAPES
void norm_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"b", "c", "h", "w", "groups"});
  b->Args({64, 32, 32, 32, 32});
  b->Args({64, 64, 16, 16, 32});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void act_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"b", "c", "h", "w"});
  b->Args({64, 32, 32, 32});
  b->Args({64, 64, 16, 16});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_Nn_GroupNorm_Forward)->Apply(norm_shapes);
BENCHMARK(BM_Nn_GroupNorm_ForwardBackward)->Apply(norm_shapes);
BENCHMARK(BM_Nn_SiLU_Forward)->Apply(act_shapes);
BENCHMARK(BM_Nn_SiLU_ForwardBackward)->Apply(act_shapes);
