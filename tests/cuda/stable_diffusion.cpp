// SPDX-License-Identifier: MIT
// Text to image on spo::cuda against the same pipeline on the CPU, from the tiny SD 1.5 and SDXL folders the CPU test
// compares with diffusers (tests/data/pipelines): the prompt embeddings (the CLIP encoders' causal attention,
// quick_gelu and GELU, the pooled and projected embeddings of SDXL), the final latents after every scheduler (DDIM
// with eta 0 and eta 1, Euler, Euler ancestral and DPM-Solver++ 2M, whose noise and multistep state follow the same
// generator, PNDM) and the decoded image; float and double.
// Bounds, per element (cuda_test::scaled_error): double 1e-10, float 2e-3 of the tensor's largest CPU magnitude
// (the whole-model bounds of the UNet test: the pipeline chains the text encoder, 4 UNet calls and the VAE).
// DDIM with dynamic thresholding (its quantile runs on a host copy of x0 for a device) against the CPU step alone:
// double 1e-12 of the scale.
// The 16-bit pipelines (StableDiffusion<float, cuda, half / bfloat16>: networks in 16 bits, latents, scheduler and
// guidance in float) against the float pipeline on the device whose weights are the same 16-bit roundings, so that
// only the 16-bit activations differ: prompt embeddings within tol of their scale, final latents and image within
// 4 tol (four guided UNet calls and the VAE chained), tol = 2^-6 for half and 2^-3 for bfloat16 (the whole-UNet bounds
// of cuda_unet_half). SDXL's VAE runs in float under half (force_upcast), in 16 bits otherwise.
#include "spo/model/stable_diffusion.hpp"

#include <concepts>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/diffusion/scheduler_json.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"

using namespace spo;

namespace {

/// The test data: SPO_TEST_DATA_DIR from the environment (tools/gpu_check.sh sets it to the checkout's tests/data, for
/// a bundle built on another machine), else the source tree's.
std::string data_dir() {
  const char* env = std::getenv("SPO_TEST_DATA_DIR");
  return env ? env : SPO_TEST_DATA_DIR;
}

const std::string dir = data_dir() + "/pipelines/";

template <class T>
void check_pipeline(const std::string& name, const std::string& scheduler, double eta, bool negative) {
  CAPTURE(name);
  CAPTURE(scheduler);
  CAPTURE(eta);
  model::PipelineLoadOptions o;
  o.scheduler = scheduler;
  o.ddim_eta = eta;
  auto host = model::StableDiffusion<T, cpu>::load(dir + name, o);
  auto device = model::StableDiffusion<T, cuda>::load(dir + name, o);
  model::GenerationSettings s;
  s.prompts = {"a photo of a red dress", "a blue shirt, folded"};
  if (negative) s.negative_prompts = std::vector<std::string>{"blurry", "a sneaker"};
  s.steps = 4;
  s.guidance = 5.0;
  const double tol = cuda_test::model_tolerance<T>();

  const auto eh = host.encode_prompt(s.prompts, s.negative_prompts);
  const auto ed = device.encode_prompt(s.prompts, s.negative_prompts);
  CHECK(cuda_test::scaled_error(to_host(ed.cond), eh.cond, tol) <= 1.0);
  CHECK(cuda_test::scaled_error(to_host(ed.uncond), eh.uncond, tol) <= 1.0);
  if (host.kind() == model::PipelineKind::sdxl) {
    CHECK(cuda_test::scaled_error(to_host(ed.pooled), eh.pooled, tol) <= 1.0);
    CHECK(cuda_test::scaled_error(to_host(ed.negative_pooled), eh.negative_pooled, tol) <= 1.0);
  }

  Generator gh{7, 0}, gd{7, 0};
  const auto lh = host.denoise(host.initial_latents(s, gh), eh, s, gh);      // [B, C, h, w]
  const auto ld = device.denoise(device.initial_latents(s, gd), ed, s, gd);  // [B, C, h, w]
  CHECK(gh.offset == gd.offset);                                             // the same draws from the stream
  CHECK(cuda_test::scaled_error(to_host(ld), lh, tol) <= 1.0);
  CHECK(cuda_test::scaled_error(device.decode(ld), host.decode(lh), tol) <= 1.0);
}

/// Rounds every parameter of `m` through the 16-bit scalar H (the float twin of a 16-bit model).
template <class H, class M>
void round_through(M& m) {
  m.visit_parameters([](std::string_view, auto& p) { p.value = cast<float>(cast<H>(p.value)); }, {});
}

template <class H>
void check_half_pipeline(const std::string& name, const std::string& scheduler, double tol) {
  CAPTURE(name);
  CAPTURE(scheduler);
  model::PipelineLoadOptions o;
  o.scheduler = scheduler;
  auto half = model::StableDiffusion<float, cuda, H>::load(dir + name, o);  // F32 files rounded into H
  auto ref = model::StableDiffusion<float, cuda>::load(dir + name, o);
  const bool xl = ref.kind() == model::PipelineKind::sdxl;
  CHECK(half.vae_upcast() == (xl && std::same_as<H, spo::half>));
  round_through<H>(ref.text_encoder());
  if (xl) round_through<H>(ref.text_encoder_2());
  round_through<H>(ref.unet());
  if (!half.vae_upcast()) round_through<H>(ref.vae());
  model::GenerationSettings s;
  s.prompts = {"a photo of a red dress", "a blue shirt, folded"};
  s.steps = 4;
  s.guidance = 5.0;

  const auto e16 = half.encode_prompt(s.prompts, s.negative_prompts);
  const auto e32 = ref.encode_prompt(s.prompts, s.negative_prompts);
  const auto gap = [](const Tensor<float, cuda>& a, const Tensor<float, cuda>& b) {
    return cuda_test::scaled_error(to_host(a), to_host(b), 1.0);
  };
  MESSAGE("embeddings: scaled gap " << gap(e16.cond, e32.cond));
  CHECK(gap(e16.cond, e32.cond) <= tol);
  CHECK(gap(e16.uncond, e32.uncond) <= tol);
  if (xl) CHECK(gap(e16.pooled, e32.pooled) <= tol);

  Generator g16{7, 0}, g32{7, 0};
  const auto l16 = half.denoise(half.initial_latents(s, g16), e16, s, g16);  // [B, C, h, w]
  const auto l32 = ref.denoise(ref.initial_latents(s, g32), e32, s, g32);    // [B, C, h, w]
  CHECK(g16.offset == g32.offset);
  MESSAGE("final latents: scaled gap " << gap(l16, l32));
  CHECK(gap(l16, l32) <= 4 * tol);
  const double image_gap = cuda_test::scaled_error(half.decode(l16), ref.decode(l32), 1.0);
  MESSAGE("image: scaled gap " << image_gap);
  CHECK(image_gap <= 4 * tol);
}

}  // namespace

