// SPDX-License-Identifier: MIT
// Compute accounting: the layers' operation counts, one round of every method against a hand count of its UNet and
// preference-model rows and of its UNet forward-equivalents, the budget stop and its exact resume, and the compute
// records that artifacts carry (round trip, foreign units and incomplete chains are errors).
#include "spo/train/compute_budget.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/experiment/baseline_experiment.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/linear.hpp"

#include "support/train_fixtures.hpp"

using namespace spo;
using namespace spo::test_support;
namespace fs = std::filesystem;

namespace {

/// BrightnessPM as a network: each scored row costs 100 operations of the "preference_model".
struct MeteredBrightnessPM {
  using scalar_type = float;
  static constexpr std::string_view name = "metered_brightness";
  std::vector<double> score(const Tensor<float>& x0, std::span<const std::int64_t>, std::span<const std::string>) {
    const nn::NetworkScope net("preference_model", nn::Pass::forward, x0.size(0));
    nn::count_flops(nn::Pass::forward, 100.0 * static_cast<double>(x0.size(0)));
    return brightness(x0);
  }
};

/// Operations per row of the tiny models: the unit (a base UNet forward), a policy forward and a policy backward.
struct RowCosts {
  double base_fwd = 0, policy_fwd = 0, policy_bwd = 0;
};

RowCosts row_costs(Base& base) {
  RowCosts c;
  c.base_fwd = train::unet_row_flops(base, 1, 8);
  auto p = tiny_policy(base);
  nn::ComputeMeter m;
  {
    const nn::MeterScope scope(m);
    const std::vector<std::string> prompt{"a dress"};
    const auto y = p.forward(Tensor<float>(Shape{1, 1, 8, 8}), Tensor<float>(Shape{1}), prompt);  // [1, 1, 8, 8]
    p.backward(Tensor<float>(y.shape()), false);
  }
  const auto u = m.at("unet");
  REQUIRE(u.forward_rows == 1);
  REQUIRE(u.backward_rows == 1);
  c.policy_fwd = u.forward_flops;
  c.policy_bwd = u.backward_flops;
  return c;
}

/// The hand count of one round: rows of the reference and of the policy through the UNet, the preference model's rows
/// and the rater's queries.
struct HandCount {
  std::int64_t reference_fwd = 0, policy_fwd = 0, policy_bwd = 0, pm_rows = 0, rater = 0;

  double forward_equivalents(const RowCosts& c) const {
    return (static_cast<double>(reference_fwd) * c.base_fwd + static_cast<double>(policy_fwd) * c.policy_fwd +
            static_cast<double>(policy_bwd) * c.policy_bwd + 100.0 * static_cast<double>(pm_rows)) /
           c.base_fwd;
  }
};

/// Runs one round of `t` under a meter and checks it against `hand`.
template <class Training>
void check_round(Training& t, Base& base, const auto& hand_of) {
  const RowCosts c = row_costs(base);
  nn::ComputeMeter m;
  train::RoundRecord rec;
  {
    const nn::MeterScope scope(m);
    rec = t.run_round();
  }
  const HandCount hand = hand_of(rec);
  const auto unet = m.at("unet");
  CHECK(unet.forward_rows == hand.reference_fwd + hand.policy_fwd);
  CHECK(unet.backward_rows == hand.policy_bwd);
  CHECK(m.at("preference_model").forward_rows == hand.pm_rows);
  CHECK(train::rater_queries(m) == hand.rater);
  const double fe = train::forward_equivalents(m, c.base_fwd);
  CHECK(fe == doctest::Approx(hand.forward_equivalents(c)).epsilon(1e-9));
  // The LoRA policy costs a little more than the base model per row, and its backward (input gradients of every
  // frozen layer plus the adapters' weight gradients) about as much as a forward.
  CHECK(c.policy_fwd > c.base_fwd);
  CHECK(c.policy_fwd < 1.1 * c.base_fwd);
  CHECK(c.policy_bwd > c.base_fwd);
  CHECK(c.policy_bwd < 1.5 * c.base_fwd);
  MESSAGE("round: " << fe << " UNet forward-equivalents; policy row " << c.policy_fwd / c.base_fwd << " fe forward, "
                    << c.policy_bwd / c.base_fwd << " fe backward");
}

}  // namespace

