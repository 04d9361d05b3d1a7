// SPDX-License-Identifier: MIT
// Experiment sample: loads model weights and writes a PNG grid for prompts, seed, steps, eta and guidance.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "spo/diffusion/beta_schedule.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/io/config.hpp"
#include "spo/io/png.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/train/pretraining.hpp"

using Model = spo::model::FashionModel<float>;
using Scheduler = spo::diffusion::Ddim<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>;

namespace {
constexpr int max_images = 1024;  ///< one batch: about 13 MB of memory per 32x32 image while sampling
}  // namespace

int main(int argc, char** argv) try {
  namespace fs = std::filesystem;
  std::string config_path, weights, out;
  std::vector<std::string> prompts;
  int per_prompt = 8;
  std::uint64_t seed = 0;
  std::optional<int> steps;
  std::optional<double> eta, guidance;
  spo::experiment::ArgumentParser args(
      "sample",
      "Loads model weights and writes a PNG grid of DDIM samples with classifier-free guidance: one row per prompt, "
      "--per-prompt images each, at most " +
          std::to_string(max_images) +
          " images in all. Prompts default to one per Fashion-MNIST class; sampling settings default to the "
          "config's.");
  args.positional("model_config.json", "the model's config (e.g. configs/pretrain_base.json)", config_path)
      .option("--weights", "FILE", "the model weights, a .safetensors file", weights)
      .required()
      .option("--out", "FILE.png", "the PNG grid to write", out)
      .required()
      .option("--prompt", "TEXT", "a prompt: one row of the grid", prompts)
      .option("--per-prompt", "N", "images per prompt", per_prompt, 1, max_images)
      .option("--seed", "N", "the seed of the initial noise and of the DDIM noise", seed)
      .option("--steps", "N", "DDIM steps, at most the schedule's num_train_timesteps; default: the config's", steps, 1,
              std::numeric_limits<int>::max())
      .option("--eta", "X", "the DDIM eta; default: the config's", eta, 0.0, 1.0)
      .option("--guidance", "X", "the classifier-free guidance scale; default: the config's", guidance, 0.0, 100.0)
      .check([&] {
        const std::int64_t rows = prompts.empty() ? 10 : static_cast<std::int64_t>(prompts.size());
        SPO_EXPECT(rows * per_prompt <= max_images, "--per-prompt " << per_prompt << " x " << rows << " prompts is "
                                                                    << rows * per_prompt << " images; at most "
                                                                    << max_images << " in all");
      });
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;

  const auto config = spo::io::load_config<spo::train::PretrainConfig>(config_path);
  spo::io::in_config_file(config_path, [&] { spo::train::validate(config); });
  const int timesteps = config.schedule.num_train_timesteps;
  SPO_EXPECT(!steps || *steps <= timesteps, "--steps: expected an integer in [1, "
                                                << timesteps << "] (the schedule's num_train_timesteps), got '"
                                                << *steps << "'");
  auto sampling = config.sampling;
  if (steps) sampling.num_inference_steps = *steps;
  if (eta) sampling.eta = *eta;
  if (guidance) sampling.guidance_scale = *guidance;
  const fs::path out_path = out;
  SPO_EXPECT(out_path.parent_path().empty() || fs::is_directory(out_path.parent_path()),
             "--out: directory not found: " << out_path.parent_path().string());
  SPO_EXPECT(!fs::is_directory(out_path), "--out: " << out << " is a directory");
  if (prompts.empty())
    for (int c = 0; c < 10; ++c) prompts.push_back(spo::text::fashion_prompt(c, 0));
  spo::Generator init{0, 0};
  auto model = spo::model::make_fashion_model<Model>(config.unet, config.text, init);
  spo::io::load_state_dict(model, fs::path(weights));
  for (const auto& p : prompts) model.tokenizer().encode(p);  // unknown words fail before any work
  auto ddim =
      spo::diffusion::make_scheduler<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>(config.schedule);
  ddim.set_timesteps(sampling.num_inference_steps);
  std::vector<std::string> all;
  for (const auto& p : prompts)
    for (int j = 0; j < per_prompt; ++j) all.push_back(p);
  spo::Generator gen{seed, 0};
  auto x = spo::randn<float>(spo::Shape{static_cast<std::int64_t>(all.size()), 1, config.resolution, config.resolution},
                             gen);
  auto images = spo::model::sample_ddim(model, ddim, std::move(x), all, sampling.guidance_scale, sampling.eta, gen);
  spo::io::write_image_grid(out_path, images, per_prompt, 2);
  std::printf("sample: wrote %s (%zu prompts x %d)\n", out.c_str(), prompts.size(), per_prompt);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "sample: error: " << e.what() << "\n";
  return 1;
}
