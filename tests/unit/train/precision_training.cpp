// SPDX-License-Identifier: MIT
// The round trainers under a precision policy: with fp16's loss scaling on a float model and a power-of-two scale
// that never overflows, every method (SPO, Diffusion-DPO, D3PO, DDPO) updates bitwise as under fp32, because each
// seeds its backward with the scale and the update unscales exactly; a scale that overflows the seed skips the update
// without touching weights or optimizer and backs the scale off; the run logs skipped steps and the scale; a resumed
// run restores the scaler; a checkpoint of another precision is refused. model::Autocast (a network in one scalar
// behind inputs and outputs in another; here a double network behind float, where the CPU has kernels) matches the
// float network to float rounding in every pass and trains SPO like it.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/experiment/baseline_experiment.hpp"
#include "spo/model/autocast.hpp"

#include "support/train_fixtures.hpp"

using namespace spo;
using namespace spo::test_support;
namespace fs = std::filesystem;

namespace {

/// 2^10, grown to 2^11 after every 2 finite steps: exact scaling that a run changes, far from float's limits.
const optim::LossScaleOptions moderate{1024.0, 2.0, 0.5, 2};

const resampler::ResamplerOptions spo_resampler{3, 1, 0.0, 2.0, 1.0, 0, 1000};
const train::SpoTrainSection spo_train{2, 3, {0, 1}, 4, 1e-2, 1e-4, 1.0, 1};
const train::TrajectorySection sampling{2.0, 1.0};
const train::D3poTrainSection d3po_train{2, 3, {0, 1}, 2, 0.5, 1e-2, 1e-4, 1.0, 1};
const train::DdpoTrainSection ddpo_train{2, 3, 2, {0}, 4, 2, 0.5, 1e-2, 1e-4, 1.0, 1};
const train::DiffusionDpoTrainSection dpo_train{2, 2, 3, 1e-2, 1e-4, 1.0, 1};

template <class P>
using Spo = train::SpoTraining<Policy, Base, Scheduler, BrightnessPM, preference::BestWorstCompare,
                               resampler::RandomChild, loss::SpoLoss, P>;
template <class P>
using DiffusionDpo = train::DiffusionDpoTraining<Policy, Base, Scheduler, P>;
template <class P>
using D3po = train::D3poTraining<Policy, Base, Scheduler, BrightnessRater, P>;
template <class P>
using Ddpo = train::DdpoTraining<Policy, Scheduler, BrightnessRater, P>;

/// Six random 8x8 pairs with prompts (the offline data of Diffusion-DPO).
train::WinLosePairs<float> random_pairs() {
  Generator g{9, 0};
  train::WinLosePairs<float> p{randn<float>(Shape{6, 1, 8, 8}, g), randn<float>(Shape{6, 1, 8, 8}, g), {}, 0};
  p.prompts = {"a dress", "a bag", "a sneaker", "a shirt", "a coat", "a sandal"};
  return p;
}

/// The tiny models and the trainers of every method under precision P.
struct Setup {
  Base base = tiny_base();
  const Scheduler ddim = tiny_scheduler();
  BrightnessPM pm;
  BrightnessRater rater;

