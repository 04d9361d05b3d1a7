// SPDX-License-Identifier: MIT
// D3PO training: log 2 at policy == reference and a first step that lowers the loss of its minibatch, trajectories
// consistent with their log-probs, exact resume (1 + 1 rounds == 2 rounds), a NaN stops before the update, configs.
#include <cmath>
#include <filesystem>

#include <doctest/doctest.h>

#include "spo/experiment/baseline_experiment.hpp"

#include "support/train_fixtures.hpp"

using namespace spo;
using namespace spo::test_support;
namespace fs = std::filesystem;

namespace {
using Training = train::D3poTraining<Policy, Base, Scheduler, BrightnessRater>;
const train::TrajectorySection sampling{2.0, 1.0};
const loss::D3poLossOptions loss_opts{10.0, 0.1};
const train::D3poTrainSection tr{2, 3, {0, 1}, 2, 0.5, 1e-2, 1e-4, 1.0, 1};

/// What every case starts from: the tiny base model, scheduler and rater; make(policy) builds the trainer.
struct Setup {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  BrightnessRater rater;
  Training make(Policy& p) {
    return Training(p, base, ddim, rater, sampling, loss_opts, tr, 1, 8, 7, nlohmann::json::object());
  }
};
}  // namespace

TEST_CASE_FIXTURE(Setup, "D3PO: trajectories step with the stated noise and log-probs; pairs share a prompt") {
  auto p = tiny_policy(base);
  auto t = make(p);
  auto [traj, scores] = t.sample_pairs();
  REQUIRE(traj.size() == 6);
  REQUIRE(traj.steps() == 4);
  CHECK(traj.x.size() == 5);
  CHECK(traj.t == std::vector<std::int64_t>{751, 501, 251, 1});
  for (std::int64_t k = 0; k < 3; ++k)
    CHECK(traj.prompts[static_cast<std::size_t>(k)] == traj.prompts[static_cast<std::size_t>(k + 3)]);
  CHECK(scores.size() == 6);
  // Each stored log-prob is the Gaussian density of the next level under the step's mean and std, averaged over
  // elements (independent recomputation: log N(x; mu, std^2) with mu from one guided pass of the policy).
  nn::no_grad_guard ng;
  const auto cond = p.encode(traj.prompts), uncond = p.encode(std::vector<std::string>(6));
  for (std::size_t j = 0; j < 4; ++j) {
    const std::vector<std::int64_t> ts(6, traj.t[j]);
    auto u = p.guided(traj.x[j], static_cast<double>(traj.t[j]), cond, uncond, 2.0);
    const auto trn = ddim.transitions(ts, 1.0);
    const auto mu = ddim.mean(ddim.predict(u, traj.x[j], ts), trn);
    const double sd = trn[0].std;
    for (std::int64_t b = 0; b < 6; ++b) {
      double acc = 0;
      for (std::int64_t i = b * 64; i < (b + 1) * 64; ++i) {
        const double z = (traj.x[j + 1][i] - mu[i]) / sd;
        acc += -0.5 * z * z - std::log(sd) - 0.5 * std::log(2 * M_PI);
      }
      CHECK(traj.logp[j][static_cast<std::size_t>(b)] == doctest::Approx(acc / 64).epsilon(1e-5));
    }
  }
}

TEST_CASE_FIXTURE(Setup, "D3PO: loss log 2 at policy == reference, and one step lowers the loss of its minibatch") {
  auto p = tiny_policy(base);
  auto t = make(p);
  auto [traj, scores] = t.sample_pairs();
  const std::span<const double> sc(scores);
  const auto signs = loss::d3po_signs(sc.first(3), sc.last(3));
  for (double h : signs.h0) REQUIRE(h != 0);
  const std::vector<std::int64_t> pairs{0, 1, 2};
  const std::vector<std::vector<std::int64_t>> steps{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}};
  const auto r0 = t.train_minibatch(traj, pairs, steps, signs.h0, signs.h1);
  CHECK(r0.loss == doctest::Approx(std::log(2.0)).epsilon(1e-5));
  CHECK(r0.ratio_0 == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(r0.grad_norm > 0);
  const auto r1 = t.train_minibatch(traj, pairs, steps, signs.h0, signs.h1);
  MESSAGE("loss after one step: " << r1.loss);
  CHECK(r1.loss < std::log(2.0) - 1e-5);
  // Swapping the preference makes the same policy's loss larger than log 2.
  const auto r2 = t.train_minibatch(traj, pairs, steps, signs.h1, signs.h0);
  CHECK(r2.loss > std::log(2.0));
}

TEST_CASE_FIXTURE(Setup, "D3PO training resumes exactly: 1 + 1 rounds == 2 rounds, bitwise") {
  const auto dir = scratch("spo_d3po");
  const auto m1 = check_exact_resume(base, dir, [&](Policy& p) { return make(p); });
  CHECK(m1.metrics["pairs"] == 3);
  CHECK(m1.metrics["train_timesteps"] == 2);
  fs::remove_all(dir);
}

TEST_CASE_FIXTURE(Setup,
                  "D3PO: a non-finite log-probability stops before the update and leaves the checkpoint intact") {
  const auto dir = scratch("spo_d3po");
  auto p = tiny_policy(base);
  auto t = make(p);
  t.run_round();
  check_non_finite_stop(t, p, dir, [&] {
    auto [traj, scores] = t.sample_pairs();
    traj.x[2][64 * 4 + 5] = std::nanf("");  // row 4 = sample 1 of pair 1, level 2
    const std::vector<std::int64_t> pairs{0, 1};
    const std::vector<std::vector<std::int64_t>> steps{{0, 2}, {0, 1}};
    const std::vector<double> h0{1, -1}, h1{-1, 1};
    t.train_minibatch(traj, pairs, steps, h0, h1);
  });
  fs::remove_all(dir);
}

TEST_CASE("D3PO config: the committed config is valid; unknown keys and bad values are errors") {
  const std::string file = "configs/baselines/d3po.json";
  auto load = [&] { return load_source_config<experiment::D3poConfig>(file); };
  CHECK_NOTHROW(experiment::validate(load()));
  auto c = load();
  c.loss.clip_eps = 0;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("clip_eps"), spo::error);
  c = load();
  c.sampling.eta = 0;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("eta"), spo::error);
  c = load();
  c.train.timestep_fraction = 1.5;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("timestep_fraction"), spo::error);
  c = load();
  c.train.templates = {4};
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("held out"), spo::error);
  auto j = io::parse_json(io::read_file_text(in_source(file)), "d3po.json");
  j["sampling"]["guidance"] = 4;
  CHECK_THROWS_WITH_AS(io::from_json<experiment::D3poConfig>(j, "d3po.json"), doctest::Contains("sampling.guidance"),
                       spo::error);
  j = io::parse_json(io::read_file_text(in_source(file)), "d3po.json");
  j["train"].erase("prompts_per_round");
  CHECK_THROWS_AS(io::from_json<experiment::D3poConfig>(j, "d3po.json"), spo::error);
}
