// SPDX-License-Identifier: MIT
/// @brief Conv2d throughput on NCHW float32, batch 64, padding k/2, at the widths of an SD-style UNet.
/// Counter GFLOPS: one pass = 2 B Cout Ho Wo Cin k k; forward+backward (dx, dW, db) = 3 passes.
/// BM_Conv2d_Inference/{direct,winograd}: a 3x3 forward without grad mode at the sizes of SD's UNet and VAE, on the
/// direct kernels and on Winograd's (cpu_kernels::Conv2dAlgorithm; each call includes the weight reorder or
/// transform, as in the layer); counter scratchpad_MB: the Winograd primitive's scratchpad (0 where it runs direct).
#include <array>

#include <benchmark/benchmark.h>

#include "spo/core/rng.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/tensor/cpu/conv2d.hpp"
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

/// args: channels (in = out), batch, size (square), algorithm (0 direct, 1 winograd)
void BM_Conv2d_Inference(benchmark::State& state) {
  const std::int64_t c = state.range(0), n = state.range(1), hw = state.range(2);
  const auto alg = state.range(3) ? cpu_kernels::Conv2dAlgorithm::winograd : cpu_kernels::Conv2dAlgorithm::direct;
  nn::Conv2d<float> conv(c, c, 3, 1, 1);
  Generator g{4, 0};
  conv.reset_parameters(g);
  const auto x = randn<float>(Shape{n, c, hw, hw}, g);  // [N, C, H, W]
  nn::no_grad_guard no_grad;
  const cpu_kernels::inference_conv2d_algorithm_guard guard(alg);
  benchmark::DoNotOptimize(conv.forward(x).data());  // warm-up: primitive creation, pooled buffers
  for (auto _ : state) {
    auto y = conv.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  const auto s = conv.geometry(x.shape());
  const auto& e = cpu_kernels::detail::conv2d_forward_entry(s, true, alg);
  state.counters["scratchpad_MB"] =
      e.algorithm == cpu_kernels::Conv2dAlgorithm::winograd ? static_cast<double>(e.scratchpad_md.get_size()) / 1e6 : 0;
  set_flops(state, s.flops());
}

void inference_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"c", "n", "hw", "winograd"});
  for (const auto& [c, n, hw] : {std::array<std::int64_t, 3>{128, 1, 512},
                                 {256, 1, 256},
                                 {512, 1, 128},
                                 {320, 2, 128},
                                 {640, 2, 64},
                                 {320, 2, 64},
                                 {512, 1, 64},
                                 {1280, 2, 32}})
    for (std::int64_t w : {0, 1}) b->Args({c, n, hw, w});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cin", "cout", "h", "w", "k"});
  b->Args({32, 32, 32, 32, 3})->Args({64, 64, 16, 16, 3})->Args({128, 128, 8, 8, 3})->Args({64, 128, 16, 16, 1});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_Nn_Conv2d_Forward)->Apply(shapes);
BENCHMARK(BM_Nn_Conv2d_ForwardBackward)->Apply(shapes);
BENCHMARK(BM_Conv2d_Inference)->Apply(inference_shapes);
