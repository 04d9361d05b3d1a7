// SPDX-License-Identifier: MIT
/// @brief An SPO experiment composed at compile time (preference model, compare policy, continuation rule) and its
/// driver: config, base model + LoRA policy, training, evaluation against the base model, results and plots.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/image_format.hpp"
#include "spo/diffusion/concepts.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/eval/protocol.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/experiment/components.hpp"
#include "spo/io/plot.hpp"
#include "spo/io/png.hpp"
#include "spo/io/resume.hpp"
#include "spo/io/run_record.hpp"
#include "spo/loss/concepts.hpp"
#include "spo/loss/spo_loss.hpp"
#include "spo/model/autocast.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/nn/lora.hpp"
#include "spo/optim/precision.hpp"
#include "spo/preference/compare.hpp"
#include "spo/preference/preference_model.hpp"
#include "spo/resampler/continuation.hpp"
#include "spo/spm/variant.hpp"
#include "spo/train/compute_budget.hpp"
#include "spo/train/spo_training.hpp"

namespace spo::experiment {

/// The oracle rater as the step preference model (the upper bound of Table 5): no checkpoint, the rater scores the
/// x0 predictions directly.
struct OraclePM {
  static constexpr std::string_view name = "oracle";
  using image_format = FashionImage;  // the rater's judge classifies Fashion-MNIST images
};

/// The diffusion model every experiment fine-tunes: the Fashion-MNIST UNet with its text tower (frozen base, LoRA
/// policy) on device D, generating FashionImage samples. The device is the experiment's choice of type: with
/// FashionDiffusionOn<cuda> (and spo/cuda.hpp) the UNet, the resampler, the preference network and the trainer run
/// on the GPU; the rater and the evaluation's judges stay on the CPU. So is the precision (optim/precision.hpp):
/// under bf16 and fp16 the UNet, its weights and its LoRA adapters are 16-bit behind a model::Autocast (the sampler,
/// the log-probs and the loss stay FP32; the LoRA weights train as FP32 masters, with loss scaling under fp16), which
/// needs spo::cuda's 16-bit kernels; tf32 lets FP32 products use TF32 tensor cores (spo::cuda only).
template <Device D, precision::Policy Precision = precision::fp32>
struct FashionDiffusionOn {
  using image_format = FashionImage;
  using device_type = D;
  using precision_type = Precision;
  using storage = typename Precision::storage;
  static_assert(!HalfScalar<storage> || !std::same_as<D, cpu>,
                "16-bit storage (precision::bf16, precision::fp16) needs spo::cuda's kernels: the CPU has none");
  using base_model = model::autocast_t<model::FashionModel<storage, D>>;
  using policy_model = model::autocast_t<model::FashionModel<storage, D, nn::LoRA<nn::Linear<storage, D>>>>;
};
using FashionDiffusion = FashionDiffusionOn<cpu>;

/// The scheduler the committed base model was trained with (linear betas, epsilon prediction), children drawn by
/// DDIM with eta = 1 as SPO samples them.
using DefaultScheduler = diffusion::DdimScheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>;

/*!
  WHAT THIS REPRESENTS
    An SPO experiment type: `using Experiment = experiment::Spo<spm::StepAwarePM, preference::BestWorstCompare,
    resampler::RandomChild>;` is the paper's method; every ablation of Tables 4, 5 and 9 is another argument list.
    Preference: a preference-model variant of spm/variant.hpp (loaded from `preference_model`) or OraclePM.
    Loss: the pair loss the trainer minimises (loss::StepPairLoss; its options are the config's "loss" section).
    Schedule: the scheduler that samples, trains and evaluates, and the sampler that draws the children
    (diffusion::SchedulerPolicy; its beta schedule and parameterization must be the base model's, and the loss
    needs transition log-probabilities, so a deterministic sampler does not compile). Model: the diffusion model,
    whose image format the preference policy must score, with its device and precision (FashionDiffusionOn).
!*/
template <class Preference, preference::ComparePolicy Compare = preference::BestWorstCompare,
          resampler::ContinuationRule Continuation = resampler::RandomChild, loss::StepPairLoss Loss = loss::SpoLoss,
          diffusion::SchedulerPolicy Schedule = DefaultScheduler, class Model = FashionDiffusion>
requires SameImageFormat<Model, Preference> && loss::SamplerSuitsLoss<Loss, typename Schedule::sampler_type>
struct Spo {
  using preference_type = Preference;
  using compare_type = Compare;
  using continuation_type = Continuation;
  using loss_type = Loss;
  using scheduler_type = typename Schedule::scheduler_type;
  using sampler_type = typename Schedule::sampler_type;
  using model_type = Model;
  static constexpr bool needs_checkpoint = !std::same_as<Preference, OraclePM>;
};

/// The policy names a config may state (each optional: the binary's compiled policies are the truth); a binary
/// compiled with other policies refuses a config that names different ones.
struct PolicyNames {
  BOOST_HANA_DEFINE_STRUCT(PolicyNames, (std::optional<std::string>, preference), (std::optional<std::string>, compare),
                           (std::optional<std::string>, continuation), (std::optional<std::string>, loss));
};

/// The config of an SPO experiment whose loss has options LossOptions. Every key is required except `policies`,
/// preference_model (required unless the experiment uses the oracle) and budget (train.rounds alone ends the run).
template <class LossOptions>
struct SpoConfigOf {
  BOOST_HANA_DEFINE_STRUCT(SpoConfigOf, (std::uint64_t, seed), (std::string, data_dir), (std::string, output_dir),
                           (std::optional<PolicyNames>, policies), (io::ModelFiles, base),
                           (std::optional<std::string>, preference_model), (preference::RaterSection, rater),
                           (train::LoraSection, lora), (resampler::ResamplerOptions, resampler), (LossOptions, loss),
                           (train::SpoTrainSection, train), (eval::EvalSection, evaluation),
                           (std::optional<train::BudgetSection>, budget));
};
/// The config of the paper's SPO (its clipped loss).
using SpoConfig = SpoConfigOf<loss::SpoLossOptions>;
/// The config of experiment E.
template <class E>
using ConfigOf = SpoConfigOf<typename E::loss_type::options_type>;

/// `path` (the value of config key `key`) names an existing regular file.
inline void validate_input_file(const std::string& key, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  SPO_CONFIG_CHECK(fs::exists(st), key, "no such file: \"" << path << "\"");
  SPO_CONFIG_CHECK(!fs::is_directory(st), key, "\"" << path << "\" is a directory, expected a file");
  SPO_CONFIG_CHECK(fs::is_regular_file(st), key, "\"" << path << "\" is not a regular file");
}

/// The sections every fine-tuning config shares (SPO and the baselines), checked before work starts; returns the
/// base model's config (its own errors name its file).
template <class C>
train::PretrainConfig validate_common(const C& c) {
  auto base = load_base_config(c.base);
  train::validate(c.lora);
  eval::validate(c.evaluation);
  preference::validate(c.rater.weights);
  SPO_CONFIG_CHECK(c.rater.images_per_class >= 0, "rater.images_per_class",
                   "must be >= 0 (0: every training image), got " << c.rater.images_per_class);
  validate_input_file("base.weights", c.base.weights);
  validate_input_file("rater.judge.weights", c.rater.judge.weights);
  validate_input_file("evaluation.held_out_judge.weights", c.evaluation.held_out_judge.weights);
  if (c.budget) train::validate(*c.budget);
  return base;
}

/// The compute accounting of a fine-tuning run: the unit (one UNet forward of one row of the base model), the
/// compute records of the method's inputs when the budget charges them, and the budget.
struct ComputeSetup {
  double unit_flops = 0;
  std::map<std::string, train::ComputeRecord> inputs;  ///< charged inputs by config key
  std::optional<train::BudgetSection> budget;