  template <class P>
  Spo<P> spo(Policy& p) {
    return Spo<P>(p, base, ddim, pm, spo_resampler, loss::SpoLossOptions{10.0, 0.1}, spo_train, 8, 7,
                  nlohmann::json::object());
  }
  template <class P>
  DiffusionDpo<P> diffusion_dpo(Policy& p) {
    return DiffusionDpo<P>(p, base, ddim, random_pairs(), loss::DiffusionDpoOptions{5000.0}, dpo_train, 7,
                           nlohmann::json::object());
  }
  template <class P>
  D3po<P> d3po(Policy& p) {
    return D3po<P>(p, base, ddim, rater, sampling, loss::D3poLossOptions{10.0, 0.1}, d3po_train, 1, 8, 7,
                   nlohmann::json::object());
  }
  template <class P>
  Ddpo<P> ddpo(Policy& p) {
    return Ddpo<P>(p, ddim, rater, sampling, loss::DdpoLossOptions{0.2, 5.0}, loss::StatTrackerOptions{16, 2},
                   ddpo_train, 1, 8, 7, nlohmann::json::object());
  }
};

/// Two rounds of the fp32 trainer and of the fp16 one (moderate scaling) on fresh policies: the LoRA weights after
/// them are bitwise equal, no step was skipped and the scale grew as the rounds' finite steps say.
template <class Fp32, class Fp16>
void check_scaled_equals_fp32(Base& base, Fp32 make32, Fp16 make16) {
  auto p32 = tiny_policy(base), p16 = tiny_policy(base);
  const auto w0 = lora_weights(p32);
  auto a = make32(p32);
  auto b = make16(p16);
  CHECK(a.loss_scale() == 1.0);
  b.set_loss_scaling(moderate);
  CHECK(b.loss_scale() == 1024.0);
  for (int r = 0; r < 2; ++r) {
    a.run_round();
    b.run_round();
  }
  CHECK(lora_weights(p32) != w0);
  CHECK(lora_weights(p16) == lora_weights(p32));
  CHECK(b.skipped_steps() == 0);
  CHECK(b.loss_scale() > 1024.0);  // at least two finite steps: grown at least once
}

std::vector<nlohmann::json> metrics_lines(const fs::path& file) {
  std::ifstream in(file);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_CASE_FIXTURE(Setup, "fp16 loss scaling on a float model: every method updates bitwise as under fp32") {
  SUBCASE("SPO") {
    check_scaled_equals_fp32(
        base, [&](Policy& p) { return spo<precision::fp32>(p); }, [&](Policy& p) { return spo<precision::fp16>(p); });
  }
  SUBCASE("Diffusion-DPO") {
    check_scaled_equals_fp32(
        base, [&](Policy& p) { return diffusion_dpo<precision::fp32>(p); },
        [&](Policy& p) { return diffusion_dpo<precision::fp16>(p); });
  }
  SUBCASE("D3PO") {
    check_scaled_equals_fp32(
        base, [&](Policy& p) { return d3po<precision::fp32>(p); }, [&](Policy& p) { return d3po<precision::fp16>(p); });
  }
  SUBCASE("DDPO") {
    check_scaled_equals_fp32(
        base, [&](Policy& p) { return ddpo<precision::fp32>(p); }, [&](Policy& p) { return ddpo<precision::fp16>(p); });
  }
}

TEST_CASE_FIXTURE(Setup, "fp16: a scale that overflows the seed skips the update, touches nothing and backs off") {
  auto p = tiny_policy(base);
  auto t = diffusion_dpo<precision::fp16>(p);
  t.set_loss_scaling({0x1p1000, 2.0, 0.5, 2000});  // any nonzero seed times 2^1000 is an infinity in float
  const auto w0 = lora_weights(p);
  const std::vector<std::int64_t> idx{0, 1, 2, 3};
  double norm = 0;
  t.train_minibatch(idx, norm);
  CHECK_FALSE(std::isfinite(norm));
  CHECK(t.skipped_steps() == 1);
  CHECK(t.loss_scale() == 0x1p999);
  CHECK(lora_weights(p) == w0);
  CHECK(t.updates() == 0);
  fs::path dir = scratch("spo_precision_skip");
  t.save(dir / "ckpt.safetensors");
  auto q = tiny_policy(base);
  auto u = diffusion_dpo<precision::fp16>(q);
  u.resume(dir / "ckpt.safetensors");
  CHECK(u.loss_scale() == 0x1p999);
  CHECK(u.skipped_steps() == 1);
  fs::remove_all(dir);
}

TEST_CASE_FIXTURE(Setup, "fp16: the run logs skipped steps and the scale; fp32 logs neither") {
  const auto dir = scratch("spo_precision_run");
  fs::create_directories(dir / "fp16");
  fs::create_directories(dir / "fp32");
  {
    auto p = tiny_policy(base);
    auto t = spo<precision::fp16>(p);
    t.set_loss_scaling({0x1p1000, 2.0, 0.5, 2000});
    t.run(dir / "fp16");
    const auto m = metrics_lines(dir / "fp16" / "metrics.jsonl");
    REQUIRE(m.size() == 2);
    std::int64_t skipped = 0;
    for (const auto& r : m) skipped += r.at("skipped_steps").get<std::int64_t>();
    CHECK(skipped == t.skipped_steps());
    CHECK(skipped > 0);
    CHECK(m.back().at("loss_scale").get<double>() == std::ldexp(1.0, 1000 - static_cast<int>(skipped)));
    CHECK(m.front().at("grad_norm").is_null());  // every update of the round skipped: no norm to average
  }
  {
    auto p = tiny_policy(base);
    auto t = spo<precision::fp32>(p);
    t.run(dir / "fp32");
    const auto m = metrics_lines(dir / "fp32" / "metrics.jsonl");
    REQUIRE(m.size() == 2);
    CHECK_FALSE(m.front().contains("skipped_steps"));
    CHECK_FALSE(m.front().contains("loss_scale"));
    CHECK(m.front().at("grad_norm").get<double>() > 0);
  }
  fs::remove_all(dir);
}

TEST_CASE_FIXTURE(Setup, "fp16 training resumes exactly with its loss scaler: 1 + 1 rounds == 2 rounds, bitwise") {
  const auto dir = scratch("spo_precision_resume");
  check_exact_resume(
      base, dir,
      [&](Policy& p) {
        auto t = d3po<precision::fp16>(p);
        t.set_loss_scaling({1024.0, 2.0, 0.5, 1});  // grows after every finite step
        return t;
      },
      [](const auto& c) { CHECK(c.loss_scale() > 1024.0); },
      [](const auto& a, const auto& c) {
        CHECK(c.loss_scale() == a.loss_scale());
        CHECK(c.skipped_steps() == a.skipped_steps());
      });
  fs::remove_all(dir);
}

TEST_CASE_FIXTURE(Setup, "a checkpoint of another precision is refused before anything changes") {
  const auto dir = scratch("spo_precision_refuse");
  auto p = tiny_policy(base);
  auto t32 = ddpo<precision::fp32>(p);
  t32.run_round();
  t32.save(dir / "fp32.safetensors");
  auto q = tiny_policy(base);
  const auto w = lora_weights(q);
  auto t16 = ddpo<precision::fp16>(q);
  CHECK_THROWS_WITH_AS(t16.resume(dir / "fp32.safetensors"),
                       doctest::Contains("trained under precision fp32, this binary trains under fp16"),
                       spo::input_error);
  CHECK(lora_weights(q) == w);
  CHECK(t16.round() == 0);
  auto r = tiny_policy(base);
  auto tb = ddpo<precision::bf16>(r);
  CHECK_THROWS_WITH_AS(tb.resume(dir / "fp32.safetensors"), doctest::Contains("precision fp32"), spo::input_error);
  fs::remove_all(dir);
}

namespace {
/// The tiny Fashion model with a double network behind float inputs and outputs (base and LoRA policy).
struct DoubleBehindFloat {
  using base_model = model::Autocast<model::FashionModel<double, cpu>, float>;
  using policy_model = model::Autocast<model::FashionModel<double, cpu, nn::LoRA<nn::Linear<double, cpu>>>, float>;
};
static_assert(diffusion::DiffusionModel<DoubleBehindFloat::policy_model>);
static_assert(std::same_as<model::autocast_t<Base>, Base>);

/// max |a - b| / max(1, max |b|).
double relative_gap(const Tensor<float>& a, const Tensor<float>& b) {
  double scale = 1;
  for (std::int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  return max_abs_diff<float>(a.view(), b.view()) / scale;
}

/// The values or gradients (field(p)) of every trainable parameter of m, as doubles in visiting order.
template <class M, class Field>
std::vector<double> trainable_doubles(M& m, Field field) {
  std::vector<double> out;
  m.visit_parameters(
      [&](std::string_view, auto& p) {
        if (!p.trainable) return;
        const auto& t = field(p);
        out.insert(out.end(), t.data(), t.data() + t.numel());
      },
      {});
  return out;
}
const auto value_of = [](auto& p) -> const auto& { return p.value; };
const auto grad_of = [](auto& p) -> const auto& { return p.grad; };

/// The float policy's and base's weights in the double ones (exact).
struct TwinPolicies {
  Base base = tiny_base();
  Policy policy = tiny_policy(base);
  DoubleBehindFloat::base_model base64 = make_twin<DoubleBehindFloat::base_model>(base);
  DoubleBehindFloat::policy_model policy64 = twin_policy();

  template <class M, class From>
  static M make_twin(From& from) {
    Generator g{0, 0};
    auto m = model::make_fashion_model<M>(tiny_unet, tiny_text, g);
    io::load_state_dict(m, io::state_dict(from));
    return m;
  }
  DoubleBehindFloat::policy_model twin_policy() {
    auto p = experiment::make_policy<DoubleBehindFloat>(tiny_unet, tiny_text, base64, train::LoraSection{2, 2.0}, 3);
    io::load_state_dict(p, io::state_dict(policy));  // the float policy's LoRA initialisation
    return p;
  }
};
}  // namespace

TEST_CASE_FIXTURE(TwinPolicies, "Autocast: a double network behind float tensors matches the float one in every pass") {
  Generator g{4, 0};
  const auto x = randn<float>(Shape{2, 1, 8, 8}, g);  // [2, 1, 8, 8]
  const std::vector<std::string> prompts{"a dress", "a bag"}, empty(2);
  const auto cond = policy.encode(prompts), uncond = policy.encode(empty);  // [2, L, E]
  CHECK(relative_gap(policy64.encode(prompts), cond) == 0.0);  // the embedding table, widened and rounded back
  Tensor<float> t(Shape{2});
  t[0] = 751;
  t[1] = 1;
  const auto u = policy.guided(x, t, cond, uncond, 3.0), u64 = policy64.guided(x, t, cond, uncond, 3.0);
  MESSAGE("guided: relative gap " << relative_gap(u64, u));
  CHECK(relative_gap(u64, u) < 1e-5);
  const auto dy = randn<float>(u.shape(), g);
  const auto dx = policy.guided_backward(dy), dx64 = policy64.guided_backward(dy);
  CHECK(relative_gap(dx64, dx) < 1e-5);
  const auto f = policy.forward(x, t, cond), f64 = policy64.forward(x, t, cond);
  CHECK(relative_gap(f64, f) < 1e-5);
  const auto db = policy.backward(dy, false), db64 = policy64.backward(dy, false);
  CHECK(relative_gap(db64, db) < 1e-5);
  // The LoRA gradients of both passes, in the double network under the float one's names.
  const auto g32 = trainable_doubles(policy, grad_of), g64 = trainable_doubles(policy64, grad_of);
  REQUIRE(g32.size() == g64.size());
  REQUIRE(!g32.empty());
  double scale = 1, gap = 0;
  for (std::size_t i = 0; i < g32.size(); ++i) {
    scale = std::max(scale, std::abs(g64[i]));
    gap = std::max(gap, std::abs(g64[i] - g32[i]));
  }
  MESSAGE("LoRA gradients: relative gap " << gap / scale);
  CHECK(gap / scale < 1e-4);
}

TEST_CASE_FIXTURE(TwinPolicies, "Autocast: SPO trains the double network behind float tensors like the float one") {
  const Scheduler ddim = tiny_scheduler();
  BrightnessPM pm;
  using Twin = train::SpoTraining<DoubleBehindFloat::policy_model, DoubleBehindFloat::base_model, Scheduler,
                                  BrightnessPM, preference::BestWorstCompare, resampler::RandomChild>;
  auto a = Spo<precision::fp32>(policy, base, ddim, pm, spo_resampler, loss::SpoLossOptions{10.0, 0.1}, spo_train, 8, 7,
                                nlohmann::json::object());
  Twin b(policy64, base64, ddim, pm, spo_resampler, loss::SpoLossOptions{10.0, 0.1}, spo_train, 8, 7,
         nlohmann::json::object());
  const auto ra = a.run_round(), rb = b.run_round();
  CHECK(rb.metrics.at("items") == ra.metrics.at("items"));
  CHECK(rb.metrics.at("loss").get<double>() == doctest::Approx(ra.metrics.at("loss").get<double>()).epsilon(1e-4));
  const auto w32 = trainable_doubles(policy, value_of), w64 = trainable_doubles(policy64, value_of);
  REQUIRE(w32.size() == w64.size());
  double gap = 0;
  for (std::size_t i = 0; i < w32.size(); ++i) gap = std::max(gap, std::abs(w64[i] - w32[i]));
  MESSAGE("LoRA weights after one round: max gap " << gap << " (lr 1e-2)");
  CHECK(gap < 1e-4);
}
