// SPDX-License-Identifier: MIT
// Experiment pretrain_base: trains the base text-to-image model on Fashion-MNIST (see
// experiments/pretrain_base/README.md).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "spo/diffusion/beta_schedule.hpp"
#include "spo/diffusion/prediction.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/io/config.hpp"
#include "spo/io/resume.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/train/pretraining.hpp"

using Model = spo::model::FashionModel<float>;
using Experiment = spo::train::Pretraining<Model, spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>;

namespace fs = std::filesystem;

int main(int argc, char** argv) try {
  const auto cli = spo::experiment::parse_command_line(argc, argv, "steps");
  if (!cli) return cli.exit_code;
  auto config = spo::io::load_config<spo::train::PretrainConfig>(cli->config);
  if (cli->length) config.train.steps = *cli->length;
  if (cli->seed) config.seed = *cli->seed;
  if (cli->output) config.output_dir = *cli->output;
  spo::io::in_config_file(cli->config, [&] {
    spo::train::validate(config);
    SPO_CONFIG_CHECK(!config.output_dir.empty(), "output_dir", "must not be empty");
  });

  // Every load that can fail comes before the output directory.
  const fs::path out = config.output_dir;
  const auto data = spo::data::load_fashion_mnist(spo::data::Split::train, config.data_dir);
  spo::Generator init{config.seed ^ 0x5eedull, 0};
  auto model = spo::model::make_fashion_model<Model>(config.unet, config.text, init);
  std::fprintf(stderr, "pretrain_base: %lld parameters, %lld training images\n",
               static_cast<long long>(spo::nn::parameter_count(model)), static_cast<long long>(data.count));
  Experiment experiment(model, config, spo::io::to_json(config));
  const fs::path ckpt = out / "checkpoint.safetensors";
  if (cli->resume && fs::exists(ckpt)) {
    spo::io::ResumeRules rules;  // the recorded config but for output_dir and, when allowed, train.steps
    rules.length_key = "train.steps";
    rules.length_flag = "--allow-steps-change";
    rules.allow_length_change = cli->allow_length_change;
    spo::io::check_resume_config(ckpt, spo::io::to_json(config), rules);
    experiment.resume(ckpt);
    std::fprintf(stderr, "pretrain_base: resumed from step %lld\n", static_cast<long long>(experiment.step()));
  }
  fs::create_directories(out);
  spo::io::write_run_record(out, "pretrain_base", spo::io::to_json(config), config.seed, SPO_SOURCE_DIR,
                            experiment.step());
  experiment.run(data, out);

  // The base model: EMA weights, model parameters only.
  experiment.ema().copy_to(model);
  spo::io::save_state_dict(out / "base.safetensors", model,
                           {.dtype = spo::io::Dtype::f16, .trainable_only = false, .prefix = {}});
  spo::io::write_image_grid(out / "samples_final.png", experiment.sample_grid(8, config.seed + 1), 8, 2);
  std::fprintf(stderr, "pretrain_base: wrote %s\n", (out / "base.safetensors").c_str());
  return 0;
} catch (const std::exception& e) {
  std::cerr << "pretrain_base: error: " << e.what() << "\n";
  return 1;
}
