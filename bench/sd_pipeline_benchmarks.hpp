// SPDX-License-Identifier: MIT
// Stable Diffusion text-to-image benchmarks of StableDiffusion<float, D> on a real-size pipeline folder
// (SPO_BENCH_SD_PIPELINE; full-size folders with random weights come from tools/reference/full_size_pipelines.py):
// one sampling step (the UNet on the [uncond; cond] batch of 2, guidance and the scheduler step), the VAE decode of one
// latent, and the prompt encoding. Each iteration ends with its result on the host (the latents, the embeddings or
// the image), which also waits for a device's queued work. Drivers: bench_sd_pipeline.cpp (cpu) and
// cuda/bench_sd_pipeline_cuda.cpp; the diffusers peer is bench/diffusers_sd_peer.py; bench/run_sd_pipeline.sh runs
// both.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "spo/model/stable_diffusion.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::bench {

template <Device D>
class SdPipelineBenchmarks {
 public:
  using Pipeline = model::StableDiffusion<float, D>;

  /// Registers BM_SD_EncodePrompt, BM_SD_UNetStepCFG and BM_SD_VaeDecode (each name followed by `suffix`).
  static void register_all(const std::string& suffix = {}) {
    for (auto [name, fn] : {std::pair{"BM_SD_EncodePrompt", &encode_prompt}, std::pair{"BM_SD_UNetStepCFG", &unet_step},
                            std::pair{"BM_SD_VaeDecode", &vae_decode}})
      benchmark::RegisterBenchmark((name + suffix).c_str(), fn)->Unit(benchmark::kMillisecond)->UseRealTime();
  }

  /// Registers BM_SD_UNetStepCFG/winograd and BM_SD_VaeDecode/winograd: the same with the CPU's 3x3 convolutions on
  /// oneDNN's Winograd kernels (cpu_kernels::Conv2dAlgorithm).
  static void register_winograd() {
    for (auto [name, fn] :
         {std::pair{"BM_SD_UNetStepCFG/winograd", &unet_step}, std::pair{"BM_SD_VaeDecode/winograd", &vae_decode}})
      benchmark::RegisterBenchmark(
          name,
          [fn](benchmark::State& state) {
            const cpu_kernels::inference_conv2d_algorithm_guard guard(cpu_kernels::Conv2dAlgorithm::winograd);
            fn(state);
          })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  }

 private:
  static Pipeline* pipeline() {
    static std::unique_ptr<Pipeline> p;
    const char* folder = std::getenv("SPO_BENCH_SD_PIPELINE");
    if (!p && folder) {
      model::PipelineLoadOptions o;
      o.scheduler = "ddim";
      p = std::make_unique<Pipeline>(Pipeline::load(folder, o));
    }
    return p.get();
  }

  static model::GenerationSettings settings(Pipeline& sd, int steps) {
    model::GenerationSettings s;
    s.prompts = {"a photo of an astronaut riding a horse on the moon"};
    s.steps = steps;
    s.guidance = 5.0;
    s.height = s.width = sd.default_size();
    return s;
  }

  static bool ready(benchmark::State& state) {
    if (pipeline()) return true;
    state.SkipWithError("set SPO_BENCH_SD_PIPELINE to a pipeline folder (tools/reference/full_size_pipelines.py)");
    return false;
  }

  static void encode_prompt(benchmark::State& state) {
    if (!ready(state)) return;
    auto& sd = *pipeline();
    const auto s = settings(sd, 1);
    for (auto _ : state)
      benchmark::DoNotOptimize(transfer<cpu>(sd.encode_prompt(s.prompts, s.negative_prompts).cond).data());
  }

  static void unet_step(benchmark::State& state) {
    if (!ready(state)) return;
    auto& sd = *pipeline();
    const auto s = settings(sd, 1);
    Generator gen{0, 0};
    const auto e = sd.encode_prompt(s.prompts, s.negative_prompts);
    const auto x = sd.initial_latents(s, gen);
    (void)transfer<cpu>(sd.denoise(x, e, s, gen));  // warm-up: primitives, algorithms and allocator pools
    for (auto _ : state) benchmark::DoNotOptimize(transfer<cpu>(sd.denoise(x, e, s, gen)).data());
  }

  static void vae_decode(benchmark::State& state) {
    if (!ready(state)) return;
    auto& sd = *pipeline();
    Generator gen{0, 0};
    const auto x = sd.initial_latents(settings(sd, 1), gen);
    (void)sd.decode(x);
    for (auto _ : state) benchmark::DoNotOptimize(sd.decode(x).data());
  }
};

}  // namespace spo::bench
