// SPDX-License-Identifier: MIT
// UNet microbenchmarks at the default (pretrain_base) config: forward at batch 8 and 64, a training step
// (forward + backward + AdamW) at batch 64, and one DDIM step. The PyTorch peer is bench/torch_unet_peer.py.
#include <benchmark/benchmark.h>

#include "spo/diffusion/ddim.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/optim/adamw.hpp"

using namespace spo;

namespace {
model::UNetConfig default_config() {
  model::UNetConfig c;
  c.in_channels = 1;
  c.out_channels = 1;
  c.block_out_channels = {32, 64, 128};
  c.attention = {false, true, true};
  c.layers_per_block = 1;
  c.attention_heads = 4;
  c.cross_attention_dim = 64;
  c.norm_num_groups = 16;
  return c;
}

struct Inputs {
  Tensor<float> x, t, ctx;
};
Inputs inputs(std::int64_t b) {
  Generator g{1, 0};
  Inputs in{randn<float>(Shape{b, 1, 32, 32}, g), Tensor<float>(Shape{b}), randn<float>(Shape{b, 8, 64}, g)};
  for (std::int64_t i = 0; i < b; ++i) in.t[i] = static_cast<float>((37 * i) % 1000);
  return in;
}

void BM_Model_UNetForward(benchmark::State& state) {
  const std::int64_t b = state.range(0);
  model::UNet2DCondition<float> unet(default_config());
  Generator g{2, 0};
  unet.reset_parameters(g);
  auto in = inputs(b);
  nn::no_grad_guard no_grad;
  unet.forward(in.x, in.t, in.ctx);  // warm-up: oneDNN primitive creation and allocator pools
  for (auto _ : state) benchmark::DoNotOptimize(unet.forward(in.x, in.t, in.ctx).data());
  state.SetItemsProcessed(state.iterations() * b);
}

void BM_Model_UNetTrainStep(benchmark::State& state) {
  const std::int64_t b = state.range(0);
  model::UNet2DCondition<float> unet(default_config());
  Generator g{2, 0};
  unet.reset_parameters(g);
  optim::AdamW<float> opt(optim::AdamWOptions{1e-4, 0.9, 0.999, 1e-8, 1e-4});
  auto in = inputs(b);
  auto dy = randn<float>(in.x.shape(), g);
  auto step = [&] {
    nn::zero_grad(unet);
    unet.forward(in.x, in.t, in.ctx);
    auto grads = unet.backward(dy);
    opt.step(unet);
    return grads;
  };
  step();  // warm-up: primitive creation, optimizer state, allocator pools
  for (auto _ : state) {
    nn::zero_grad(unet);
    auto y = unet.forward(in.x, in.t, in.ctx);
    auto grads = unet.backward(dy);
    opt.step(unet);
    benchmark::DoNotOptimize(grads.dsample.data());
  }
  state.SetItemsProcessed(state.iterations() * b);
}

void BM_Diffusion_DdimStep(benchmark::State& state) {
  const std::int64_t b = state.range(0);
  diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction> ddim(
      diffusion::LinearBetas{}, diffusion::DdimConfig{1000, diffusion::TimestepSpacing::leading, 1});
  ddim.set_timesteps(20);
  Generator g{3, 0};
  auto x = randn<float>(Shape{b, 1, 32, 32}, g);
  auto u = randn<float>(Shape{b, 1, 32, 32}, g);
  for (auto _ : state) benchmark::DoNotOptimize(ddim.step(u, 501, x, 1.0, &g).prev_sample.data());
  state.SetItemsProcessed(state.iterations() * b);
}
}  // namespace

BENCHMARK(BM_Model_UNetForward)->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Model_UNetTrainStep)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Diffusion_DdimStep)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();