  /// The inputs' compute, an artifact two inputs share counted once.
  double charged_fe() const { return charged().forward_equivalents(); }
  std::int64_t charged_queries() const { return charged().rater_queries(); }
  train::ComputeRecord charged() const {
    train::ComputeRecord all;  // a record of nothing whose inputs are the charged ones
    all.what = "charged inputs";
    all.unit_flops = unit_flops;
    all.inputs = inputs;
    return all;
  }
};

/*!
  ENSURES
    - measures the unit on `base`; with a budget that charges inputs, loads the compute record of every artifact
      in `inputs` ({config key, artifact path}); a missing or foreign record is an error naming the key and file
!*/
template <class Config, class Base>
ComputeSetup make_compute_setup(const Config& c, Base& base, std::int64_t resolution,
                                const std::vector<std::pair<std::string, std::string>>& inputs) {
  ComputeSetup s;
  s.unit_flops = train::unet_row_flops(base, 1, resolution);
  s.budget = c.budget;
  if (c.budget && c.budget->charge_inputs)
    for (const auto& [key, path] : inputs) {
      try {
        s.inputs.emplace(key, train::load_compute_record(path, s.unit_flops));
      } catch (const input_error& e) {
        throw config_error(key, std::string(e.what()) + " (budget.charge_inputs is true)");
      }
    }
  return s;
}

/// Checks everything that can be checked before work starts (base model config included); errors are config_errors
/// with the key ("policies.compare: is \"top_two\", but this binary was compiled with \"best_worst\" ...").
template <class E>
train::PretrainConfig validate(const ConfigOf<E>& c) {
  auto check_policy = [](const std::string& key, const std::optional<std::string>& given, std::string_view compiled,
                         std::string_view known) {
    SPO_CONFIG_CHECK(!given || *given == compiled, "policies." + key,
                     "is \"" << *given << "\", but this binary was compiled with \"" << compiled << "\" (known: "
                             << known << "); use the experiment binary built for that policy, or leave the key out");
  };
  if (c.policies) {
    check_policy("preference", c.policies->preference, E::preference_type::name,
                 "step_aware, no_step_condition, clean, oracle");
    check_policy("compare", c.policies->compare, E::compare_type::name, "best_worst, random_pair");
    check_policy("continuation", c.policies->continuation, E::continuation_type::name, "random, winner, loser");
    check_policy("loss", c.policies->loss, E::loss_type::name, "spo, step_dpo");
  }
  auto base = validate_common(c);
  resampler::validate(c.resampler, base.sampling.num_inference_steps);
  SPO_CONFIG_CHECK(c.resampler.eta == E::sampler_type::eta, "resampler.eta",
                   "is " << c.resampler.eta << ", but this binary's sampler policy is " << E::sampler_type::name
                         << " (eta " << E::sampler_type::eta << ")");
  validate(c.loss);
  train::validate(c.lora, c.train);
  if constexpr (E::needs_checkpoint) {
    SPO_CONFIG_CHECK(
        c.preference_model && !c.preference_model->empty(), "preference_model",
        "this experiment uses the preference model \"" << E::preference_type::name << "\" and needs its checkpoint");
    validate_input_file("preference_model", *c.preference_model);
  } else {
    SPO_CONFIG_CHECK(!c.preference_model, "preference_model",
                     "is set, but this experiment scores with the oracle rater; remove the key");
  }
  return base;
}

using BaseModelType = FashionDiffusion::base_model;
using PolicyModelType = FashionDiffusion::policy_model;

/// The policy: a copy of the base model's weights (architecture from its config sections) with rank-r LoRA adapters
/// on every attention projection (only they train; LoRA init from Generator{seed ^ 0x10a5}, the same numbers on
/// every device).
template <class Model = FashionDiffusion>
typename Model::policy_model make_policy(const model::UNetConfig& unet, const model::TextSection& text,
                                         typename Model::base_model& base, const train::LoraSection& lora,
                                         std::uint64_t seed) {
  Generator init{0, 0};
  auto policy = model::make_fashion_model<typename Model::policy_model>(unet, text, init);
  io::load_state_dict(policy, io::state_dict(base),
                      {.strict = true, .prefix = {}, .check_finite = false});  // scanned when loaded
  nn::set_trainable(policy, false);
  Generator lora_gen{seed ^ 0x10a5ull, 0};
  policy.unet().attach_lora(lora.rank, lora.alpha, lora_gen);
  return policy;
}

/// Writes the LoRA parameters only (keys "...lora_A" / "...lora_B", F32) with the rank and alpha in the metadata.
template <class Policy>
void save_lora(const std::filesystem::path& path, Policy& policy, const train::LoraSection& lora) {
  io::NamedTensors t;
  t.source = path.string();
  policy.visit_parameters([&](std::string_view name, auto& p) {
    if (name.find("lora_") == std::string_view::npos) return;
    // float (a 16-bit adapter widened exactly: the values the model computes with; the checkpoint holds the masters)
    t.set<float>(std::string(name), as_scalar<float>(transfer<cpu>(p.value)));
  });
  t.metadata = {{"format", "spo.lora.v1"}, {"rank", std::to_string(lora.rank)}, {"alpha", std::to_string(lora.alpha)}};
  io::save_safetensors(path, t);
}

/// Loads LoRA weights written by save_lora into a policy with adapters of the same rank attached.
template <class Policy>
void load_lora(Policy& policy, const std::filesystem::path& path) {
  const auto t = io::load_safetensors(path);
  SPO_EXPECT(t.metadata.contains("format") && t.metadata.at("format") == "spo.lora.v1",
             path << ": not a LoRA file (metadata \"format\" is not \"spo.lora.v1\")");
  const auto r = io::load_state_dict(policy, t, {.strict = false, .prefix = {}});
  for (const auto& k : r.missing)
    SPO_EXPECT(k.find("lora_") == std::string::npos, path.string() << ": LoRA parameter \"" << k << "\" is missing");
  SPO_EXPECT(r.unexpected.empty(), path.string() << ": unexpected keys, e.g. \"" << r.unexpected.front() << "\"");
}

/// The preference model of experiment E.
template <class E>
auto make_preference_model(const ConfigOf<E>& c, preference::OracleRater<float> rater) {
  if constexpr (E::needs_checkpoint) {
    using V = typename E::preference_type;
    using D = typename E::model_type::device_type;
    return spm::NetworkPreference<V, float, D>(spm::load_preference_model<V, float, D>(*c.preference_model));
  } else {
    return preference::RaterPreference<preference::OracleRater<float>>(std::move(rater));
  }
}

/// What the evaluation needs, loaded once; it samples with Scheduler (the experiment's, set to the base model's
/// inference steps).
template <class Scheduler>
struct BasicEvaluator {
  preference::OracleRater<float> rater;
  judge::Classifier<float> held_out;
  eval::GaussianStats real;
  Scheduler ddim;
  train::PretrainConfig base_config;
  eval::EvalSection evaluation;
  /// The rater's feature statistics when rater.feature_stats was missing or stale and they were computed; a run
  /// keeps them in its output directory (start_run), never beside the input.
  std::optional<preference::FeatureStats> computed_stats;

