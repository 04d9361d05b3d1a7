// SPDX-License-Identifier: MIT
// UNet on spo::cuda: forward (no grad) and forward + backward (every parameter trainable, gradient of sum(y * dy)) at
// spo's default config (batch 8 and 64, 32x32) and at an SD1.5-sized config (320/640/1280/1280, 64x64 latents,
// batch 8, 77 context tokens of 768), in strict FP32 and with TF32 allowed; and SPO's setting at the SD1.5 size: rank-4
// LoRA on every attention projection, the base frozen. In bfloat16 and half (UNet2DCondition<H, cuda>: 16-bit weights,
// activations and GEMM / convolution operands, FP32 accumulation and statistics) at the SD1.5 size and at the SDXL size
// (320/640/1280, 1/2/10 transformer blocks, 5/10/20 heads, linear projections, text_time, 128x128 latents of a
// 1024x1024 image, batch 2, 77 tokens of 2048). Each benchmark reports the caching allocator's peak (GiB). The
// PyTorch peer is bench/cuda/torch_unet_gpu_peer.py (same names; torch.autocast for the 16-bit rows);
// bench/cuda/run_gpu.sh runs both and prints the table. SPORecipeMinibatch: the peak memory of one minibatch of the
// official SD1.5 SPO recipe in fp16 (see spo_recipe_minibatch).
#include <cstdio>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

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

/// SDXL base's UNet (stabilityai/stable-diffusion-xl-base-1.0, unet/config.json).
model::UNetConfig sdxl_config() {
  model::UNetConfig c;
  c.block_out_channels = {320, 640, 1280};
  c.attention = {false, true, true};
  c.level_attention_heads = std::vector<std::int64_t>{5, 10, 20};
  c.transformer_layers_per_block = std::vector<std::int64_t>{1, 2, 10};
  c.cross_attention_dim = 2048;
  c.use_linear_projection = true;
  c.text_time = model::TextTimeConfig{256, 2816};  // pooled 1280 + 6 time ids of 256
  return c;
}

template <class S>
struct Inputs {
  Tensor<S, cuda> x, ctx, dy;
  Tensor<float, cuda> t;
  std::optional<model::UNetAddedConditions<S, cuda>> added;
};

template <class S>
Inputs<S> make_inputs(const Case& c) {
  Generator g{1, 0};
  const auto& cfg = c.config;
  auto normal = [&](Shape s) {
    Tensor<float, cuda> f = Tensor<float, cuda>::uninitialized(s);
    fill_normal(f.view(), g);
    return cast<S>(f);
  };
  Inputs<S> in{normal(Shape{c.batch, cfg.in_channels, c.size, c.size}),
               normal(Shape{c.batch, c.context_tokens, cfg.cross_attention_dim}),
               normal(Shape{c.batch, cfg.out_channels, c.size, c.size}),
               Tensor<float, cuda>(Shape{c.batch}),
               {}};
  Tensor<float, cpu> t(Shape{c.batch});
  for (std::int64_t i = 0; i < c.batch; ++i) t[i] = static_cast<float>((37 * i) % 1000);
  copy_to_device<float>(t.view(), in.t.view());
  if (cfg.text_time) {
    const std::int64_t ids = 6, pooled = cfg.text_time->projection_class_embeddings_input_dim -
                                         ids * cfg.text_time->addition_time_embed_dim;
    Tensor<float, cpu> id(Shape{c.batch, ids});  // (H, W, 0, 0, H, W) of a 1024x1024 image
    for (std::int64_t i = 0; i < c.batch; ++i)
      for (std::int64_t k = 0; k < ids; ++k) id[i * ids + k] = (k == 2 || k == 3) ? 0.f : 8.f * c.size;
    in.added.emplace(model::UNetAddedConditions<S, cuda>{normal(Shape{c.batch, pooled}), to_device(id)});
  }
  return in;
}

