// SPDX-License-Identifier: MIT
// SPO training: exact resume (1 + 1 rounds == 2 rounds), a NaN loss stops before the update, configs checked first.
#include <cmath>
#include <filesystem>
#include <type_traits>

#include <doctest/doctest.h>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/experiment/spo_experiment.hpp"
#include "spo/loss/step_dpo_loss.hpp"

#include "support/train_fixtures.hpp"

using namespace spo;
using namespace spo::test_support;
namespace fs = std::filesystem;

namespace {
using Training =
    train::SpoTraining<Policy, Base, Scheduler, BrightnessPM, preference::BestWorstCompare, resampler::RandomChild>;
const resampler::ResamplerOptions rs{3, 1, 0.0, 2.0, 1.0, 0, 1000};
const train::SpoTrainSection tr{2, 3, {0, 1}, 4, 1e-2, 1e-4, 1.0, 1};

/// What every training case starts from: the tiny base model, scheduler and preference model; make(policy) builds
/// the trainer.
struct Setup {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  BrightnessPM pm;
  Training make(Policy& p) {
    return Training(p, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, 7, nlohmann::json::object());
  }
};
}  // namespace

TEST_CASE_FIXTURE(Setup, "SPO training resumes exactly: 1 + 1 rounds == 2 rounds, bitwise") {
  const auto dir = scratch("spo_train");
  const auto m1 = check_exact_resume(base, dir, [&](Policy& p) { return make(p); });
  CHECK(m1.metrics.at("items").get<std::int64_t>() > 0);
  CHECK(std::abs(m1.metrics.at("loss").get<double>() - std::log(2.0)) <
        1e-3);  // the first minibatch has policy == reference: log 2
  fs::remove_all(dir);
}

TEST_CASE_FIXTURE(Setup, "SPO training: a non-finite loss stops before the update and leaves the checkpoint intact") {
  const auto dir = scratch("spo_train");
  auto p = tiny_policy(base);
  auto t = make(p);
  t.run_round();
  check_non_finite_stop(t, p, dir, [&] {
    resampler::StepPairs<float> items;
    Generator g{1, 0};
    items.x_t = randn<float>(Shape{2, 1, 8, 8}, g);
    items.x_win = randn<float>(Shape{2, 1, 8, 8}, g);
    items.x_lose = randn<float>(Shape{2, 1, 8, 8}, g);
    items.x_win[5] = std::nanf("");
    items.t = {401, 151};
    items.prompts = {"a dress", "a bag"};
    items.gap = {0.5, 0.5};
    const std::vector<std::int64_t> order{0, 1};
    double norm = 0;
    t.train_minibatch(items, order, norm);
  });
  fs::remove_all(dir);
}

TEST_CASE("SPO configs: unknown policies and out-of-range values are errors before any work") {
  using E = experiment::Spo<spm::StepAwarePM>;
  auto load = [] {
    auto c = load_source_config<experiment::SpoConfig>("configs/spo.json");
    c.preference_model = in_source(*c.preference_model);
    return c;
  };
  CHECK_NOTHROW(experiment::validate<E>(load()));
  auto c = load();
  c.policies = experiment::PolicyNames{};
  c.policies->compare = "top_two";
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("policies.compare: is \"top_two\""), spo::error);
  c = load();
  c.policies = experiment::PolicyNames{};
  c.policies->preference = "oracle";
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("compiled with \"step_aware\""), spo::error);
  c = load();
  c.resampler.k = 1;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c),
                       doctest::Contains("resampler.k: (children per step) must be >= 2, got 1"), spo::error);
  c = load();
  c.resampler.divert_start_step = 20;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("divert_start_step"), spo::error);
  c = load();
  c.resampler.threshold = 1.0;
  CHECK_THROWS_AS(experiment::validate<E>(c), spo::error);
  c = load();
  c.loss.clip_eps = 0.0;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("loss.clip_eps: must lie in (0, 1), got 0"),
                       spo::error);
  c = load();
  c.loss.beta = -1.0;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("loss.beta: must be finite and > 0, got -1"),
                       spo::error);
  c = load();
  c.train.templates = {4};
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c),
                       doctest::Contains("train.templates[0]: 4 is not a training template"), spo::error);
  c = load();
  c.preference_model.reset();
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("preference_model: this experiment uses"),
                       spo::error);
  // An unknown key in the JSON is refused by the reader.
  auto j = io::parse_json(io::read_file_text(in_source("configs/spo.json")), "spo.json");
  j["resampler"]["kk"] = 4;
  CHECK_THROWS_WITH_AS(io::from_json<experiment::SpoConfig>(j, "spo.json"), doctest::Contains("resampler.kk"),
                       spo::error);
}

TEST_CASE("SPO training is composed: another scheduler (scaled-linear betas, v-prediction) and another pair loss") {
  // The scheduler and the loss are policies of the trainer: the same round runs with DDIM over Stable Diffusion's
  // scaled-linear betas with v-prediction and with the unclipped step DPO loss, resumes exactly, and its first
  // minibatch (policy == reference) has the DPO value log 2.
  using VDdim = diffusion::Ddim<diffusion::ScaledLinearBetas, diffusion::VPrediction>;
  using StepDpo = train::SpoTraining<Policy, Base, VDdim, BrightnessPM, preference::BestWorstCompare,
                                     resampler::RandomChild, loss::StepDpoLoss>;
  static_assert(std::is_same_v<StepDpo::loss_options, loss::StepDpoOptions>);
  Base base = tiny_base();
  auto ddim = diffusion::make_scheduler<diffusion::ScaledLinearBetas, diffusion::VPrediction>(
      diffusion::ScheduleSection{"scaled_linear", 0.00085, 0.012, 1000, "v_prediction", "leading", 1});
  ddim.set_timesteps(4);
  BrightnessPM pm;
  auto make = [&](Policy& p) {
    return StepDpo(p, base, ddim, pm, rs, loss::StepDpoOptions{10.0}, tr, 8, 7, nlohmann::json::object());
  };
  const auto dir = scratch("spo_train_composed");
  const auto m1 = check_exact_resume(base, dir, make);
  CHECK(m1.metrics.at("items").get<std::int64_t>() > 0);
  // The round's mean over its minibatches: the first (policy == reference) is log 2, later ones moved unclipped.
  CHECK(std::abs(m1.metrics.at("loss").get<double>() - std::log(2.0)) < 1e-2);
  CHECK(m1.metrics.at("clip_fraction").get<double>() == 0.0);  // the unclipped loss clips nothing

  // With SPO's clipped loss the first round draws the same pairs: sampling does not depend on the loss.
  using Clipped = train::SpoTraining<Policy, Base, VDdim, BrightnessPM, preference::BestWorstCompare,
                                     resampler::RandomChild, loss::SpoLoss>;
  auto p = tiny_policy(base);
  Clipped c(p, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, 7, nlohmann::json::object());
  CHECK(c.run_round().metrics.at("items") == m1.metrics.at("items"));
  fs::remove_all(dir);
}
