// SPDX-License-Identifier: MIT
/// @brief Conv2d throughput on NCHW float32, batch 64, padding k/2, at the widths of an SD-style UNet.
/// Counter GFLOPS: one pass = 2 B Cout Ho Wo Cin k k; forward+backward (dx, dW, db) = 3 passes.
#include <benchmark/benchmark.h>

#include "spo/core/rng.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;

namespace {

constexpr std::int64_t batch = 64;

struct Setup {
  nn::Conv2d<float> conv;
  Tensor<float> x, dy;
  double flops = 0;

  explicit Setup(const benchmark::State& state) {
    const std::int64_t cin = state.range(0), cout = state.range(1), h = state.range(2), w = state.range(3),
                       k = state.range(4);
    conv = nn::Conv2d<float>(cin, cout, k, 1, k / 2);
    Generator g{3, 0};
    conv.reset_parameters(g);
    x = randn<float>(Shape{batch, cin, h, w}, g);
    const auto s = conv.geometry(x.shape());
    dy = randn<float>(Shape{batch, cout, s.out_h(), s.out_w()}, g);
    flops = s.flops();
    for (int i = 0; i < 2; ++i) {  // warm-up: primitive creation and first touch of the pooled buffers
      auto y = conv.forward(x);
      conv.backward(dy);
    }
  }
};

void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOPS"] =
      benchmark::Counter(flops_per_iter * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Nn_Conv2d_Forward(benchmark::State& state) {
  Setup st(state);
  nn::no_grad_guard no_grad;
  for (auto _ : state) {
    auto y = st.conv.forward(st.x);
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(state, st.flops);
}

void BM_Nn_Conv2d_ForwardBackward(benchmark::State& state) {
  Setup st(state);
  for (auto _ : state) {
    auto y = st.conv.forward(st.x);
    auto dx = st.conv.backward(st.dy);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dx.data());
  }
  set_flops(state, 3.0 * st.flops);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cin", "cout", "h", "w", "k"});
  b->Args({32, 32, 32, 32, 3})->Args({64, 64, 16, 16, 3})->Args({128, 128, 8, 8, 3})->Args({64, 128, 16, 16, 1});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_Nn_Conv2d_Forward)->Apply(shapes);
BENCHMARK(BM_Nn_Conv2d_ForwardBackward)->Apply(shapes);