  template <class Model>
  std::pair<eval::Metrics, Tensor<float, cpu>> run(Model& model, std::int64_t seeds) {
    const auto& s = base_config.sampling;
    auto images = eval::generate(model, ddim, evaluation, seeds, s.guidance_scale, s.eta, base_config.resolution);
    const auto prompts = eval::eval_prompts(evaluation, seeds);
    return {eval::measure(rater, held_out, real, images, prompts), std::move(images)};
  }
};

/// The evaluator of the experiments that sample with the committed base model's scheduler.
using Evaluator = BasicEvaluator<DefaultScheduler::scheduler_type>;

/// The evaluator of a fine-tuning config C (its data_dir, rater and evaluation sections) with scheduler Scheduler,
/// whose beta schedule and parameterization must be the base model's ("schedule.*" errors name the mismatch).
template <class Scheduler = DefaultScheduler::scheduler_type, class C>
BasicEvaluator<Scheduler> make_evaluator(const C& c, const train::PretrainConfig& base_config) {
  std::optional<preference::FeatureStats> computed;
  auto rater = load_oracle_rater<float>(c.rater, c.data_dir, base_config.resolution, &computed);
  auto held_out = load_judge<float>(c.evaluation.held_out_judge);
  auto real = eval::real_feature_stats(held_out, c.data_dir, c.evaluation.real_images, base_config.resolution);
  auto ddim = diffusion::make_scheduler<typename Scheduler::schedule_type, typename Scheduler::prediction_type>(
      base_config.schedule);
  ddim.set_timesteps(base_config.sampling.num_inference_steps);
  return {std::move(rater), std::move(held_out), std::move(real),    std::move(ddim),
          base_config,      c.evaluation,        std::move(computed)};
}

/// The base-vs-tuned table (Markdown) and JSON of a final evaluation.
inline std::pair<std::string, nlohmann::json> comparison_table(const eval::Metrics& base, const eval::Metrics& tuned,
                                                               const std::string& tuned_name) {
  const auto win = eval::win_rate(tuned.rewards, base.rewards);
  char buf[1024];
  std::string md =
      "| model | reward (95% CI) | alignment | quality | held-out class acc. | Frechet dist. (+- 1.96 bootstrap s.d.) "
      "| win rate vs base |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n";
  auto row = [&](const std::string& name, const eval::Metrics& m, const std::string& w) {
    std::snprintf(buf, sizeof buf, "| %s | %.4f [%.4f, %.4f] | %.4f | %.4f | %.3f | %.3f [%.3f, %.3f] | %s |\n",
                  name.c_str(), m.reward.mean, m.reward.ci95_low, m.reward.ci95_high, m.alignment, m.quality,
                  m.class_accuracy, m.frechet, m.frechet_ci95[0], m.frechet_ci95[1], w.c_str());
    md += buf;
  };
  row("base", base, "-");
  std::snprintf(buf, sizeof buf, "%.3f [%.3f, %.3f]", win.rate, win.ci95_low, win.ci95_high);
  row(tuned_name, tuned, buf);
  nlohmann::json j{{"base", eval::to_json(base)},
                   {tuned_name, eval::to_json(tuned)},
                   {"win_rate_vs_base",
                    {{"rate", win.rate},
                     {"ci95", {win.ci95_low, win.ci95_high}},
                     {"wins", win.wins},
                     {"ties", win.ties},
                     {"losses", win.losses}}}};
  return {md, j};
}

/// The config named on the command line, with its --rounds, --seed and --output overrides applied.
template <class Config>
Config load_run_config(const CommandLine& cli) {
  auto config = io::load_config<Config>(cli.config);
  if (cli.length) config.train.rounds = *cli.length;
  if (cli.seed) config.seed = *cli.seed;
  if (cli.output) config.output_dir = *cli.output;
  SPO_CONFIG_CHECK(!config.output_dir.empty(), "output_dir", "must name a directory, got \"\"");
  return config;
}

/*!
  ENSURES
    - with --resume and a checkpoint in `output_dir`: returns only when `resolved` (the run's config) equals the
      config the checkpoint recorded, but for output_dir and, with --allow-<length>-change, the run length
      `length_key`; otherwise throws input_error listing every changed key with both values (nothing is written)
    - without either, returns at once
!*/
inline void check_resume(const CommandLine& cli, const std::string& output_dir, const nlohmann::json& resolved,
                         const std::string& length_key, const std::string& length_flag) {
  const auto ckpt = std::filesystem::path(output_dir) / "checkpoint.safetensors";
  if (!cli.resume || !std::filesystem::exists(ckpt)) return;
  io::ResumeRules rules;
  rules.length_key = length_key;
  rules.length_flag = "--allow-" + length_flag + "-change";
  rules.allow_length_change = cli.allow_length_change;
  io::check_resume_config(ckpt, resolved, rules);
}

/// How a fine-tuned model is named in the outputs of its run.
struct TunedName {
  std::string key;    ///< its results.json key and samples_<key>.png: "spo", "diffusion_dpo"
  std::string label;  ///< its name in the progress plot: "SPO", "diffusion_dpo"
};

/// A fine-tuning run: where it writes, the binary and source tree it records, and when it started (results.json's
/// wall_s counts from here).
struct RunContext {
  dist::AnyCommunicator comm;  ///< the run's ranks: rank 0 alone writes
  std::filesystem::path out;
  std::string program;  ///< argv[0]
  std::filesystem::path source_dir;
  bool resume = false;
  std::chrono::steady_clock::time_point start;
};

/*!
  REQUIRES
    - every check and every load that can fail is done (a failed run must leave no output directory behind)
  ENSURES
    - creates the output directory, removes temporaries that killed processes left there (`*.tmp.<pid>` of pids
      that no longer run), keeps statistics the run computed (feature_stats.safetensors) and starts the run's clock
!*/
template <class Scheduler = DefaultScheduler::scheduler_type>
RunContext start_run(const CommandLine& cli, const std::string& output_dir, const char* program, const char* source_dir,
                     const BasicEvaluator<Scheduler>* evaluator = nullptr, dist::AnyCommunicator comm = {}) {
  const std::filesystem::path out = output_dir;
  if (!comm.is_root()) return {comm, out, program, source_dir, cli.resume, std::chrono::steady_clock::now()};
  std::filesystem::create_directories(out);
  for (const auto& p : io::remove_orphaned_temporaries(out))
    std::fprintf(stderr, "%s: removed %s, left by a process that no longer runs\n", program, p.string().c_str());
  if (evaluator && evaluator->computed_stats) {
    preference::save_feature_stats(out / "feature_stats.safetensors", *evaluator->computed_stats);
    std::fprintf(stderr, "%s: wrote the computed rater statistics to %s\n", program,
                 (out / "feature_stats.safetensors").string().c_str());
  }
  return {comm, out, program, source_dir, cli.resume, std::chrono::steady_clock::now()};
}

/*!
  REQUIRES
    - training (a train::RoundTrainer) trains `policy` (LoRA adapters on `base`): round(), resume(path) and
      run(out, on_round), which trains the remaining rounds and calls on_round(round, training wall_s) after each
    - describe() returns the "experiment" object of results.json; it is called after training
  ENSURES
    - trains on the run's ranks (run.comm; every rank resumes from the same checkpoint, so output_dir must be on a
      file system they share); only rank 0 evaluates and writes
    - resumes from <out>/checkpoint.safetensors when the run asks and it exists; writes run.json
    - progress evaluations (progress_seeds_per_prompt seeds) before training and every progress_every_rounds rounds
      (their time is not training time): progress.jsonl, and reward_vs_time.png with two or more
    - lora.safetensors; the final evaluation of base and tuned on the same prompts and seeds: results.json (keys
      "base", name.key, "win_rate_vs_base", "experiment", "wall_s"), results.md, samples_base.png /
      samples_<name.key>.png; prints the Markdown table
!*/
template <class Config, class Training, class Scheduler, class Base, class Policy, class Describe>
void train_and_report(const RunContext& run, const Config& config, Training& training,
                      BasicEvaluator<Scheduler>& evaluator, Base& base, Policy& policy, const TunedName& name,
                      const ComputeSetup& compute, Describe&& describe) {
  using D = typename Policy::device_type;
  auto release_blocks = [] {  // evaluation batch shapes differ from training's
    caching_allocator<cpu>::instance().release_all();
    if constexpr (!std::same_as<D, cpu>) caching_allocator<D>::instance().release_all();
  };
  namespace fs = std::filesystem;
  const fs::path& out = run.out;
  const fs::path ckpt = out / "checkpoint.safetensors";
  auto comm = run.comm;
  training.set_communicator(comm);
  training.set_compute(compute.unit_flops, compute.charged_fe(), compute.charged_queries(),
                       compute.budget ? compute.budget->forward_equivalents : 0.0);
  if (run.resume && fs::exists(ckpt)) {
    training.resume(ckpt);
    std::fprintf(stderr, "%s: resumed after round %lld\n", run.program.c_str(),
                 static_cast<long long>(training.round()));
  }
  if (!comm.is_root()) {  // the other ranks train, rank 0 reports
    training.run(out);
    return;
  }
  if (comm.size() > 1)
    std::fprintf(stderr, "%s: data parallel over %d ranks (%s)\n", run.program.c_str(), comm.size(),
                 std::string(comm.name()).c_str());
  io::write_run_record(out, fs::path(run.program).filename().string(), io::to_json(config), config.seed, run.source_dir,
                       training.round());

  // Progress evaluations: cheap (progress_seeds_per_prompt seeds), their time not counted as training time.
  io::MetricsLog progress(out / "progress.jsonl", training.round() > 0 ? training.round() : -1);
  io::Series reward_curve{name.label, {}, {}};
  const auto& ev = config.evaluation;
  auto progress_eval = [&](std::int64_t round, double wall) {
    auto [m, images] = evaluator.run(policy, ev.progress_seeds_per_prompt);
    progress.write({{"step", round},
                    {"train_wall_s", wall},
                    {"train_cpu_s", training.cpu_s()},
                    {"fe", training.forward_equivalents()},
                    {"rater_queries", training.rater_queries()},
                    {"reward_mean", m.reward.mean},
                    {"class_accuracy", m.class_accuracy},
                    {"frechet", m.frechet}});
    reward_curve.xs.push_back(wall / 60.0);
    reward_curve.ys.push_back(m.reward.mean);
    release_blocks();
  };
  const auto& budget = compute.budget;
  const bool fe_progress = budget && budget->progress_every > 0;
  if (training.round() == 0 && (ev.progress_every_rounds > 0 || fe_progress)) progress_eval(0, 0.0);
  double fe_before = training.forward_equivalents();
  if (budget && training.round() == 0)  // inputs that cost more than a snapshot's budget: the untrained weights
    for (const double s : budget->snapshots)
      if (s <= fe_before)
        save_lora(out / ("lora_fe" + std::to_string(std::llround(s)) + ".safetensors"), policy, config.lora);
  training.run(out, [&](std::int64_t round, double wall) {
    const double fe = training.forward_equivalents();
    bool snapshot = false;
    if (budget)
      for (const double s : budget->snapshots)
        if (fe_before < s && s <= fe) {
          save_lora(out / ("lora_fe" + std::to_string(std::llround(s)) + ".safetensors"), policy, config.lora);
          snapshot = true;
        }
    const bool last = round == config.train.rounds || training.budget_spent();
    if ((ev.progress_every_rounds > 0 && (round % ev.progress_every_rounds == 0 || last)) ||
        (fe_progress && (train::crossed_multiple(fe_before, fe, budget->progress_every) || snapshot || last)))
      progress_eval(round, wall);
    fe_before = fe;
  });
  save_lora(out / "lora.safetensors", policy, config.lora);

  // Final evaluation: base and tuned on the same prompts and seeds.
  release_blocks();
  auto [mb, images_base] = evaluator.run(base, ev.seeds_per_prompt);
  auto [mt, images_tuned] = evaluator.run(policy, ev.seeds_per_prompt);
  auto [md, j] = comparison_table(mb, mt, name.key);
  j["experiment"] = describe();
  nlohmann::json charged = nlohmann::json::object();
  for (const auto& [key, r] : compute.inputs) charged[key] = train::to_json(r);
  j["compute"] = {{"unit_flops", compute.unit_flops},
                  {"forward_equivalents", training.forward_equivalents()},
                  {"charged_inputs_fe", compute.charged_fe()},
                  {"rater_queries", training.rater_queries()},
                  {"rounds", training.round()},
                  {"train_wall_s", training.wall_s()},
                  {"train_cpu_s", training.cpu_s()},
                  {"by_network", nn::to_json(training.compute())},
                  {"charged_inputs", charged}};
  j["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
  io::write_file_atomic(out / "results.json", j.dump(2) + "\n");
  io::write_file_atomic(out / "results.md", md);
  const std::int64_t show = std::min<std::int64_t>(ev.seeds_per_prompt, 8);
  auto grid = [&](const Tensor<float, cpu>& images, const std::string& file) {
    const std::int64_t per = images.numel() / images.size(0), prompts = 10;  // first template: one row per class
    auto g = Tensor<float, cpu>::uninitialized(Shape{prompts * show, 1, images.size(2), images.size(3)});
    for (std::int64_t p = 0; p < prompts; ++p)
      std::copy_n(images.data() + p * ev.seeds_per_prompt * per, show * per, g.data() + p * show * per);
    io::write_image_grid(out / file, g, static_cast<int>(show), 2);
  };
  grid(images_base, "samples_base.png");
  grid(images_tuned, "samples_" + name.key + ".png");
  if (reward_curve.xs.size() >= 2)
    io::write_line_chart(out / "reward_vs_time.png", io::LineChart{"Rater reward during " + name.label + " training",
                                                                   "training wall-clock (min)",
                                                                   "mean reward (progress eval)",
                                                                   {reward_curve}});
  std::printf("%s\n", md.c_str());
}

/*!
  ENSURES
    - runs SPO experiment E from the config on the command line (usage: <binary> <config.json> [--resume]
      [--rounds=N] [--seed=N] [--output=DIR]); every config error is reported before any work starts
    - writes to output_dir what train_and_report writes, with "spo" as the tuned model's key: lora.safetensors,
      results.json / results.md (base vs SPO), progress.jsonl and reward_vs_time.png (the cheaper evaluation during
      training vs training wall-clock), samples_base.png / samples_spo.png, metrics.jsonl, checkpoint.safetensors
      and run.json; prints the table
!*/
template <class E>
int run_spo_experiment(int argc, char** argv, const char* source_dir) {
  return run_guarded(argv[0], [&](dist::AnyCommunicator& comm) {
    const auto cli = parse_command_line(argc, argv, "rounds");
    if (!cli) return cli.exit_code;
    using Model = typename E::model_type;
    comm = make_run_communicator(*cli, !std::same_as<typename Model::device_type, cpu>);
    const auto config = load_run_config<ConfigOf<E>>(*cli);
    const auto base_config = io::in_config_file(cli->config, [&] { return validate<E>(config); });
    check_resume(*cli, config.output_dir, io::to_json(config), "train.rounds", "rounds");

    auto base = load_base_model<typename Model::base_model>(config.base);
    auto policy = make_policy<Model>(base_config.unet, base_config.text, base.model, config.lora, config.seed);
    auto evaluator = io::in_config_file(
        cli->config, [&] { return make_evaluator<typename E::scheduler_type>(config, base_config); });
    auto pm = make_preference_model<E>(config, evaluator.rater);
    std::vector<std::pair<std::string, std::string>> inputs;
    if constexpr (E::needs_checkpoint) inputs.emplace_back("preference_model", *config.preference_model);
    const auto compute = io::in_config_file(
        cli->config, [&] { return make_compute_setup(config, base.model, base_config.resolution, inputs); });
    const auto run = start_run(*cli, config.output_dir, argv[0], source_dir, &evaluator, comm);
    if (comm.is_root())
      std::fprintf(
          stderr,
          "%s: preference model \"%s\", compare \"%s\", continuation \"%s\", loss \"%s\", precision %s; %lld LoRA "
          "parameters\n",
          argv[0], std::string(E::preference_type::name).c_str(), std::string(E::compare_type::name).c_str(),
          std::string(E::continuation_type::name).c_str(), std::string(E::loss_type::name).c_str(),
          std::string(Model::precision_type::name).c_str(),
          static_cast<long long>(nn::parameter_count(policy) - nn::parameter_count(base.model)));

    using Training =
        train::SpoTraining<typename Model::policy_model, typename Model::base_model, typename E::scheduler_type,
                           decltype(pm), typename E::compare_type, typename E::continuation_type, typename E::loss_type,
                           typename Model::precision_type>;
    set_precision_modes<typename Model::precision_type>(typename Model::device_type{});
    Training training(policy, base.model, evaluator.ddim, pm, config.resampler, config.loss, config.train,
                      base_config.resolution, config.seed, io::to_json(config));
    train_and_report(run, config, training, evaluator, base.model, policy, {"spo", "SPO"}, compute, [&] {
      return nlohmann::json{{"preference", E::preference_type::name},
                            {"compare", E::compare_type::name},
                            {"continuation", E::continuation_type::name},
                            {"loss", E::loss_type::name},
                            {"precision", Model::precision_type::name},
                            {"rounds", training.round()},
                            {"seed", config.seed}};
    });
    return 0;
  });
}

}  // namespace spo::experiment
