// SPDX-License-Identifier: MIT
#include "spo/model/stable_diffusion.hpp"

#include <concepts>
#include <string>

#include <doctest/doctest.h>

using namespace spo;

namespace {

const std::string dir = std::string(SPO_TEST_DATA_DIR) + "/pipelines/";

double max_abs(const Tensor<double>& a) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a[i]));
  return m;
}

/// The pipeline StableDiffusion<T, cpu, S> (networks in S, latents and scheduler in T) against diffusers' run.
template <Scalar T, StorageScalar S = T>
void check_pipeline(const std::string& name, model::PipelineKind kind, double tolerance) {
  const io::NamedTensors ref = io::load_safetensors(dir + name + ".expected.safetensors");
  auto sd = model::StableDiffusion<T, cpu, S>::load(dir + name);
  CHECK(sd.kind() == kind);
  CHECK_FALSE(sd.vae_upcast());  // only a half VAE of SDXL is upcast
  model::GenerationSettings s;
  s.prompts = {ref.metadata.at("prompt")};
  s.steps = std::stoi(ref.metadata.at("steps"));
  s.guidance = std::stod(ref.metadata.at("guidance"));
  s.height = std::stoll(ref.metadata.at("height"));
  s.width = std::stoll(ref.metadata.at("width"));
  const auto e = sd.encode_prompt(s.prompts, s.negative_prompts);
  auto compare = [&](const char* what, const Tensor<T>& got) {
    const auto want = ref.get<T>(what);
    REQUIRE(got.shape() == want.shape());
    const double err = max_abs_diff<T>(got.view(), want.view());
    MESSAGE(name << " " << std::string(what) << ": max abs error " << err << " (scale "
                 << max_abs(ref.get<double>(what)) << ")");
    CHECK(err <= tolerance * std::max(1.0, max_abs(ref.get<double>(what))));
  };
  compare("prompt_embeds", e.cond);
  compare("negative_prompt_embeds", e.uncond);
  if (kind == model::PipelineKind::sdxl) {
    compare("pooled_prompt_embeds", e.pooled);
    compare("negative_pooled_prompt_embeds", e.negative_pooled);
  }
  Generator gen{0, 0};
  int calls = 0;
  const auto latents =
      sd.denoise(sd.prepare_latents(ref.get<T>("latents.init"), s.steps), e, s, gen, [&](int step, int steps) {
        ++calls;
        CHECK(step == calls);
        CHECK(steps == s.steps);
      });
  CHECK(calls == s.steps);
  compare("latents.final", latents);
  compare("image", sd.decode(latents));
}

}  // namespace

TEST_CASE_TEMPLATE("a whole tiny SD 1.5 and SDXL pipeline gives diffusers' latents and image", T, double, float) {
  const double tol = std::same_as<T, double> ? 1e-10 : 1e-4;
  check_pipeline<T>("tiny_sd15", model::PipelineKind::sd, tol);
  check_pipeline<T>("tiny_sdxl", model::PipelineKind::sdxl, tol);
}

// Networks in another scalar than the pipeline's: the narrowing and widening at each network's edge, the timesteps and
// SDXL's time ids in the networks' compute type. float networks behind double latents and scheduler meet diffusers
// within float's bound, as the float pipeline does (the CPU's version of StableDiffusion<float, cuda, half>).
TEST_CASE("networks in float behind double latents (StableDiffusion<double, cpu, float>) give diffusers' results") {
  check_pipeline<double, float>("tiny_sd15", model::PipelineKind::sd, 1e-4);
  check_pipeline<double, float>("tiny_sdxl", model::PipelineKind::sdxl, 1e-4);
}

