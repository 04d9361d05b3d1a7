// SPDX-License-Identifier: MIT
// UNet on spo::cuda: forward (no grad) and forward + backward (every parameter trainable, gradient of sum(y * dy)) at
// spo's default config (batch 8 and 64, 32x32) and at an SD1.5-sized config (320/640/1280/1280, 64x64 latents,
// batch 8, 77 context tokens of 768), in strict FP32 and with TF32 allowed; and SPO's setting at the SD1.5 size: rank-4
// LoRA on every attention projection, the base frozen. The PyTorch peer is
// bench/cuda/torch_unet_gpu_peer.py (same names); bench/cuda/run_gpu.sh runs both and prints the table.
#include <cstdio>
#include <string>
#include <type_traits>

#include <benchmark/benchmark.h>

#include "spo/cuda.hpp"
#include "spo/model/unet_2d_condition.hpp"

using namespace spo;

namespace {

struct Case {
  std::string name;
  model::UNetConfig config;
  std::int64_t batch, size, context_tokens;
};

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

model::UNetConfig sd15_config() { return model::UNetConfig{}; }  // the defaults are SD1.5's UNet

struct Inputs {
  Tensor<float, cuda> x, t, ctx, dy;
};

Inputs make_inputs(const Case& c) {
  Generator g{1, 0};
  const auto& cfg = c.config;
  Inputs in{Tensor<float, cuda>::uninitialized(Shape{c.batch, cfg.in_channels, c.size, c.size}),
            Tensor<float, cuda>(Shape{c.batch}),
            Tensor<float, cuda>::uninitialized(Shape{c.batch, c.context_tokens, cfg.cross_attention_dim}),
            Tensor<float, cuda>::uninitialized(Shape{c.batch, cfg.out_channels, c.size, c.size})};
  fill_normal(in.x.view(), g);
  fill_normal(in.ctx.view(), g);
  fill_normal(in.dy.view(), g);
  Tensor<float, cpu> t(Shape{c.batch});
  for (std::int64_t i = 0; i < c.batch; ++i) t[i] = static_cast<float>((37 * i) % 1000);
  copy_to_device<float>(t.view(), in.t.view());
  return in;
}

/// LoRA = true: rank-4 adapters on every attention projection, everything else frozen (SPO's training setting).
template <bool LoRA>
void run(benchmark::State& state, const Case& c, bool backward, bool tf32) {
  cuda_runtime::set_allow_tf32(tf32);
  try {
    using Proj = std::conditional_t<LoRA, nn::LoRA<nn::Linear<float, cuda>>, nn::Linear<float, cuda>>;
    model::UNet2DCondition<float, cuda, Proj> unet(c.config);
    Generator g{2, 0};
    unet.reset_parameters(g);
    if constexpr (LoRA) unet.attach_lora(4, 4.0, g);
    auto in = make_inputs(c);
    auto step = [&] {
      if (backward) {
        nn::zero_grad(unet);
        auto y = unet.forward(in.x, in.t, in.ctx);
        auto grads = unet.backward(in.dy);
        benchmark::DoNotOptimize(grads.dsample.data());
      } else {
        nn::no_grad_guard no_grad;
        benchmark::DoNotOptimize(unet.forward(in.x, in.t, in.ctx).data());
      }
    };
    step();  // warm-up: cuBLAS / cuDNN handles, algorithm choice, allocator pools
    cuda_runtime::synchronize();
    for (auto _ : state) {
      step();
      cuda_runtime::synchronize();
    }
    state.SetItemsProcessed(state.iterations() * c.batch);
    state.counters["parameters"] = static_cast<double>(nn::parameter_count(unet));
    state.counters["trainable"] = static_cast<double>(nn::parameter_count(unet, true));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  cuda_runtime::synchronize();
  caching_allocator<cuda>::instance().release_all();
  cuda_runtime::set_allow_tf32(false);
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_runtime::cuda_available()) {
    std::printf("no CUDA device: %s\n", cuda_runtime::unavailable_reason().c_str());
    return 77;
  }
  std::printf("device: %s\n", cuda_runtime::device_description().c_str());
  const std::vector<Case> cases{{"default/8", default_config(), 8, 32, 8},
                                {"default/64", default_config(), 64, 32, 8},
                                {"sd15/8", sd15_config(), 8, 64, 77}};
  for (const auto& c : cases)
    for (const bool tf32 : {false, true})
      for (const bool backward : {false, true}) {
        const std::string name =
            std::string(backward ? "UNetForwardBackward/" : "UNetForward/") + c.name + (tf32 ? "/tf32" : "/fp32");
        benchmark::RegisterBenchmark(name.c_str(),
                                     [c, backward, tf32](benchmark::State& s) { run<false>(s, c, backward, tf32); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
  // SPO's setting: the base frozen, LoRA adapters trained (backward computes no weight gradients of the base).
  for (const bool tf32 : {false, true}) {
    const std::string name = std::string("UNetForwardBackwardLoRA/sd15/8") + (tf32 ? "/tf32" : "/fp32");
    benchmark::RegisterBenchmark(name.c_str(),
                                 [c = cases[2], tf32](benchmark::State& s) { run<true>(s, c, true, tf32); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
