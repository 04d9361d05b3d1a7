// SPDX-License-Identifier: MIT
// Experiment generate: text to image with a Stable Diffusion 1.x/2.x or SDXL checkpoint (a diffusers pipeline
// folder), optionally with a LoRA (an SPO LoRA, for instance) merged at a scale.
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "spo/experiment/command_line.hpp"
#include "spo/io/json.hpp"
#include "spo/io/png.hpp"
#include "spo/io/progress.hpp"
#include "spo/model/stable_diffusion.hpp"
#ifndef SPO_GENERATE_CUDA  // 1 in builds with CUDA (experiments/CMakeLists.txt)
#define SPO_GENERATE_CUDA 0
#endif
#if SPO_GENERATE_CUDA
#include "spo/cuda.hpp"
#endif

namespace {

namespace fs = std::filesystem;

/// The image [3, H, W] in [0, 1] of row `i` as 8-bit RGB rows.
std::vector<std::uint8_t> rgb_rows(const spo::Tensor<float>& images, std::int64_t i) {
  const std::int64_t h = images.size(2), w = images.size(3);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(h * w * 3));
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t p = 0; p < h * w; ++p) {
      const float v = images[((i * 3 + c) * h * w) + p];
      px[static_cast<std::size_t>(p * 3 + c)] = static_cast<std::uint8_t>(std::lround(std::clamp(v, 0.f, 1.f) * 255));
    }
  return px;
}

fs::path numbered(const fs::path& out, std::int64_t i, std::int64_t n) {
  if (n == 1) return out;
  return out.parent_path() / (out.stem().string() + "-" + std::to_string(i) + out.extension().string());
}

/// The command line of generate.
struct Options {
  std::string model, out, prompt, scheduler, device = "cpu", conv_algorithm = "winograd", dtype = "float32";
  std::optional<std::string> negative, lora, variant, config;
  double lora_scale = 1.0;
  std::optional<int> steps;
  std::optional<double> guidance;
  std::uint64_t seed = 0;
  std::optional<std::int64_t> width, height;
  int batch = 1;
  bool paper = false;
};

