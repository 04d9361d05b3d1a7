// SPDX-License-Identifier: MIT
/// @brief The baseline experiments of the SPO paper (Diffusion-DPO, D3PO, DDPO): their configs and one driver that
/// writes the same run outputs as the SPO experiment (results.json / results.md, progress.jsonl, metrics.jsonl).
#pragma once

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>

#include <boost/hana/define_struct.hpp>

#include "spo/experiment/spo_experiment.hpp"
#include "spo/train/d3po_training.hpp"
#include "spo/train/ddpo_training.hpp"
#include "spo/train/diffusion_dpo_training.hpp"

namespace spo::experiment {

/// Diffusion-DPO on the offline preference pairs (`pairs`: a file written by make_pairs). Every key is required but
/// budget.
struct DiffusionDpoConfig {
  BOOST_HANA_DEFINE_STRUCT(DiffusionDpoConfig, (std::uint64_t, seed), (std::string, data_dir),
                           (std::string, output_dir), (io::ModelFiles, base), (preference::RaterSection, rater),
                           (train::LoraSection, lora), (std::string, pairs), (loss::DiffusionDpoOptions, loss),
                           (train::DiffusionDpoTrainSection, train), (eval::EvalSection, evaluation),
                           (std::optional<train::BudgetSection>, budget));
};

/// D3PO with the rater's preference of the final images. Every key is required but budget.
struct D3poConfig {
  BOOST_HANA_DEFINE_STRUCT(D3poConfig, (std::uint64_t, seed), (std::string, data_dir), (std::string, output_dir),
                           (io::ModelFiles, base), (preference::RaterSection, rater), (train::LoraSection, lora),
                           (train::TrajectorySection, sampling), (loss::D3poLossOptions, loss),
                           (train::D3poTrainSection, train), (eval::EvalSection, evaluation),
                           (std::optional<train::BudgetSection>, budget));
};

/// DDPO_IS with the rater's reward of the final images. Every key is required but budget.
struct DdpoConfig {
  BOOST_HANA_DEFINE_STRUCT(DdpoConfig, (std::uint64_t, seed), (std::string, data_dir), (std::string, output_dir),
                           (io::ModelFiles, base), (preference::RaterSection, rater), (train::LoraSection, lora),
                           (train::TrajectorySection, sampling), (loss::DdpoLossOptions, loss),
                           (loss::StatTrackerOptions, stat_tracker), (train::DdpoTrainSection, train),
                           (eval::EvalSection, evaluation), (std::optional<train::BudgetSection>, budget));
};

inline train::PretrainConfig validate(const DiffusionDpoConfig& c) {
  auto base = validate_common(c);
  loss::validate(c.loss);
  train::validate(c.train);
  validate_input_file("pairs", c.pairs);
  return base;
}

inline train::PretrainConfig validate(const D3poConfig& c) {
  auto base = validate_common(c);
  train::validate(c.sampling);
  loss::validate(c.loss);
  train::validate(c.train);
  return base;
}

inline train::PretrainConfig validate(const DdpoConfig& c) {
  auto base = validate_common(c);
  train::validate(c.sampling);
  loss::validate(c.loss);
  loss::validate(c.stat_tracker);
  train::validate(c.train);
  return base;
}

/// The images of a trained model are 1-channel (Fashion-MNIST).
inline constexpr std::int64_t image_channels = 1;

/*!
  REQUIRES
    - Config: one of the baseline configs above; make_trainer(config, base_config, policy, base_model, evaluator)
      returns a trainer with round(), resume(path), run(out, on_round(round, wall_s))
  ENSURES
    - runs the baseline `method` from the config on the command line (usage: <binary> <config.json> [--resume]
      [--rounds=N] [--seed=N] [--output=DIR]); every config error is reported before any work starts
    - writes to output_dir what train_and_report writes, with `method` as the tuned model's key and label:
      lora.safetensors, results.json / results.md (base vs tuned on the same prompts and seeds), progress.jsonl and
      reward_vs_time.png, samples_base.png / samples_<method>.png, metrics.jsonl, checkpoint.safetensors, run.json
!*/
template <class Config, class MakeTrainer>
int run_baseline_experiment(int argc, char** argv, const char* source_dir, const std::string& method,
                            MakeTrainer&& make_trainer) {
  return run_guarded(argv[0], [&](dist::AnyCommunicator& comm) {
    const auto cli = parse_command_line(argc, argv, "rounds");
    if (!cli) return cli.exit_code;
    comm = make_run_communicator(*cli, false);
    const auto config = load_run_config<Config>(*cli);
    const auto base_config = io::in_config_file(cli->config, [&] { return validate(config); });
    check_resume(*cli, config.output_dir, io::to_json(config), "train.rounds", "rounds");

    auto base = load_base_model<BaseModelType>(config.base);
    auto policy = make_policy(base_config.unet, base_config.text, base.model, config.lora, config.seed);
    auto evaluator = io::in_config_file(cli->config, [&] { return make_evaluator(config, base_config); });
    if (comm.is_root())
      std::fprintf(stderr, "%s: %s; %lld LoRA parameters\n", argv[0], method.c_str(),
                   static_cast<long long>(nn::parameter_count(policy) - nn::parameter_count(base.model)));
    auto training = io::in_config_file(
        cli->config, [&] { return make_trainer(config, base_config, policy, base.model, evaluator); });
    std::vector<std::pair<std::string, std::string>> inputs;
    if constexpr (requires { config.pairs; }) inputs.emplace_back("pairs", config.pairs);
    const auto compute = io::in_config_file(
        cli->config, [&] { return make_compute_setup(config, base.model, base_config.resolution, inputs); });
    const auto run = start_run(*cli, config.output_dir, argv[0], source_dir, &evaluator, comm);
    train_and_report(run, config, training, evaluator, base.model, policy, {method, method}, compute, [&] {
      return nlohmann::json{{"method", method},
                            {"rounds", training.round()},
                            {"seed", config.seed},
                            {"train_wall_s", training.wall_s()},
                            {"train_cpu_s", training.cpu_s()}};
    });
    return 0;
  });
}

}  // namespace spo::experiment