TEST_CASE("compute meter: linear and convolution count 2 m n k per pass, frozen weights skip their gradient") {
  Generator g{1, 0};
  nn::Linear<float> lin(6, 4, true);
  lin.reset_parameters(g);
  nn::Conv2d<float> conv(2, 3, nn::Conv2dOptions{{3, 3}, {1, 1}, {1, 1}, true, {0, 0}});
  conv.reset_parameters(g);
  nn::ComputeMeter m;
  {
    const nn::MeterScope scope(m);
    const nn::NetworkScope net("net", nn::Pass::forward, 5);
    const auto y = lin.forward(randn<float>(Shape{5, 6}, g));  // [5, 4]
    lin.backward(y);
    const auto z = conv.forward(randn<float>(Shape{5, 2, 4, 4}, g));  // [5, 3, 4, 4]
    conv.backward(z);
  }
  const double lin_f = 2.0 * 5 * 4 * 6, conv_f = 2.0 * 5 * 3 * 4 * 4 * 2 * 3 * 3;
  CHECK(m.at("net").forward_rows == 5);
  CHECK(m.at("net").forward_flops == lin_f + conv_f);
  CHECK(m.at("net").backward_flops == 2 * lin_f + 2 * conv_f);  // trainable: input and weight gradients
  nn::set_trainable(lin, false);
  nn::ComputeMeter frozen;
  {
    const nn::MeterScope scope(frozen);
    lin.backward(lin.forward(randn<float>(Shape{5, 6}, g)));
  }
  CHECK(frozen.at("other").forward_flops == lin_f);  // outside any network
  CHECK(frozen.at("other").backward_flops == lin_f);
  // Nothing is counted without an active meter, and a paused meter counts nothing.
  lin.forward(randn<float>(Shape{5, 6}, g));
  {
    const nn::MeterScope scope(frozen);
    const nn::MeterPause pause;
    lin.forward(randn<float>(Shape{5, 6}, g));
  }
  CHECK(frozen.at("other").forward_flops == lin_f);
}

TEST_CASE("compute: one SPO round against the hand count") {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();  // N = 4 steps
  MeteredBrightnessPM pm;
  const resampler::ResamplerOptions rs{3, 1, 0.0, 2.0, 1.0, 0, 1000};    // k = 3, divert at step 1
  const train::SpoTrainSection tr{2, 3, {0, 1}, 4, 1e-2, 1e-4, 1.0, 1};  // B = 3 prompts, minibatches of 4
  auto p = tiny_policy(base);
  train::SpoTraining<Policy, Base, Scheduler, MeteredBrightnessPM, preference::BestWorstCompare, resampler::RandomChild>
      t(p, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, 7, nlohmann::json::object());
  check_round(t, base, [](const train::RoundRecord& rec) {
    const std::int64_t b = 3, k = 3, n = 4, d = 1, items = rec.metrics.at("items").get<std::int64_t>();
    CHECK(items > 0);
    HandCount h;
    // Sampling (guided: 2 rows per image): d steps and the divert step on B parents, then the k B children of the
    // levels before the last; the preference model scores the k B children of every level after the divert step.
    h.policy_fwd = 2 * b * (d + 1) + 2 * k * b * (n - 1 - d);
    h.pm_rows = k * b * (n - d);
    // Training: per item a guided reference pass and a guided policy pass with its backward.
    h.reference_fwd = 2 * items;
    h.policy_fwd += 2 * items;
    h.policy_bwd = 2 * items;
    return h;
  });
}

