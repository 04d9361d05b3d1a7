// SPDX-License-Identifier: MIT
// Experiment train_judge: trains a Fashion-MNIST judge classifier and reports its real test-set accuracy.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "spo/io/config.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/judge/training.hpp"
#include "spo/train/run_record.hpp"

using Experiment = spo::judge::Classifier<float>;

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::cerr << "usage: train_judge <config.json>\n";
    return 2;
  }
  const auto config = spo::io::load_config<spo::judge::JudgeConfig>(argv[1]);
  spo::judge::validate(config);
  const std::filesystem::path out = config.output_dir;
  std::filesystem::create_directories(out);
  spo::train::write_run_record(out, "train_judge", spo::io::to_json(config), config.seed, SPO_SOURCE_DIR, 0);
  const auto train = spo::data::load_fashion_mnist(spo::data::Split::train, config.data_dir);
  const auto test = spo::data::load_fashion_mnist(spo::data::Split::test, config.data_dir);
  spo::Generator gen{config.seed, 0};
  Experiment net = spo::judge::make_classifier<float>(config.width, gen);
  const double acc = spo::judge::train_classifier(net, config, train, test);
  spo::io::save_state_dict(out / "judge.safetensors", net);
  const nlohmann::json result{{"test_accuracy", acc}, {"test_images", test.count}, {"width", config.width},
                              {"data_half", config.data_half}};
  spo::io::write_file_atomic(out / "result.json", result.dump(2) + "\n");
  std::printf("train_judge: real test-set accuracy %.4f (%lld images)\n", acc, static_cast<long long>(test.count));
  return 0;
} catch (const std::exception& e) {
  std::cerr << "train_judge: error: " << e.what() << "\n";
  return 1;
}