/// Loads the pipeline on device D with its networks in S, generates one batch and writes the PNGs.
template <spo::Device D, spo::StorageScalar S>
int generate(const Options& o);

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  auto& [model, out, prompt, scheduler, device, conv_algorithm, dtype, negative, lora, variant, config, lora_scale,
         steps, guidance, seed, width, height, batch, paper] = o;
  spo::experiment::ArgumentParser args(
      "generate",
      "Text to image with a Stable Diffusion 1.x/2.x or SDXL checkpoint: a diffusers pipeline folder "
      "(model_index.json, scheduler/, tokenizer(s), text encoder(s), unet/, vae/ with .safetensors weights) or a "
      "single-file checkpoint with the folder of its configs. Steps, guidance, scheduler "
      "and size default to the checkpoint's pipeline (diffusers' defaults: 50 steps, guidance 7.5 for SD and 5 for "
      "SDXL, the scheduler in scheduler/scheduler_config.json); --paper selects the SPO paper's evaluation setting "
      "(DDIM, 20 steps, guidance 5). The prompt, seed and settings are stored in the PNG's text chunks.");
  args.option("--model", "DIR|FILE",
              "the pipeline folder, or a single-file checkpoint (one original-layout .safetensors, e.g. "
              "v1-5-pruned-emaonly.safetensors or sd_xl_base_1.0.safetensors) with --config",
              model)
      .required()
      .option("--config", "DIR",
              "for a single-file --model: the model's pipeline folder, which gives the configs and tokenizers", config)
      .option("--prompt", "TEXT", "the prompt", prompt)
      .required()
      .option("--out", "FILE.png", "the image to write (FILE-<i>.png for --batch > 1)", out)
      .required()
      .option("--negative-prompt", "TEXT",
              "the negative prompt; default none (SD encodes \"\", SDXL uses zero embeddings)", negative)
      .option("--lora", "FILE", "a LoRA .safetensors (diffusers, PEFT or kohya/webui layout) merged into the UNet",
              lora)
      .option("--lora-scale", "X", "the LoRA's scale", lora_scale, -10.0, 10.0)
      .option("--scheduler", "NAME",
              "override the checkpoint's scheduler: " + std::string(spo::diffusion::scheduler_override_names),
              scheduler)
      .option("--steps", "N", "sampling steps", steps, 1, 1000)
      .option("--guidance", "X", "classifier-free guidance scale", guidance, 0.0, 100.0)
      .flag("--paper", "the SPO paper's evaluation setting: DDIM, 20 steps, guidance 5 (explicit options win)", paper)
      .option("--seed", "N", "the seed of the initial latents and of stochastic schedulers", seed)
      .option("--width", "PX", "image width; default the checkpoint's", width, 8, 4096)
      .option("--height", "PX", "image height; default the checkpoint's", height, 8, 4096)
      .option("--batch", "N", "images to generate from consecutive draws of the seed's stream", batch, 1, 64)
      .option("--variant", "NAME", "weights variant to load, e.g. fp16; default plain weights, else the only variant",
              variant)
      .option("--device", "cpu|cuda", "where to run", device)
      .option("--dtype", "float32|float16|bfloat16",
              "the networks' weights and activations (diffusers' torch_dtype). 16 bits need --device cuda; the "
              "latents, the scheduler and guidance stay float32, and SDXL's VAE decodes in float32 under float16 "
              "(its force_upcast)",
              dtype)
      .option("--conv-algorithm", "winograd|direct",
              "CPU 3x3 convolutions: oneDNN's Winograd kernels where it has them (faster; a relative difference of "
              "order 1e-6 from direct) or its direct kernels (the algorithm PyTorch uses)",
              conv_algorithm)
      .check([&] {
        SPO_EXPECT(device == "cpu" || device == "cuda", "--device: expected cpu or cuda, got '" << device << "'");
        SPO_EXPECT(conv_algorithm == "winograd" || conv_algorithm == "direct",
                   "--conv-algorithm: expected winograd or direct, got '" << conv_algorithm << "'");
        SPO_EXPECT(dtype == "float32" || dtype == "float16" || dtype == "bfloat16",
                   "--dtype: expected float32, float16 or bfloat16, got '" << dtype << "'");
        SPO_EXPECT(
            dtype == "float32" || device == "cuda",
            "--dtype " << dtype << ": 16-bit networks run on --device cuda only (the CPU has no 16-bit kernels)");
        SPO_EXPECT(device == "cpu" || SPO_GENERATE_CUDA,
                   "--device cuda: this generate was built without CUDA (configure with -DSPO_WITH_CUDA=ON)");
        SPO_EXPECT(fs::path(out).parent_path().empty() || fs::is_directory(fs::path(out).parent_path()),
                   "--out: directory not found: " << fs::path(out).parent_path().string());
        SPO_EXPECT(!lora || fs::is_regular_file(*lora), "--lora: file not found: " << *lora);
      });
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;
  if (paper && scheduler.empty()) scheduler = "ddim";
#if SPO_GENERATE_CUDA
  if (device == "cuda") {
    if (dtype == "float16") return generate<spo::cuda, spo::half>(o);
    if (dtype == "bfloat16") return generate<spo::cuda, spo::bfloat16>(o);
    return generate<spo::cuda, float>(o);
  }
#endif
  return generate<spo::cpu, float>(o);
} catch (const std::exception& e) {
  std::cerr << "generate: error: " << e.what() << "\n";
  return 1;
}

