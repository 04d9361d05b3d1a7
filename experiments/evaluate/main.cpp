// SPDX-License-Identifier: MIT
// Experiment evaluate: the evaluation protocol of an SPO config on the base model and on tuned LoRA weights: the
// held-out prompts x fixed seeds (DDIM, eta and guidance of the base model), the rater's reward with its 95% interval,
// the held-out judge's class accuracy, the Frechet distance to real test images in the held-out judge's features and
// the paired win rate against the base model. Writes evaluation.json / evaluation.md to the output directory.
//   evaluate <spo_config.json> <output_dir> [name=lora.safetensors ...]
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "spo/experiment/command_line.hpp"
#include "spo/experiment/spo_experiment.hpp"

int main(int argc, char** argv) try {
  namespace fs = std::filesystem;
  using namespace spo;
  std::string config_path, out_dir;
  std::vector<std::string> lora_args;
  std::vector<experiment::NamedFile> loras;
  experiment::ArgumentParser args(
      "evaluate",
      "The evaluation protocol of an SPO config on the base model and on tuned LoRA weights: the held-out prompts x "
      "fixed seeds, the rater's reward with its 95% interval, the held-out judge's class accuracy, the Frechet "
      "distance to real test images and the paired win rate against the base model. Writes evaluation.json, "
      "evaluation.md and samples_<name>.png to <output_dir>.");
  args.positional("spo_config.json", "the config of an SPO experiment (base model, LoRA rank, rater, evaluation)",
                  config_path)
      .positional("output_dir", "the directory to write", out_dir)
      .positional("name=lora.safetensors",
                  "LoRA weights of a run (its lora.safetensors) to evaluate under the name; the names are distinct "
                  "and not \"base\"",
                  lora_args)
      .optional()
      .check([&] {
        for (const auto& a : lora_args) {
          auto f = experiment::parse_named_file(a);
          SPO_EXPECT(f.name != "base", "'" << a << "': the name \"base\" is the base model's");
          for (const auto& g : loras)
            SPO_EXPECT(g.name != f.name, "'" << a << "': the name \"" << f.name << "\" is given twice");
          loras.push_back(std::move(f));
        }
      });
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;

  // Every check and every load that can fail comes before the output directory and the base evaluation.
  const auto config = io::load_config<experiment::SpoConfig>(config_path);
  io::in_config_file(config_path, [&] {
    eval::validate(config.evaluation);
    train::validate(config.lora);
    preference::validate(config.rater.weights);
  });
  const auto base_config = experiment::load_base_config(config.base);
  for (const auto& l : loras) {
    const auto t = io::load_safetensors(l.path);
    SPO_EXPECT(t.metadata.contains("format") && t.metadata.at("format") == "spo.lora.v1",
               l.path.string() << ": not a LoRA file of spo (its metadata \"format\" is not \"spo.lora.v1\")");
  }
  auto base = experiment::load_base_model<experiment::BaseModelType>(config.base);
  auto load_policy = [&](const experiment::NamedFile& l) {
    auto policy = experiment::make_policy(base_config.unet, base_config.text, base.model, config.lora, config.seed);
    experiment::load_lora(policy, l.path);
    return policy;
  };
  for (const auto& l : loras) load_policy(l);  // the rank and the keys match the config's model
  auto evaluator = io::in_config_file(config_path, [&] { return experiment::make_evaluator(config, base_config); });

  const fs::path out = out_dir;
  fs::create_directories(out);
  const auto seeds = config.evaluation.seeds_per_prompt;
  auto [mb, images_base] = evaluator.run(base.model, seeds);
  nlohmann::json all{{"base", eval::to_json(mb)}};
  std::string md;
  for (const auto& l : loras) {
    auto policy = load_policy(l);
    auto [mt, images] = evaluator.run(policy, seeds);
    auto [table, j] = experiment::comparison_table(mb, mt, l.name);
    all[l.name] = j[l.name];
    all[l.name]["win_rate_vs_base"] = j["win_rate_vs_base"];
    md += table + "\n";
    io::write_image_grid(out / ("samples_" + l.name + ".png"), images, static_cast<int>(seeds), 2);
  }
  if (loras.empty()) {
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
