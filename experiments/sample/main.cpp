// SPDX-License-Identifier: MIT
// Experiment sample: loads model weights and writes a PNG grid for prompts, seed, steps, eta and guidance.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "spo/diffusion/beta_schedule.hpp"
#include "spo/io/config.hpp"
#include "spo/io/png.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/train/pretraining.hpp"

using Model = spo::model::FashionModel<float>;
using Scheduler = spo::diffusion::Ddim<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>;

namespace {
void usage() {
  std::cerr << "usage: sample <model_config.json> --weights FILE --out FILE.png [--prompt TEXT]... [--per-prompt N]\n"
               "              [--seed N] [--steps N] [--eta X] [--guidance X]\n"
               "  Prompts default to one per Fashion-MNIST class; sampling settings default to the config's.\n";
}
}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    usage();
    return 2;
  }
  const auto config = spo::io::load_config<spo::train::PretrainConfig>(argv[1]);
  std::string weights, out;
  std::vector<std::string> prompts;
  std::uint64_t seed = 0;
  int per_prompt = 8;
  auto sampling = config.sampling;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw spo::error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--weights") weights = value();
    else if (a == "--out") out = value();
    else if (a == "--prompt") prompts.push_back(value());
    else if (a == "--per-prompt") per_prompt = std::stoi(value());
    else if (a == "--seed") seed = std::stoull(value());
    else if (a == "--steps") sampling.num_inference_steps = std::stoi(value());
    else if (a == "--eta") sampling.eta = std::stod(value());
    else if (a == "--guidance") sampling.guidance_scale = std::stod(value());
    else throw spo::error("unknown argument '" + a + "'");
  }
  if (weights.empty() || out.empty()) {
    usage();
    return 2;
  }
  SPO_CHECK(per_prompt >= 1, "--per-prompt must be positive");
  spo::config::validate(sampling, config.schedule.num_train_timesteps);
  if (prompts.empty())
    for (int c = 0; c < 10; ++c) prompts.push_back(spo::text::fashion_prompt(c, 0));
  spo::Generator init{0, 0};
  auto model = spo::model::make_fashion_model<Model>(config.unet, config.text, init);
  spo::io::load_state_dict(model, weights);
  for (const auto& p : prompts) model.tokenizer().encode(p);  // unknown words fail before any work
  auto ddim = spo::config::make_scheduler<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>(config.schedule);
  ddim.set_timesteps(sampling.num_inference_steps);
  std::vector<std::string> all;
  for (const auto& p : prompts)
    for (int j = 0; j < per_prompt; ++j) all.push_back(p);
  spo::Generator gen{seed, 0};
  auto x = spo::randn<float>(spo::Shape{static_cast<std::int64_t>(all.size()), 1, config.resolution, config.resolution}, gen);
  auto images = spo::model::sample_ddim(model, ddim, std::move(x), all, sampling.guidance_scale, sampling.eta, gen);
  spo::io::write_image_grid(out, images, per_prompt, 2);
  std::printf("sample: wrote %s (%zu prompts x %d)\n", out.c_str(), prompts.size(), per_prompt);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "sample: error: " << e.what() << "\n";
  return 1;
}
