// SPDX-License-Identifier: MIT
/// @brief The driver of a preference-model experiment binary: `using Experiment = spm::<Variant>;` plus a config.
#pragma once

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/experiment/components.hpp"
#include "spo/experiment/spo_experiment.hpp"
#include "spo/io/run_record.hpp"
#include "spo/spm/training.hpp"
#include "spo/train/compute_budget.hpp"

namespace spo::experiment {

/*!
  ENSURES
    - trains preference-model variant V from the config given on the command line
      (usage: <binary> <config.json> [--resume] [--steps=N]) and writes to the config's output_dir:
      preference_model.safetensors (the variant's checkpoint), accuracy.json (validation accuracy by timestep),
      metrics.jsonl, checkpoint.safetensors (optimizer state, for --resume) and run.json
    - under mpirun / srun, data parallel over the ranks (SpmTraining::set_communicator); rank 0 alone writes
    - returns the process exit code; errors are printed as "<binary>: error: ..." with code 1 (several ranks: the
      run is aborted on every rank with the message)
!*/
template <class V>
int run_spm_experiment(int argc, char** argv, const char* source_dir) {
  return run_guarded(argv[0], [&](dist::AnyCommunicator& comm) {
    namespace fs = std::filesystem;
    using Model = model::FashionModel<float>;
    const std::string program = fs::path(argv[0]).filename().string();
    const auto cli = parse_command_line(argc, argv, "steps");
    if (!cli) return cli.exit_code;
    comm = make_run_communicator(*cli, false);
    auto config = io::load_config<spm::SpmConfig>(cli->config);
    if (cli->length) config.train.steps = *cli->length;
    if (cli->seed) config.seed = *cli->seed;
    if (cli->output) config.output_dir = *cli->output;
    io::in_config_file(cli->config, [&] {
      SPO_CONFIG_CHECK(!config.output_dir.empty(), "output_dir", "must name a directory, got \"\"");
      spm::validate(config);
      validate_input_file("base.weights", config.base.weights);
      validate_input_file("pairs.train", config.pairs.train);
      validate_input_file("pairs.validation", config.pairs.validation);
      if (config.init_from) validate_input_file("init_from", *config.init_from);
    });
    const fs::path out = config.output_dir;
    check_resume(*cli, config.output_dir, io::to_json(config), "train.steps", "steps");

    auto base = load_base_model<Model>(config.base);
    auto ddim = diffusion::make_scheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>(base.config.schedule);
    ddim.set_timesteps(base.config.sampling.num_inference_steps);
    Generator init{config.seed ^ 0x5eedull, 0};
    auto net = spm::make_preference_network<typename V::template network<float>>(config.network, init);
    if (config.init_from) spm::init_from_preference_model(net, *config.init_from);
    if (comm.is_root())
      std::fprintf(stderr, "%s: %lld parameters\n", argv[0], static_cast<long long>(nn::parameter_count(net)));

    auto training = io::in_config_file(cli->config, [&] {
      return spm::SpmTraining<V, Model, decltype(ddim)>(net, base.model, ddim, config,
                                                        base.config.sampling.guidance_scale, io::to_json(config));
    });
    if (comm.is_root()) {
      fs::create_directories(out);
      for (const auto& p : io::remove_orphaned_temporaries(out))
        std::fprintf(stderr, "%s: removed %s, left by a process that no longer runs\n", argv[0], p.string().c_str());
    }
    training.set_communicator(comm);
    const fs::path ckpt = out / "checkpoint.safetensors";
    if (cli->resume && fs::exists(ckpt)) {
      training.resume(ckpt);
      std::fprintf(stderr, "%s: resumed from step %lld\n", argv[0], static_cast<long long>(training.step()));
    }
    if (comm.is_root())
      io::write_run_record(out, program, io::to_json(config), config.seed, source_dir, training.step());
    training.run(out);
    nn::ComputeMeter spent = training.compute();  // every rank's training steps
    if (comm.size() > 1) {
      spent = {};
      for (const auto& s : dist::all_gather_strings(comm, {nn::to_json(training.compute()).dump()}))
        spent += nn::compute_meter_from_json(nlohmann::json::parse(s));
    }
    if (!comm.is_root()) return 0;

    const auto acc = training.evaluate();
    nlohmann::json result{{"variant", V::name}, {"steps", training.step()}, {"accuracy", nlohmann::json::array()}};
    for (const auto& a : acc)
      result["accuracy"].push_back(
          {{"t", a.t}, {"label_accuracy", a.label_accuracy}, {"order_accuracy", a.order_accuracy}});
    spm::save_preference_model<V>(out / "preference_model.safetensors", net, result);
    io::write_file_atomic(out / "accuracy.json", result.dump(2) + "\n");
    train::ComputeRecord record;  // what the model cost: its steps, its pairs, its initialisation
    record.what = program;
    record.unit_flops = train::unet_row_flops(base.model, 1, base.config.resolution);
    record.own = spent;
    train::add_input_record(record, "pairs", config.pairs.train);
    if (config.init_from) train::add_input_record(record, "init_from", *config.init_from);
    train::save_compute_record(out, record);
    for (const auto& a : acc)
      std::printf("%s  t=%4lld  label accuracy %.3f  order accuracy %.3f\n", std::string(V::name).c_str(),
                  static_cast<long long>(a.t), a.label_accuracy, a.order_accuracy);
    std::printf("compute: %.0f UNet forward-equivalents of its own, %.0f with its inputs (compute.json)\n",
                record.own_forward_equivalents(), record.forward_equivalents());
    return 0;
  });
}

}  // namespace spo::experiment
