// SPDX-License-Identifier: MIT
// Experiment evaluate: the evaluation protocol of an SPO config on the base model and on tuned LoRA weights: the
// held-out prompts x fixed seeds (DDIM, eta and guidance of the base model), the rater's reward with its 95% interval,
// the held-out judge's class accuracy, the Frechet distance to real test images in the held-out judge's features and
// the paired win rate against the base model. Writes evaluation.json / evaluation.md to the output directory.
//   evaluate <spo_config.json> <output_dir> [name=lora.safetensors ...]
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "spo/experiment/spo_experiment.hpp"

int main(int argc, char** argv) try {
  namespace fs = std::filesystem;
  using namespace spo;
  if (argc < 3) {
    std::cerr << "usage: evaluate <spo_config.json> <output_dir> [name=lora.safetensors ...]\n";
    return 2;
  }
  const auto config = io::load_config<experiment::SpoConfig>(argv[1]);
  eval::validate(config.evaluation);
  auto base_config = io::load_config<train::PretrainConfig>(config.base.config);
  train::validate(base_config);
  const fs::path out = argv[2];
  fs::create_directories(out);
  auto base = config::load_base_model<experiment::BaseModelType>(config.base);
  auto evaluator = experiment::make_evaluator(config, base_config);
  const auto seeds = config.evaluation.seeds_per_prompt;
  auto [mb, images_base] = evaluator.run(base.model, seeds);
  nlohmann::json all{{"base", eval::to_json(mb)}};
  std::string md;
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    SPO_CHECK(eq != std::string::npos && eq > 0, "expected name=lora.safetensors, got '" << arg << "'");
    const std::string name = arg.substr(0, eq);
    auto policy = experiment::make_policy(base_config.unet, base_config.text, base.model, config.lora, config.seed);
    experiment::load_lora(policy, arg.substr(eq + 1));
    auto [mt, images] = evaluator.run(policy, seeds);
    auto [table, j] = experiment::comparison_table(mb, mt, name);
    all[name] = j[name];
    all[name]["win_rate_vs_base"] = j["win_rate_vs_base"];
    md += table + "\n";
    io::write_image_grid(out / ("samples_" + name + ".png"), images, static_cast<int>(seeds), 2);
  }
  if (argc == 3) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "| base | %.4f [%.4f, %.4f] | %.3f | %.3f |\n", mb.reward.mean, mb.reward.ci95_low,
                  mb.reward.ci95_high, mb.class_accuracy, mb.frechet);
    md = "| model | reward (95% CI) | held-out class acc. | Frechet dist. |\n|---|---:|---:|---:|\n" + std::string(buf);
  }
  io::write_file_atomic(out / "evaluation.json", all.dump(2) + "\n");
  io::write_file_atomic(out / "evaluation.md", md);
  io::write_image_grid(out / "samples_base.png", images_base, static_cast<int>(seeds), 2);
  std::printf("%s", md.c_str());
  return 0;
} catch (const std::exception& e) {
  std::cerr << "evaluate: error: " << e.what() << "\n";
  return 1;
}