TEST_CASE("compute: one Diffusion-DPO round against the hand count") {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  const train::DiffusionDpoTrainSection tr{2, 2, 3, 1e-2, 1e-4, 1.0, 1};  // 2 steps of 3 pairs
  Generator g{5, 0};
  train::WinLosePairs<float> pairs{
      randn<float>(Shape{6, 1, 8, 8}, g, 0.3f), randn<float>(Shape{6, 1, 8, 8}, g, 0.3f), {}, 0};
  pairs.prompts = {"a dress", "a bag", "a sneaker", "a shirt", "a coat", "a sandal"};
  auto p = tiny_policy(base);
  train::DiffusionDpoTraining<Policy, Base, Scheduler> t(
      p, base, ddim, std::move(pairs), loss::DiffusionDpoOptions{5000.0}, tr, 7, nlohmann::json::object());
  check_round(t, base, [](const train::RoundRecord&) {
    HandCount h;  // per step: winners and losers (2 x 3 rows, no guidance) through reference and policy
    h.reference_fwd = 2 * 6;
    h.policy_fwd = 2 * 6;
    h.policy_bwd = 2 * 6;
    return h;
  });
}

TEST_CASE("compute: one D3PO round against the hand count") {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  BrightnessRater rater;
  const train::D3poTrainSection tr{2, 3, {0, 1}, 2, 0.5, 1e-2, 1e-4, 1.0, 1};  // P = 3, J = 2 of N = 4
  auto p = tiny_policy(base);
  train::D3poTraining<Policy, Base, Scheduler, BrightnessRater> t(
      p, base, ddim, rater, train::TrajectorySection{2.0, 1.0}, loss::D3poLossOptions{10.0, 0.1}, tr, 1, 8, 7,
      nlohmann::json::object());
  check_round(t, base, [](const train::RoundRecord&) {
    const std::int64_t prompts = 3, n = 4, j = 2;
    HandCount h;
    h.policy_fwd = 2 * prompts * n * 2;     // two guided trajectories per prompt
    h.reference_fwd = prompts * j * 2 * 2;  // J steps of both samples of every pair, guided
    h.policy_fwd += prompts * j * 2 * 2;
    h.policy_bwd = prompts * j * 2 * 2;
    h.rater = 0;  // BrightnessRater is no network: its queries are not metered here
    return h;
  });
}

TEST_CASE("compute: one DDPO round against the hand count") {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  BrightnessRater rater;
  const train::DdpoTrainSection tr{2, 3, 2, {0}, 4, 2, 0.5, 1e-2, 1e-4, 1.0, 1};  // 3 x 2 trajectories, 2 epochs
  auto p = tiny_policy(base);
  train::DdpoTraining<Policy, Scheduler, BrightnessRater> t(
      p, ddim, rater, train::TrajectorySection{2.0, 1.0}, loss::DdpoLossOptions{1e-4, 5.0},
      loss::StatTrackerOptions{16, 2}, tr, 1, 8, 7, nlohmann::json::object());
  check_round(t, base, [](const train::RoundRecord&) {
    const std::int64_t b = 6, n = 4, j = 2, epochs = 2;
    HandCount h;
    h.policy_fwd = b * n * 2 + epochs * b * j * 2;  // sampling, then J guided steps per trajectory and epoch
    h.policy_bwd = epochs * b * j * 2;
    return h;
  });
}

TEST_CASE("compute: the oracle rater's rows are queries, not charged compute") {
  nn::ComputeMeter m;
  m["unet"].forward_flops = 300;
  m["rater"].forward_flops = 1e9;
  m["rater"].forward_rows = 7;
  m["preference_model"].forward_flops = 50;
  CHECK(train::forward_equivalents(m, 100) == doctest::Approx(3.5));
  CHECK(train::rater_queries(m) == 7);
}