TEST_CASE("generate: settings are checked by name; sizes follow the checkpoint") {
  auto sd = model::StableDiffusion<float>::load(dir + "tiny_sd15");
  CHECK(sd.default_size() == 16);
  std::size_t frozen = 0, all = 0;
  sd.unet().visit_parameters(
      [&](std::string_view, auto& p) {
        ++all;
        frozen += !p.trainable && p.grad.numel() == 0;
      },
      {});
  CHECK(all > 50);
  CHECK(frozen == all);  // inference weights hold no gradient memory
  model::GenerationSettings s;
  s.prompts = {"a red dress"};
  s.steps = 2;
  s.guidance = 5.0;
  Generator gen{1, 0};
  const auto image = sd.generate(s, gen);
  CHECK(image.shape() == Shape{1, 3, 16, 16});
  s.height = 10;
  CHECK_THROWS_WITH_AS(sd.generate(s, gen), doctest::Contains("must be a positive multiple of 4"), input_error);
  s.height = 0;
  s.steps = 0;
  CHECK_THROWS_WITH_AS(sd.generate(s, gen), doctest::Contains("steps must be in"), input_error);
  CHECK_THROWS_WITH_AS((void)model::StableDiffusion<float>::load(dir + "absent"),
                       doctest::Contains("no such directory"), input_error);
}

TEST_CASE("a single-file checkpoint with its pipeline folder's configs generates what the folder generates") {
  model::PipelineLoadOptions options;
  CHECK_THROWS_WITH_AS((void)model::StableDiffusion<double>::load(dir + "tiny_sd15.single.safetensors", options),
                       doctest::Contains("needs the pipeline folder"), input_error);
  options.config_folder = dir + "tiny_sd15";
  auto single = model::StableDiffusion<double>::load(dir + "tiny_sd15.single.safetensors", options);
  auto folder = model::StableDiffusion<double>::load(dir + "tiny_sd15");
  model::GenerationSettings s;
  s.prompts = {"a photo of a red dress"};
  s.steps = 3;
  s.guidance = 5.0;
  Generator g1{5, 0}, g2{5, 0};
  const auto a = single.generate(s, g1);
  const auto b = folder.generate(s, g2);
  CHECK(max_abs_diff<double>(a.view(), b.view()) == 0.0);
  CHECK(max_abs(a) > 0.0);
}

TEST_CASE("released components free their weights; the image is unchanged and a later use names the component") {
  for (const char* name : {"tiny_sd15", "tiny_sdxl"}) {
    CAPTURE(name);
    model::GenerationSettings s;
    s.prompts = {"a photo of a red dress"};
    s.steps = 2;
    s.guidance = 5.0;
    auto kept = model::StableDiffusion<double>::load(dir + name);
    Generator g1{3, 0};
    const auto want = kept.generate(s, g1);

    auto& pool = caching_allocator<cpu>::instance();
    auto sd = model::StableDiffusion<double>::load(dir + name);
    Generator g2{3, 0};
    const auto e = sd.encode_prompt(s.prompts, s.negative_prompts);
    const std::size_t before_text = pool.in_use_bytes();
    sd.release(model::PipelineComponent::text_encoders);
    CHECK(pool.in_use_bytes() < before_text);
    CHECK(sd.released(model::PipelineComponent::text_encoders));
    CHECK_FALSE(sd.released(model::PipelineComponent::unet));
    CHECK_THROWS_WITH_AS((void)sd.encode_prompt(s.prompts, s.negative_prompts),
                         doctest::Contains("encode_prompt: the pipeline's text encoders were released"), input_error);
    const auto latents = sd.denoise(sd.initial_latents(s, g2), e, s, g2);
    std::size_t unet_bytes = 0;
    sd.unet().visit_parameters(
        [&](std::string_view, auto& p) { unet_bytes += static_cast<std::size_t>(p.value.numel()) * sizeof(double); },
        {});
    REQUIRE(unet_bytes > 0);
    const std::size_t before_unet = pool.in_use_bytes();
    sd.release(model::PipelineComponent::unet);
    CHECK(before_unet - pool.in_use_bytes() >= unet_bytes);
    CHECK_THROWS_WITH_AS((void)sd.denoise(latents, e, s, g2),
                         doctest::Contains("denoise: the pipeline's UNet was released"), input_error);
    CHECK_THROWS_WITH_AS((void)sd.merge_lora(dir + "missing.safetensors", 1.0),
                         doctest::Contains("merge_lora: the pipeline's UNet"), input_error);
    const auto got = sd.decode(latents);
    CHECK(max_abs_diff<double>(got.view(), want.view()) == 0.0);
  }
}
