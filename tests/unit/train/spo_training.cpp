// SPDX-License-Identifier: MIT
// SPO training: exact resume (1 + 1 rounds == 2 rounds), a NaN loss stops before the update, configs checked first.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "spo/experiment/spo_experiment.hpp"

using namespace spo;
namespace fs = std::filesystem;
using Base = experiment::BaseModelType;
using Policy = experiment::PolicyModelType;
using Scheduler = diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction>;

namespace {
struct BrightnessPM {
  using scalar_type = float;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<float>& x0, std::span<const std::int64_t>, std::span<const std::string>) {
    std::vector<double> s;
    const std::int64_t per = x0.numel() / x0.size(0);
    for (std::int64_t i = 0; i < x0.size(0); ++i) {
      double m = 0;
      for (std::int64_t j = 0; j < per; ++j) m += x0[i * per + j];
      s.push_back(10.0 * m / static_cast<double>(per));
    }
    return s;
  }
};

const config::UNetSection unet{{8, 16}, {false, true}, 1, 2, 8, 4, false};

Base tiny_base() {
  Generator g{21, 0};
  return model::make_fashion_model<Base>(unet, config::TextSection{6}, g);
}

Policy tiny_policy(Base& base) {
  return experiment::make_policy(unet, config::TextSection{6}, base, train::LoraSection{2, 2.0}, 3);
}

Scheduler tiny_scheduler() {
  auto d = config::make_scheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>(
      config::ScheduleSection{"linear", 1e-4, 0.02, 1000, "epsilon", "leading", 1});
  d.set_timesteps(4);
  return d;
}

using Training = train::SpoTraining<Policy, Base, Scheduler, BrightnessPM, preference::BestWorstCompare,
                                    resampler::RandomChild>;
const resampler::ResamplerOptions rs{3, 1, 0.0, 2.0, 1.0, 0, 1000};
const train::SpoTrainSection tr{2, 3, {0, 1}, 4, 1e-2, 1e-4, 1.0, 1};

std::vector<float> lora_weights(Policy& p) {
  std::vector<float> w;
  p.visit_parameters([&](std::string_view name, nn::Parameter<float>& q) {
    if (name.find("lora_") != std::string_view::npos) w.insert(w.end(), q.value.data(), q.value.data() + q.value.numel());
  });
  return w;
}

fs::path scratch() {
  const fs::path d = fs::temp_directory_path() / ("spo_train_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST_CASE("SPO training resumes exactly: 1 + 1 rounds == 2 rounds, bitwise") {
  const auto dir = scratch();
  auto base = tiny_base();
  const auto ddim = tiny_scheduler();
  BrightnessPM pm;
  auto pa = tiny_policy(base);
  const auto w0 = lora_weights(pa);
  Training a(pa, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, 7, nlohmann::json::object());
  const auto m1 = a.run_round();
  CHECK(m1.items > 0);
  CHECK(std::abs(m1.loss - std::log(2.0)) < 1e-3);  // the first minibatch has policy == reference: log 2
  a.run_round();
  CHECK(lora_weights(pa) != w0);

  auto pb = tiny_policy(base);
  {
    Training b(pb, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, 7, nlohmann::json::object());
    b.run_round();
    b.save(dir / "ckpt.safetensors");
  }
  auto pc = tiny_policy(base);
  Training c(pc, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, 7, nlohmann::json::object());
  c.resume(dir / "ckpt.safetensors");
  CHECK(c.round() == 1);
  c.run_round();
  CHECK(lora_weights(pc) == lora_weights(pa));
  fs::remove_all(dir);
}

TEST_CASE("SPO training: a non-finite loss stops before the update and leaves the checkpoint intact") {
  const auto dir = scratch();
  auto base = tiny_base();
  const auto ddim = tiny_scheduler();
  BrightnessPM pm;
  auto p = tiny_policy(base);
  Training t(p, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, 7, nlohmann::json::object());
  t.run_round();
  t.save(dir / "ckpt.safetensors");
  std::ifstream f0(dir / "ckpt.safetensors", std::ios::binary);
  const std::string bytes0((std::istreambuf_iterator<char>(f0)), {});
  const auto w = lora_weights(p);
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
  CHECK_THROWS_WITH_AS(t.train_minibatch(items, order, norm), doctest::Contains("non-finite"), spo::error);
  CHECK(lora_weights(p) == w);
  std::ifstream f1(dir / "ckpt.safetensors", std::ios::binary);
  CHECK(std::string((std::istreambuf_iterator<char>(f1)), {}) == bytes0);
  fs::remove_all(dir);
}

TEST_CASE("SPO configs: unknown policies and out-of-range values are errors before any work") {
  using E = experiment::Spo<spm::StepAwarePM>;
  const fs::path src = SPO_SOURCE_DIR;
  auto load = [&] {
    auto c = io::load_config<experiment::SpoConfig>(src / "configs" / "spo.json");
    c.base.config = (src / c.base.config).string();
    c.base.weights = (src / c.base.weights).string();
    c.rater.judge.weights = (src / c.rater.judge.weights).string();
    c.evaluation.held_out_judge.weights = (src / c.evaluation.held_out_judge.weights).string();
    c.preference_model = (src / *c.preference_model).string();
    return c;
  };
  CHECK_NOTHROW(experiment::validate<E>(load()));
  auto c = load();
  c.policies.compare = "top_two";
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("policies.compare is \"top_two\""), spo::error);
  c = load();
  c.policies.preference = "oracle";
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("compiled with \"step_aware\""), spo::error);
  c = load();
  c.resampler.k = 1;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("k (children per step) must be >= 2"), spo::error);
  c = load();
  c.resampler.divert_start_step = 20;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("divert_start_step"), spo::error);
  c = load();
  c.resampler.threshold = 1.0;
  CHECK_THROWS_AS(experiment::validate<E>(c), spo::error);
  c = load();
  c.loss.clip_eps = 0.0;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("clip_eps"), spo::error);
  c = load();
  c.loss.beta = -1.0;
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("beta"), spo::error);
  c = load();
  c.train.templates = {4};
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("held out"), spo::error);
  c = load();
  c.preference_model.reset();
  CHECK_THROWS_WITH_AS(experiment::validate<E>(c), doctest::Contains("needs its checkpoint"), spo::error);
  // An unknown key in the JSON is refused by the reader.
  auto j = io::parse_json(io::read_file_text(src / "configs" / "spo.json"), "spo.json");
  j["resampler"]["kk"] = 4;
  CHECK_THROWS_WITH_AS(io::from_json<experiment::SpoConfig>(j, "spo.json"), doctest::Contains("resampler.kk"), spo::error);
}