TEST_CASE("compute budget: the run stops after the round that reaches it, logs fe and CPU time, and resumes exactly") {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  const train::DiffusionDpoTrainSection tr{10, 2, 3, 1e-2, 1e-4, 1.0, 1};
  auto pairs = [] {
    Generator g{5, 0};
    train::WinLosePairs<float> w{
        randn<float>(Shape{6, 1, 8, 8}, g, 0.3f), randn<float>(Shape{6, 1, 8, 8}, g, 0.3f), {}, 0};
    w.prompts = {"a dress", "a bag", "a sneaker", "a shirt", "a coat", "a sandal"};
    return w;
  };
  using Training = train::DiffusionDpoTraining<Policy, Base, Scheduler>;
  auto make = [&](Policy& p) {
    return Training(p, base, ddim, pairs(), loss::DiffusionDpoOptions{5000.0}, tr, 7, nlohmann::json::object());
  };
  const RowCosts c = row_costs(base);
  const double per_round = (12 * c.base_fwd + 12 * c.policy_fwd + 12 * c.policy_bwd) / c.base_fwd;
  const double charged = 40.0, budget = charged + 2.5 * per_round;  // reached in round 3
  const auto dir = scratch("compute_budget");
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");

  auto pa = tiny_policy(base);
  auto a = make(pa);
  a.set_compute(c.base_fwd, charged, 5, budget);
  a.run(dir / "a");
  CHECK(a.round() == 3);
  CHECK(a.budget_spent());
  CHECK(a.forward_equivalents() == doctest::Approx(charged + 3 * per_round).epsilon(1e-9));
  CHECK(a.rater_queries() == 5);
  std::ifstream log(dir / "a" / "metrics.jsonl");
  std::string line, last;
  while (std::getline(log, line)) last = line;
  const auto rec = nlohmann::json::parse(last);
  CHECK(rec.at("step") == 3);
  CHECK(rec.at("fe").get<double>() == doctest::Approx(a.forward_equivalents()));
  CHECK(rec.at("fe_round").get<double>() == doctest::Approx(per_round).epsilon(1e-9));
  CHECK(rec.at("flops_round").at("unet").get<double>() > 0);
  CHECK(rec.at("cpu_s").get<double>() == a.cpu_s());
  CHECK(a.cpu_s() > 0);

  // 1 round, checkpoint, resume: the same compute and the same weights after the budget stops it.
  auto pb = tiny_policy(base);
  double cpu_b = 0, wall_b = 0;
  {
    auto b = make(pb);
    b.set_compute(c.base_fwd, charged, 5, charged + 0.5 * per_round);  // stops after round 1
    b.run(dir / "b");
    CHECK(b.round() == 1);
    cpu_b = b.cpu_s();
    wall_b = b.wall_s();
  }
  auto pc = tiny_policy(base);
  auto r = make(pc);
  r.set_compute(c.base_fwd, charged, 5, budget);
  r.resume(dir / "b" / "checkpoint.safetensors");
  CHECK(r.forward_equivalents() == doctest::Approx(charged + per_round).epsilon(1e-12));
  CHECK(r.cpu_s() == cpu_b);  // the time already spent carries over
  CHECK(r.wall_s() == wall_b);
  r.run(dir / "b");
  CHECK(r.cpu_s() > cpu_b);
  CHECK(r.round() == 3);
  CHECK(r.forward_equivalents() == a.forward_equivalents());
  CHECK(lora_weights(pc) == lora_weights(pa));
  CHECK(r.compute() == a.compute());
  fs::remove_all(dir);
}

