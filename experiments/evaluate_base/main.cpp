// SPDX-License-Identifier: MIT
// Experiment evaluate_base: class accuracy of generated samples, as judged by a Fashion-MNIST classifier.
// For every class prompt (template 0) it samples N images with fixed seeds (DDIM, eta and guidance from the model
// config), classifies them with the judge and writes per-class and overall accuracy as JSON and Markdown.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/io/config.hpp"
#include "spo/io/png.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/judge/training.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/train/pretraining.hpp"

using Model = spo::model::FashionModel<float>;
using Judge = spo::judge::Classifier<float>;

namespace {
constexpr int max_per_class = 1024;  ///< one batch: about 13 MB of memory per 32x32 image while sampling
}  // namespace

int main(int argc, char** argv) try {
  namespace fs = std::filesystem;
  std::string config_path, weights, judge_config_path, judge_weights, out_dir;
  int per_class = 0;
  spo::experiment::ArgumentParser args(
      "evaluate_base",
      "Class accuracy of generated samples, as judged by a Fashion-MNIST classifier: for every class prompt "
      "(template 0) samples <samples_per_class> images with fixed seeds (DDIM, eta and guidance from the model "
      "config), classifies them with the judge and writes class_accuracy.json, class_accuracy.md and "
      "samples_by_class.png to <output_dir>.");
  args.positional("model_config.json", "the model's config (e.g. configs/pretrain_base.json)", config_path)
      .positional("model.safetensors", "the model weights", weights)
      .positional("judge_config.json", "the judge's config (e.g. configs/judge_train.json)", judge_config_path)
      .positional("judge.safetensors", "the judge's weights", judge_weights)
      .positional("samples_per_class", "images sampled per class, in one batch", per_class, 1, max_per_class)
      .positional("output_dir", "the directory to write", out_dir);
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;

  const auto config = spo::io::load_config<spo::train::PretrainConfig>(config_path);
  spo::io::in_config_file(config_path, [&] { spo::train::validate(config); });
  const auto judge_config = spo::io::load_config<spo::judge::JudgeConfig>(judge_config_path);
  spo::io::in_config_file(judge_config_path, [&] { spo::judge::validate(judge_config); });
  SPO_EXPECT(judge_config.resolution == config.resolution,
             judge_config_path << ": resolution: the judge sees " << judge_config.resolution << "x"
                               << judge_config.resolution << " images, but the model of " << config_path << " samples "
                               << config.resolution << "x" << config.resolution);
  spo::Generator init{0, 0};
  auto model = spo::model::make_fashion_model<Model>(config.unet, config.text, init);
  spo::io::load_state_dict(model, fs::path(weights));
  Judge judge = spo::judge::make_classifier<float>(judge_config.width, init);
  spo::io::load_state_dict(judge, fs::path(judge_weights));
  auto ddim =
      spo::diffusion::make_scheduler<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>(config.schedule);
  ddim.set_timesteps(config.sampling.num_inference_steps);
  const fs::path out = out_dir;
  fs::create_directories(out);

  std::vector<int> correct(10, 0);
  const std::int64_t show = std::min(per_class, 8);
  auto grid = spo::Tensor<float>::uninitialized(spo::Shape{10 * show, 1, config.resolution, config.resolution});
  for (int c = 0; c < 10; ++c) {
    std::vector<std::string> prompts(static_cast<std::size_t>(per_class), spo::text::fashion_prompt(c, 0));
    spo::Generator gen{1000 + static_cast<std::uint64_t>(c), 0};  // fixed seeds per class
    auto x = spo::randn<float>(spo::Shape{per_class, 1, config.resolution, config.resolution}, gen);
    auto images = spo::model::sample_ddim(model, ddim, std::move(x), prompts, config.sampling.guidance_scale,
                                          config.sampling.eta, gen);
    const auto pred = spo::judge::predict(judge, images);
    for (auto p : pred) correct[static_cast<std::size_t>(c)] += p == c;
    const std::int64_t row = show * config.resolution * config.resolution;  // the first `show` samples
    std::copy_n(images.data(), row, grid.data() + c * row);
    std::fprintf(stderr, "evaluate_base: %-12s %3d/%d\n", std::string(spo::data::fashion_mnist_classes[c]).c_str(),
                 correct[static_cast<std::size_t>(c)], per_class);
  }
  int total = 0;
  nlohmann::json per;
  std::string md = "| class | prompt | judged correct |\n|---|---|---:|\n";
  for (int c = 0; c < 10; ++c) {
    total += correct[static_cast<std::size_t>(c)];
    per[std::string(spo::data::fashion_mnist_classes[c])] =
        static_cast<double>(correct[static_cast<std::size_t>(c)]) / per_class;
    md += "| " + std::string(spo::data::fashion_mnist_classes[c]) + " | " + spo::text::fashion_prompt(c, 0) + " | " +
          std::to_string(correct[static_cast<std::size_t>(c)]) + "/" + std::to_string(per_class) + " |\n";
  }
  const double acc = static_cast<double>(total) / (10.0 * per_class);
  md += "| **all** | | **" + std::to_string(total) + "/" + std::to_string(10 * per_class) + "** |\n";
  const nlohmann::json result{
      {"class_accuracy", acc},          {"per_class", per},
      {"samples_per_class", per_class}, {"num_inference_steps", config.sampling.num_inference_steps},
      {"eta", config.sampling.eta},     {"guidance_scale", config.sampling.guidance_scale}};
  spo::io::write_file_atomic(out / "class_accuracy.json", result.dump(2) + "\n");
  spo::io::write_file_atomic(out / "class_accuracy.md", md);
  spo::io::write_image_grid(out / "samples_by_class.png", grid, static_cast<int>(show), 2);
  std::printf("%s\nclass accuracy of generated samples: %.4f\n", md.c_str(), acc);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "evaluate_base: error: " << e.what() << "\n";
  return 1;
}
