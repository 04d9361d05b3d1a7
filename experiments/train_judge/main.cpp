// SPDX-License-Identifier: MIT
// Experiment train_judge: trains a Fashion-MNIST judge classifier and reports its real test-set accuracy.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "spo/experiment/command_line.hpp"
#include "spo/io/config.hpp"
#include "spo/io/run_record.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/judge/training.hpp"

using Experiment = spo::judge::Classifier<float>;

int main(int argc, char** argv) try {
  std::string config_path;
  spo::experiment::ArgumentParser args(
      "train_judge",
      "Trains a Fashion-MNIST judge classifier and reports its real test-set accuracy. Writes judge.safetensors, "
      "result.json and run.json to the config's output_dir.");
  args.positional("config.json", "the judge's config (e.g. configs/judge_train.json)", config_path);
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;

  // Every check and every load that can fail comes before the output directory.
  const auto config = spo::io::load_config<spo::judge::JudgeConfig>(config_path);
  spo::io::in_config_file(config_path, [&] {
    spo::judge::validate(config);
    SPO_CONFIG_CHECK(!config.output_dir.empty(), "output_dir", "must not be empty");
  });
  const auto train = spo::data::load_fashion_mnist(spo::data::Split::train, config.data_dir);
  const auto test = spo::data::load_fashion_mnist(spo::data::Split::test, config.data_dir);
  const std::filesystem::path out = config.output_dir;
  std::filesystem::create_directories(out);
  spo::io::write_run_record(out, "train_judge", spo::io::to_json(config), config.seed, SPO_SOURCE_DIR, 0);
  spo::Generator gen{config.seed, 0};
  Experiment net = spo::judge::make_classifier<float>(config.width, gen);
  const double acc = spo::judge::train_classifier(net, config, train, test);
  spo::io::save_state_dict(out / "judge.safetensors", net);
  const nlohmann::json result{
      {"test_accuracy", acc}, {"test_images", test.count}, {"width", config.width}, {"data_half", config.data_half}};
  spo::io::write_file_atomic(out / "result.json", result.dump(2) + "\n");
  std::printf("train_judge: real test-set accuracy %.4f (%lld images)\n", acc, static_cast<long long>(test.count));
  return 0;
} catch (const std::exception& e) {
  std::cerr << "train_judge: error: " << e.what() << "\n";
  return 1;
}
