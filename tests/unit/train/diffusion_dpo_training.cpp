// SPDX-License-Identifier: MIT
// Diffusion-DPO training: log 2 at policy == reference and a first step that lowers the loss on its own batch,
// exact resume (1 + 1 rounds == 2 rounds), a NaN stops before the update, ties dropped, configs checked first.
#include <cmath>
#include <filesystem>

#include <doctest/doctest.h>

#include "spo/experiment/baseline_experiment.hpp"

#include "support/train_fixtures.hpp"

using namespace spo;
using namespace spo::test_support;
namespace fs = std::filesystem;
using Training = train::DiffusionDpoTraining<Policy, Base, Scheduler>;

namespace {
/// Six pairs of 8x8 images: the winners are bright, the losers dark, plus noise.
train::WinLosePairs<float> tiny_pairs() {
  Generator g{5, 0};
  train::WinLosePairs<float> p{
      randn<float>(Shape{6, 1, 8, 8}, g, 0.3f), randn<float>(Shape{6, 1, 8, 8}, g, 0.3f), {}, 0};
  for (std::int64_t i = 0; i < p.x_win.numel(); ++i) {
    p.x_win[i] += 0.5f;
    p.x_lose[i] -= 0.5f;
  }
  p.prompts = {"a dress", "a bag", "a sneaker", "a shirt", "a coat", "a sandal"};
  return p;
}

const train::DiffusionDpoTrainSection tr{2, 2, 3, 1e-2, 1e-4, 1.0, 1};
const loss::DiffusionDpoOptions beta{5000.0};

/// What every training case starts from: the tiny base model and scheduler; make(policy, pairs) builds the trainer.
struct Setup {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  Training make(Policy& p, train::WinLosePairs<float> pairs = tiny_pairs()) {
    return Training(p, base, ddim, std::move(pairs), beta, tr, 7, nlohmann::json::object());
  }
};
}  // namespace

TEST_CASE_FIXTURE(Setup,
                  "Diffusion-DPO: loss log 2 at policy == reference, and the first step lowers the loss of its batch") {
  auto p = tiny_policy(base);
  auto t = make(p);
  const std::vector<std::int64_t> idx{0, 1, 2, 3};
  const Generator before = t.generator();
  double norm = 0;
  const auto r0 = t.train_minibatch(idx, norm);
  CHECK(r0.loss == doctest::Approx(std::log(2.0)).epsilon(1e-6));
  CHECK(r0.implicit_accuracy == 0.5);  // inside == 0 for every pair counts half
  CHECK(r0.model_error_mean == doctest::Approx(r0.ref_error_mean).epsilon(1e-6));
  CHECK(norm > 0);
  // The same (t, eps) again: the loss after one step is below log 2 (the policy moved towards the winners).
  t.generator() = before;
  const auto r1 = t.train_minibatch(idx, norm);
  MESSAGE("loss after one step: " << r1.loss);
  CHECK(r1.loss < std::log(2.0) - 1e-4);
}

TEST_CASE("Diffusion-DPO: ties are dropped and the label picks the winner") {
  preference::PreferencePairs pp;
  pp.split = "train";
  pp.images_a = Tensor<float, cpu>(Shape{3, 1, 2, 2}, std::vector<float>{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  pp.images_b =
      Tensor<float, cpu>(Shape{3, 1, 2, 2}, std::vector<float>{-1, -1, -1, -1, -2, -2, -2, -2, -3, -3, -3, -3});
  pp.label = {0, 1, 2};
  pp.template_index = {0, 0, 0};
  pp.seed = {1, 1, 1};
  pp.reward_a = {1, 0, 0};
  pp.reward_b = {0, 0, 1};
  pp.labels = {preference::label_a, preference::label_tie, preference::label_b};
  const auto w = train::win_lose_pairs<float>(pp);
  REQUIRE(w.size() == 2);
  CHECK(w.ties_dropped == 1);
  CHECK(w.x_win[0] == 1.0f);  // pair 0: a preferred
  CHECK(w.x_lose[0] == -1.0f);
  CHECK(w.x_win[4] == -3.0f);  // pair 2: b preferred
  CHECK(w.x_lose[4] == 3.0f);
  CHECK(w.prompts[1] == pp.prompt(2));
}

TEST_CASE_FIXTURE(Setup, "Diffusion-DPO: every epoch visits each pair once") {
  auto p = tiny_policy(base);
  auto t = make(p);
  std::vector<int> seen(6, 0);
  for (std::int64_t s = 0; s < 4; ++s)  // 4 steps x 3 pairs = 2 epochs of 6
    for (auto i : t.batch_indices(s)) ++seen[static_cast<std::size_t>(i)];
  for (int c : seen) CHECK(c == 2);
}

TEST_CASE_FIXTURE(Setup, "Diffusion-DPO training resumes exactly: 1 + 1 rounds == 2 rounds, bitwise") {
  const auto dir = scratch("spo_dpo");
  check_exact_resume(base, dir, [&](Policy& p) { return make(p); });
  fs::remove_all(dir);
}

TEST_CASE_FIXTURE(Setup, "Diffusion-DPO: a non-finite error stops before the update and leaves the checkpoint intact") {
  const auto dir = scratch("spo_dpo");
  auto p = tiny_policy(base);
  auto pairs = tiny_pairs();
  pairs.x_lose[70] = std::nanf("");  // pair 1
  auto t = make(p, std::move(pairs));
  const std::vector<std::int64_t> ok{0, 2}, bad{0, 1};
  double norm = 0;
  t.train_minibatch(ok, norm);
  check_non_finite_stop(t, p, dir, [&] { t.train_minibatch(bad, norm); });
  fs::remove_all(dir);
}

TEST_CASE("Diffusion-DPO config: the committed config is valid; unknown keys and bad values are errors") {
  const std::string file = "configs/baselines/diffusion_dpo.json";
  auto load = [&] {
    auto c = load_source_config<experiment::DiffusionDpoConfig>(file);
    c.pairs = in_source(c.pairs);
    return c;
  };
  CHECK_NOTHROW(experiment::validate(load()));
  auto c = load();
  c.loss.beta = -1;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("beta"), spo::error);
  c = load();
  c.train.steps_per_round = 0;
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("steps_per_round"), spo::error);
  c = load();
  c.pairs = "no/such/pairs.safetensors";
  CHECK_THROWS_WITH_AS(experiment::validate(c), doctest::Contains("pairs: no such file: \"no/such/pairs.safetensors\""),
                       spo::error);
  auto j = io::parse_json(io::read_file_text(in_source(file)), "diffusion_dpo.json");
  j["train"]["stepz"] = 4;
  CHECK_THROWS_WITH_AS(io::from_json<experiment::DiffusionDpoConfig>(j, "diffusion_dpo.json"),
                       doctest::Contains("train.stepz"), spo::error);
  j = io::parse_json(io::read_file_text(in_source(file)), "diffusion_dpo.json");
  j["loss"].erase("beta");
  CHECK_THROWS_AS(io::from_json<experiment::DiffusionDpoConfig>(j, "diffusion_dpo.json"), spo::error);
  j = io::parse_json(io::read_file_text(in_source(file)), "diffusion_dpo.json");
  j["train"]["batch_size"] = "ten";
  CHECK_THROWS_AS(io::from_json<experiment::DiffusionDpoConfig>(j, "diffusion_dpo.json"), spo::error);
}
