// SPDX-License-Identifier: MIT
// Stable Diffusion text-to-image benchmarks on a real-size pipeline folder (SPO_BENCH_SD_PIPELINE; full-size folders
// with random weights come from tools/reference/full_size_pipelines.py): one sampling step (the UNet on the
// [uncond; cond] batch of 2, guidance and the scheduler step), the VAE decode of one latent, and the prompt
// encoding. The diffusers peer is bench/diffusers_sd_peer.py; bench/run_sd_pipeline.sh runs both.
#include <cstdlib>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "spo/model/stable_diffusion.hpp"

using namespace spo;
using Pipeline = model::StableDiffusion<float>;

namespace {

const char* folder() { return std::getenv("SPO_BENCH_SD_PIPELINE"); }

Pipeline* pipeline() {
  static std::unique_ptr<Pipeline> p;
  if (!p && folder()) {
    model::PipelineLoadOptions o;
    o.scheduler = "ddim";
    p = std::make_unique<Pipeline>(Pipeline::load(folder(), o));
  }
  return p.get();
}

model::GenerationSettings settings(Pipeline& sd, int steps) {
  model::GenerationSettings s;
  s.prompts = {"a photo of an astronaut riding a horse on the moon"};
  s.steps = steps;
  s.guidance = 5.0;
  s.height = s.width = sd.default_size();
  return s;
}

bool ready(benchmark::State& state) {
  if (pipeline()) return true;
  state.SkipWithError("set SPO_BENCH_SD_PIPELINE to a pipeline folder (tools/reference/full_size_pipelines.py)");
  return false;
}

void BM_SD_EncodePrompt(benchmark::State& state) {
  if (!ready(state)) return;
  auto& sd = *pipeline();
  const auto s = settings(sd, 1);
  for (auto _ : state) benchmark::DoNotOptimize(sd.encode_prompt(s.prompts, s.negative_prompts).cond.data());
}

void BM_SD_UNetStepCFG(benchmark::State& state) {
  if (!ready(state)) return;
  auto& sd = *pipeline();
  const auto s = settings(sd, 1);
  Generator gen{0, 0};
  const auto e = sd.encode_prompt(s.prompts, s.negative_prompts);
  const auto x = sd.initial_latents(s, gen);
  sd.denoise(x, e, s, gen);  // warm-up: oneDNN primitives and allocator pools
  for (auto _ : state) benchmark::DoNotOptimize(sd.denoise(x, e, s, gen).data());
}

void BM_SD_VaeDecode(benchmark::State& state) {
  if (!ready(state)) return;
  auto& sd = *pipeline();
  Generator gen{0, 0};
  const auto x = sd.initial_latents(settings(sd, 1), gen);
  sd.decode(x);
  for (auto _ : state) benchmark::DoNotOptimize(sd.decode(x).data());
}

}  // namespace

BENCHMARK(BM_SD_EncodePrompt)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SD_UNetStepCFG)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SD_VaeDecode)->Unit(benchmark::kMillisecond)->UseRealTime();