namespace {

template <spo::Device D, spo::StorageScalar S>
int generate(const Options& o) {
  const auto& [model, out, prompt, scheduler, device, conv_algorithm, dtype, negative, lora, variant, config,
               lora_scale, steps, guidance, seed, width, height, batch, paper] = o;
  using Pipeline = spo::model::StableDiffusion<float, D, S>;
  const spo::cpu_kernels::inference_conv2d_algorithm_guard conv_guard(conv_algorithm == "winograd"
                                                                          ? spo::cpu_kernels::Conv2dAlgorithm::winograd
                                                                          : spo::cpu_kernels::Conv2dAlgorithm::direct);
  spo::model::PipelineLoadOptions load;
  load.variant = variant;
  load.scheduler = scheduler;
  if (config) load.config_folder = *config;
  std::cerr << "loading " << model << " on " << D::name << " in " << dtype << "\n";
  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  const auto t_load = clock::now();
  auto sd = Pipeline::load(model, load);
  const bool xl = sd.kind() == spo::model::PipelineKind::sdxl;
  if (lora) {
    const auto merged = sd.merge_lora(*lora, lora_scale);
    std::cerr << "merged " << merged << " LoRA adapters from " << *lora << " at scale " << lora_scale << "\n";
  }

  spo::model::GenerationSettings s;
  s.prompts.assign(static_cast<std::size_t>(batch), prompt);
  if (negative) s.negative_prompts = std::vector<std::string>(static_cast<std::size_t>(batch), *negative);
  s.steps = steps.value_or(paper ? 20 : 50);
  s.guidance = guidance.value_or(paper ? 5.0 : (xl ? 5.0 : 7.5));
  s.height = height.value_or(0);
  s.width = width.value_or(0);
  sd.validate(s);
  const auto [h, w] = sd.image_size(s);
  s.height = h;
  s.width = w;

  spo::Generator gen{seed, 0};
  spo::io::ProgressBar bar("generate", s.steps);
  const auto t_encode = clock::now();
  const auto embeddings = sd.encode_prompt(s.prompts, s.negative_prompts);
  // One batch per run: each component's weights go once the run is past it, so the UNet's do not sit beside the
  // VAE decode's activations (the peak at 512x512 and above).
  sd.release(spo::model::PipelineComponent::text_encoders);
  const auto t_denoise = clock::now();
  const auto latents =
      sd.denoise(sd.initial_latents(s, gen), embeddings, s, gen, [&](int step, int) { bar.update(step); });
  sd.release(spo::model::PipelineComponent::unet);
  const auto t_decode = clock::now();
  const auto images = sd.decode(latents);
  const auto t_end = clock::now();
  std::fprintf(stderr, "timing: load %.2f s, encode %.2f s, denoise %.2f s (%.3f s per step), decode %.2f s\n",
               seconds(t_load, t_encode), seconds(t_encode, t_denoise), seconds(t_denoise, t_decode),
               seconds(t_denoise, t_decode) / s.steps, seconds(t_decode, t_end));
  if constexpr (!std::same_as<D, spo::cpu>)
    std::fprintf(stderr, "memory: device peak %.2f GB of tensors in use\n",
                 static_cast<double>(spo::caching_allocator<D>::instance().peak_in_use_bytes()) / 1e9);

  const std::string sched_name =
      std::visit([](const auto& x) { return std::string(std::decay_t<decltype(x)>::class_name); }, sd.scheduler());
  spo::io::json settings = {{"model", model},
                            {"prompt", prompt},
                            {"negative_prompt", negative ? *negative : ""},
                            {"seed", seed},
                            {"steps", s.steps},
                            {"guidance", s.guidance},
                            {"scheduler", sched_name},
                            {"width", w},
                            {"height", h},
                            {"batch", batch},
                            {"device", device},
                            {"dtype", dtype}};
  if constexpr (std::same_as<D, spo::cpu>) settings["conv_algorithm"] = conv_algorithm;
  if (lora) settings["lora"] = {{"file", *lora}, {"scale", lora_scale}};
  std::ostringstream parameters;  // the "parameters" chunk other image tools read
  parameters << prompt << "\n";
  if (negative) parameters << "Negative prompt: " << *negative << "\n";
  parameters << "Steps: " << s.steps << ", Sampler: " << sched_name << ", CFG scale: " << s.guidance
             << ", Seed: " << seed << ", Size: " << w << "x" << h << ", Model: " << fs::path(model).filename().string();
  for (std::int64_t i = 0; i < images.size(0); ++i) {
    settings["index"] = i;
    const spo::io::PngText text{{"parameters", parameters.str()}, {"spo", settings.dump()}};
    const auto path = numbered(out, i, images.size(0));
    spo::io::write_png(path, rgb_rows(images, i), static_cast<int>(w), static_cast<int>(h), 3, text);
    std::cout << path.string() << "\n";
  }
  return 0;
}

}  // namespace