TEST_CASE_TEMPLATE("StableDiffusion<float, cuda, H>: the 16-bit pipeline against float on the same rounded weights", H,
                   spo::half, spo::bfloat16) {
  const double tol = std::same_as<H, spo::half> ? 0x1p-6 : 0x1p-3;
  for (const char* name : {"tiny_sd15", "tiny_sdxl"}) {
    check_half_pipeline<H>(name, "ddim", tol);
    check_half_pipeline<H>(name, "euler_a", tol);
  }
}

TEST_CASE_TEMPLATE("StableDiffusion on cuda == cpu: SD 1.5 and SDXL, every scheduler", T, float, double) {
  for (const char* name : {"tiny_sd15", "tiny_sdxl"}) {
    check_pipeline<T>(name, "ddim", 0.0, false);
    check_pipeline<T>(name, "ddim", 1.0, true);
    check_pipeline<T>(name, "euler", 0.0, false);
    check_pipeline<T>(name, "euler_a", 0.0, true);
    check_pipeline<T>(name, "dpm++2m", 0.0, false);
    check_pipeline<T>(name, "pndm", 0.0, false);
  }
}

TEST_CASE("DDIM with dynamic thresholding steps on cuda as on the CPU, with and without eta") {
  for (double eta : {0.0, 1.0}) {
    CAPTURE(eta);
    const std::string config = R"({"_class_name": "DDIMScheduler", "thresholding": true, "sample_max_value": 0.5,
                                   "dynamic_thresholding_ratio": 0.9})";
    auto host = std::get<diffusion::DdimSampling>(diffusion::scheduler_from_json_text(config, {}, eta));
    auto device = host;
    host.set_timesteps(5);
    device.set_timesteps(5);
    Generator g{21, 0};
    auto x = randn<double>(Shape{2, 4, 8, 8}, g);      // [B, C, h, w]
    auto eps = randn<double>(Shape{2, 4, 8, 8}, g);    // [B, C, h, w]
    auto noise = randn<double>(Shape{2, 4, 8, 8}, g);  // [B, C, h, w]
    const auto deps = to_device(eps), dnoise = to_device(noise);
    for (double t : host.timesteps()) {  // every step from the CPU's current x
      const auto next = device.step(deps, t, to_device(x), diffusion::StepNoise<double, cuda>(dnoise));
      x = host.step(eps, t, x, diffusion::StepNoise<double, cpu>(noise));
      CHECK(cuda_test::scaled_error(to_host(next), x, 1e-12) <= 1.0);
    }
  }
}

TEST_CASE("StableDiffusion on cuda: a released component names itself") {
  auto sd = model::StableDiffusion<float, cuda>::load(dir + "tiny_sd15");
  sd.release(model::PipelineComponent::text_encoders);
  CHECK_THROWS_WITH_AS((void)sd.encode_prompt({"a dress"}, std::nullopt),
                       doctest::Contains("the pipeline's text encoders were released"), input_error);
}