/// Scalar S of the model and its activations (float, bfloat16, half); LoRA = true: rank-4 adapters on every attention
/// projection, everything else frozen (SPO's training setting).
template <class S, bool LoRA>
void run(benchmark::State& state, const Case& c, bool backward, bool tf32) {
  cuda_runtime::set_allow_tf32(tf32);
  caching_allocator<cuda>::instance().reset_peak();  // the peak below counts weights, gradients and activations
  try {
    using Proj = std::conditional_t<LoRA, nn::LoRA<nn::Linear<S, cuda>>, nn::Linear<S, cuda>>;
    model::UNet2DCondition<S, cuda, Proj> unet(c.config);
    Generator g{2, 0};
    unet.reset_parameters(g);
    if constexpr (LoRA) unet.attach_lora(4, 4.0, g);
    auto in = make_inputs<S>(c);
    auto forward = [&] {
      return in.added ? unet.forward(in.x, in.t, in.ctx, *in.added) : unet.forward(in.x, in.t, in.ctx);
    };
    auto step = [&] {
      if (backward) {
        nn::zero_grad(unet);
        auto y = forward();
        auto grads = unet.backward(in.dy);
        benchmark::DoNotOptimize(grads.dsample.data());
      } else {
        nn::no_grad_guard no_grad;
        benchmark::DoNotOptimize(forward().data());
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
    state.counters["peak_gib"] =
        static_cast<double>(caching_allocator<cuda>::instance().peak_in_use_bytes()) / (1 << 30);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  cuda_runtime::synchronize();
  caching_allocator<cuda>::instance().release_all();
  cuda_runtime::set_allow_tf32(false);
}

/*!
  The memory of one training minibatch of the official SD1.5 SPO recipe (train_spo.py, fp16): 10 pairs, each side of
  a pair (winner, loser) run through the policy with classifier-free guidance (conditional and unconditional rows),
  so 2 x 2 x 10 = 40 rows of 64 x 64 latents and 77 x 768 context; the policy (half UNet, rank-4 LoRA) keeps its graph
  and runs backward, the frozen reference UNet (half) runs the same rows without a graph. The other weights the recipe
  holds on each GPU are allocated as buffers of their sizes (../shared/reference/stable-diffusion.md, section 6.2):
  the text encoder (0.25 GB, fp16), the VAE (0.17 GB, fp16) and the step-aware preference model (5.22 GB, fp32).
  Reports the caching allocator's peak; the acceptance of issue 15 asks for at most 40 GB.
!*/
void spo_recipe_minibatch(benchmark::State& state) {
  using S = spo::half;
  caching_allocator<cuda>::instance().reset_peak();
  try {
    const Case c{"sd15/40", sd15_config(), 40, 64, 77};
    using Policy = model::UNet2DCondition<S, cuda, nn::LoRA<nn::Linear<S, cuda>>>;
    using Reference = model::UNet2DCondition<S, cuda>;
    std::optional<Policy> policy;
    std::optional<Reference> reference;
    {
      nn::frozen_parameters_guard frozen;  // the bases hold no gradient memory
      policy.emplace(c.config);
      reference.emplace(c.config);
    }
    Generator g{2, 0};
    policy->reset_parameters(g);
    reference->reset_parameters(g);
    policy->attach_lora(4, 4.0, g);               // the adapters: the only trainable parameters
    std::vector<Tensor<std::byte, cuda>> others;  // text encoder, VAE, preference model
    for (const double gb : {0.25, 0.17, 5.22})
      others.push_back(Tensor<std::byte, cuda>::uninitialized(Shape{static_cast<std::int64_t>(gb * 1e9)}));
    auto in = make_inputs<S>(c);
    auto step = [&] {
      {
        nn::no_grad_guard no_grad;
        benchmark::DoNotOptimize(reference->forward(in.x, in.t, in.ctx).data());  // [40, 4, 64, 64]
      }
      nn::zero_grad(*policy);
      auto y = policy->forward(in.x, in.t, in.ctx);  // [40, 4, 64, 64]
      auto grads = policy->backward(in.dy);
      benchmark::DoNotOptimize(grads.dsample.data());
    };
    step();
    cuda_runtime::synchronize();
    for (auto _ : state) {
      step();
      cuda_runtime::synchronize();
    }
    const double peak = static_cast<double>(caching_allocator<cuda>::instance().peak_in_use_bytes());
    state.counters["peak_gib"] = peak / (1 << 30);
    state.counters["peak_gb"] = peak / 1e9;
    state.counters["fits_40gb"] = peak <= 40e9 ? 1 : 0;
    state.counters["trainable"] = static_cast<double>(nn::parameter_count(*policy, true));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  cuda_runtime::synchronize();
  caching_allocator<cuda>::instance().release_all();
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
        benchmark::RegisterBenchmark(
            name.c_str(), [c, backward, tf32](benchmark::State& s) { run<float, false>(s, c, backward, tf32); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
  // SPO's setting: the base frozen, LoRA adapters trained (backward computes no weight gradients of the base).
  for (const bool tf32 : {false, true}) {
    const std::string name = std::string("UNetForwardBackwardLoRA/sd15/8") + (tf32 ? "/tf32" : "/fp32");
    benchmark::RegisterBenchmark(name.c_str(),
                                 [c = cases[2], tf32](benchmark::State& s) { run<float, true>(s, c, true, tf32); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  // 16-bit: SD1.5 at batch 8 and SDXL at 1024x1024 batch 2; forward, training step with every parameter, with LoRA.
  const std::vector<Case> big{cases[2], {"sdxl/2", sdxl_config(), 2, 128, 77}};
  auto register_16 = [&]<class S>(const char* dtype) {
    for (const auto& c : big) {
      const std::string tail = "/" + c.name + "/" + dtype;
      for (const bool backward : {false, true})
        benchmark::RegisterBenchmark(((backward ? "UNetForwardBackward" : "UNetForward") + tail).c_str(),
                                     [c, backward](benchmark::State& s) { run<S, false>(s, c, backward, false); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      benchmark::RegisterBenchmark(("UNetForwardBackwardLoRA" + tail).c_str(),
                                   [c](benchmark::State& s) { run<S, true>(s, c, true, false); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  };
  register_16.operator()<spo::bfloat16>("bf16");
  register_16.operator()<spo::half>("fp16");
  benchmark::RegisterBenchmark("SPORecipeMinibatch/sd15/40/fp16", spo_recipe_minibatch)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->Iterations(2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
