// SPDX-License-Identifier: MIT
// DDPO training: the first minibatch has ratio 1 and loss -mean(A), one step lowers the loss of its minibatch,
// advantages are per-prompt normalised, exact resume with the stat tracker (1 + 1 rounds == 2 rounds), a NaN stops
// before the update, configs checked first.
#include <cmath>
#include <filesystem>

#include <doctest/doctest.h>

#include "spo/experiment/baseline_experiment.hpp"

#include "support/train_fixtures.hpp"

using namespace spo;
using namespace spo::test_support;
namespace fs = std::filesystem;

namespace {
using Training = train::DdpoTraining<Policy, Scheduler, BrightnessRater>;
const train::TrajectorySection sampling{2.0, 1.0};
const loss::StatTrackerOptions tracker{16, 2};
// 3 prompts x 2 samples from the 10 prompts of template 0 (repeats across rounds exercise the tracker), 2 epochs.
const train::DdpoTrainSection tr{2, 3, 2, {0}, 4, 2, 0.5, 1e-2, 1e-4, 1.0, 1};

/// What every case starts from: the tiny base model, scheduler and rater; make(policy, loss) builds the trainer.
struct Setup {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  BrightnessRater rater;
  Training make(Policy& p, const loss::DdpoLossOptions& lo) {
    return Training(p, ddim, rater, sampling, lo, tracker, tr, 1, 8, 7, nlohmann::json::object());
  }
};
}  // namespace

TEST_CASE_FIXTURE(Setup,
                  "DDPO: ratio 1 and loss -mean(A) on the first minibatch; one step lowers the loss of its minibatch") {
  auto p = tiny_policy(base);
  auto t = make(p, loss::DdpoLossOptions{0.2, 5.0});
  auto [traj, rewards] = t.sample_round();
  REQUIRE(traj.size() == 6);
  CHECK(traj.prompts[0] == traj.prompts[1]);
  // Independent per-prompt normalisation: (R - mean) / (std + 1e-6) over the prompt's two samples = +-1.
  std::vector<double> adv(6);
  for (std::size_t k = 0; k < 6; k += 2) {
    const double m = 0.5 * (rewards[k] + rewards[k + 1]), s = 0.5 * std::abs(rewards[k] - rewards[k + 1]);
    adv[k] = (rewards[k] - m) / (s + 1e-6);
    adv[k + 1] = (rewards[k + 1] - m) / (s + 1e-6);
  }
  loss::PerPromptStatTracker fresh(tracker);
  const auto a = fresh.update(traj.prompts, rewards);
  for (std::size_t k = 0; k < 6; ++k) CHECK(a[k] == doctest::Approx(adv[k]).epsilon(1e-9));
  const std::vector<std::int64_t> rows{0, 1, 2, 3, 4, 5};
  const std::vector<std::vector<std::int64_t>> steps{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2},
                                                     {2, 0, 3, 1}, {0, 1, 2, 3}, {3, 2, 1, 0}};
  const auto r0 = t.train_minibatch(traj, rows, steps, adv);
  double mean_adv = 0;
  for (double v : adv) mean_adv += v / 6;
  CHECK(r0.ratio == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(r0.approx_kl < 1e-10);
  CHECK(r0.loss == doctest::Approx(-mean_adv).epsilon(1e-4));
  const auto r1 = t.train_minibatch(traj, rows, steps, adv);
  MESSAGE("loss before / after one step: " << r0.loss << " / " << r1.loss);
  CHECK(r1.loss < r0.loss - 1e-5);
  CHECK(r1.approx_kl > 0);
}

TEST_CASE_FIXTURE(Setup, "DDPO training resumes exactly with its stat tracker: 1 + 1 rounds == 2 rounds, bitwise") {
  const auto dir = scratch("spo_ddpo");
  const auto m1 = check_exact_resume(
      base, dir,
      [&](Policy& p) {
        return make(p, loss::DdpoLossOptions{1e-4, 5.0});
      },
      [](const Training& c) { CHECK(!c.tracker().buffers().empty()); },
      [](const Training& a, const Training& c) { CHECK(c.tracker().buffers() == a.tracker().buffers()); });
  CHECK(m1.metrics["samples"] == 6);
  CHECK(m1.metrics["train_timesteps"] == 2);
  fs::remove_all(dir);
}

TEST_CASE_FIXTURE(Setup,
                  "DDPO: a non-finite log-probability stops before the update and leaves the checkpoint intact") {
  const auto dir = scratch("spo_ddpo");
  auto p = tiny_policy(base);
  auto t = make(p, loss::DdpoLossOptions{1e-4, 5.0});
  t.run_round();
  check_non_finite_stop(t, p, dir, [&] {
    auto [traj, rewards] = t.sample_round();
    traj.x[3][64 * 1 + 9] = std::nanf("");
    const std::vector<std::int64_t> rows{0, 1};
    const std::vector<std::vector<std::int64_t>> steps{{0, 1}, {1, 2}};
    const std::vector<double> adv(6, 1.0);
    t.train_minibatch(traj, rows, steps, adv);
  });
  fs::remove_all(dir);
}

TEST_CASE("DDPO config: the committed config is valid; unknown keys and bad values are errors") {
  const std::string file = "configs/baselines/ddpo.json";
  auto load = [&] { return load_source_config<experiment::DdpoConfig>(file); };
  CHECK_NOTHROW(experiment::validate(load()));
  auto c = load();
  c.loss.clip_range = 0;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("clip_range"), spo::error);
  c = load();
  c.stat_tracker.min_count = 100;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("min_count"), spo::error);
  c = load();
  c.train.inner_epochs = 0;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("inner_epochs"), spo::error);
  auto j = io::parse_json(io::read_file_text(in_source(file)), "ddpo.json");
  j["stat_tracker"]["size"] = 4;
  CHECK_THROWS_WITH_AS(io::from_json<experiment::DdpoConfig>(j, "ddpo.json"), doctest::Contains("stat_tracker.size"),
                       spo::error);
  j = io::parse_json(io::read_file_text(in_source(file)), "ddpo.json");
  j.erase("stat_tracker");
  CHECK_THROWS_AS(io::from_json<experiment::DdpoConfig>(j, "ddpo.json"), spo::error);
}