TEST_CASE("compute records: round trip, foreign units and incomplete chains are errors naming the file") {
  const auto dir = scratch("compute_records");
  train::ComputeRecord pairs;
  pairs.what = "make_pairs";
  pairs.unit_flops = 1000;
  pairs.own["unet"] = nn::NetworkCompute{40, 0, 40000, 0};
  pairs.own["rater"] = nn::NetworkCompute{20, 0, 5e6, 0};
  fs::create_directories(dir / "pairs");
  train::save_compute_record(dir / "pairs", pairs);

  train::ComputeRecord spm;
  spm.what = "train_spm";
  spm.unit_flops = 1000;
  spm.own["unet"] = nn::NetworkCompute{10, 0, 10000, 0};
  spm.own["preference_model"] = nn::NetworkCompute{20, 20, 2000, 4000};
  train::add_input_record(spm, "pairs", dir / "pairs" / "train.safetensors");
  fs::create_directories(dir / "spm");
  train::save_compute_record(dir / "spm", spm);

  const auto loaded = train::load_compute_record(dir / "spm" / "preference_model.safetensors", 1000);
  CHECK(loaded.own == spm.own);
  CHECK(loaded.own_forward_equivalents() == doctest::Approx(16.0));
  CHECK(loaded.forward_equivalents() == doctest::Approx(56.0));  // its own 16 and its pairs' 40
  CHECK(loaded.rater_queries() == 20);

  // A step-aware model initialised from a clean model trained on the same pairs: the pairs are charged once.
  train::ComputeRecord clean;
  clean.what = "train_pm_clean";
  clean.unit_flops = 1000;
  clean.own["preference_model"] = nn::NetworkCompute{64, 64, 3000, 5000};
  train::add_input_record(clean, "pairs", dir / "pairs" / "train.safetensors");
  fs::create_directories(dir / "clean");
  train::save_compute_record(dir / "clean", clean);
  train::ComputeRecord diamond = spm;
  diamond.inputs.clear();
  train::add_input_record(diamond, "pairs", dir / "pairs" / "train.safetensors");
  train::add_input_record(diamond, "init_from", dir / "clean" / "preference_model.safetensors");
  CHECK(diamond.chain().size() == 3);
  CHECK(diamond.forward_equivalents() == doctest::Approx(16.0 + 8.0 + 40.0));  // own, the clean model's, the pairs'
  CHECK(diamond.rater_queries() == 20);

  CHECK_THROWS_WITH_AS(train::load_compute_record(dir / "spm" / "x.safetensors", 999),
                       doctest::Contains("another model"), spo::input_error);
  CHECK_THROWS_WITH_AS(train::load_compute_record(dir / "none" / "x.safetensors", 1000),
                       doctest::Contains("no compute record"), spo::input_error);
  train::ComputeRecord orphan = spm;
  orphan.inputs.clear();
  train::add_input_record(orphan, "init_from", dir / "nowhere" / "preference_model.safetensors");
  CHECK(orphan.missing_inputs.size() == 1);
  fs::create_directories(dir / "orphan");
  train::save_compute_record(dir / "orphan", orphan);
  CHECK_THROWS_WITH_AS(train::load_compute_record(dir / "orphan" / "preference_model.safetensors", 1000),
                       doctest::Contains("incomplete"), spo::input_error);
  { std::ofstream(dir / "orphan" / "compute.json") << "{\"what\": 1"; }
  CHECK_THROWS_WITH_AS(train::load_compute_record(dir / "orphan" / "preference_model.safetensors", 1000),
                       doctest::Contains("malformed"), spo::input_error);
  fs::remove_all(dir);
}

TEST_CASE("budget section: bad values are config errors naming the key") {
  CHECK_NOTHROW(train::validate(train::BudgetSection{1000, true, 100, {500}}));
  CHECK_THROWS_WITH_AS(train::validate(train::BudgetSection{0, true, 100, {}}),
                       doctest::Contains("budget.forward_equivalents"), spo::config_error);
  CHECK_THROWS_WITH_AS(train::validate(train::BudgetSection{1000, true, -1, {}}),
                       doctest::Contains("budget.progress_every"), spo::config_error);
  CHECK_THROWS_WITH_AS(train::validate(train::BudgetSection{1000, true, 0, {2000}}),
                       doctest::Contains("budget.snapshots[0]"), spo::config_error);
  CHECK(train::crossed_multiple(90, 110, 100));
  CHECK_FALSE(train::crossed_multiple(110, 190, 100));
  CHECK_FALSE(train::crossed_multiple(110, 190, 0));
}
