// SPDX-License-Identifier: MIT
/// @brief Fixtures the training and resampler tests share: a tiny base model, scheduler and LoRA policy, brightness
/// stand-ins for the preference model and the rater, scratch directories, the committed configs with their paths
/// made absolute, and the exact-resume and non-finite-stop checks every trainer must pass.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/experiment/spo_experiment.hpp"
#include "spo/model/fashion_default.hpp"

#include "support/tiny_model.hpp"
#include <unistd.h>

namespace spo::test_support {

using Base = experiment::BaseModelType;
using Policy = experiment::PolicyModelType;
using Scheduler = diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction>;

/// The tiny base model with random weights from Generator{21, 0}.
inline Base tiny_base() {
  Generator g{21, 0};
  return model::make_fashion_model<Base>(tiny_unet, tiny_text, g);
}

/// A copy of `base` with rank-2 LoRA adapters (alpha 2, seed 3).
inline Policy tiny_policy(Base& base) {
  return experiment::make_policy(tiny_unet, tiny_text, base, train::LoraSection{2, 2.0}, 3);
}

/// DDIM over the linear beta schedule of 1000 steps, `steps` inference steps ("leading": 751, 501, 251, 1 for 4).
inline Scheduler tiny_scheduler(int steps = 4) {
  auto d = diffusion::make_scheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>(
      diffusion::ScheduleSection{"linear", 1e-4, 0.02, 1000, "epsilon", "leading", 1});
  d.set_timesteps(steps);
  return d;
}

/// 10 x the mean value of each image of a batch x: [N, ...] (no ties in practice on random images).
inline std::vector<double> brightness(const Tensor<float>& x) {
  std::vector<double> s;
  const std::int64_t per = x.numel() / x.size(0);
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    double m = 0;
    for (std::int64_t j = 0; j < per; ++j) m += x[i * per + j];
    s.push_back(10.0 * m / static_cast<double>(per));
  }
  return s;
}

/// A step preference model that prefers bright x0 predictions, whatever the timestep.
struct BrightnessPM {
  using scalar_type = float;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<float>& x0, std::span<const std::int64_t>, std::span<const std::string>) {
    return brightness(x0);
  }
};
static_assert(preference::PreferenceModel<BrightnessPM>);

/// A rater that scores final images by their brightness.
struct BrightnessRater {
  using scalar_type = float;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<float>& x, std::span<const std::string> prompts) {
    SPO_CHECK(static_cast<std::size_t>(x.size(0)) == prompts.size(), "count mismatch");
    return brightness(x);
  }
};
static_assert(preference::Rater<BrightnessRater>);

/// The LoRA parameters of a policy, concatenated in visiting order.
inline std::vector<float> lora_weights(Policy& p) {
  std::vector<float> w;
  p.visit_parameters([&](std::string_view name, nn::Parameter<float>& q) {
    if (name.find("lora_") != std::string_view::npos)
      w.insert(w.end(), q.value.data(), q.value.data() + q.value.numel());
  });
  return w;
}

/// An empty directory <temp>/<name>_<pid> (one per test process, so parallel test runs do not collide).
inline std::filesystem::path scratch(const std::string& name) {
  const std::filesystem::path d = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

/// The bytes of a file.
inline std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

/// `path` (relative to the source tree) as an absolute path.
inline std::string in_source(const std::string& path) {
  return (std::filesystem::path(SPO_SOURCE_DIR) / path).string();
}

/// The committed config `file` (relative to the source tree) with the paths every experiment config has (base model,
/// rater judge, held-out judge) made absolute.
template <class Config>
Config load_source_config(const std::string& file) {
  auto c = io::load_config<Config>(in_source(file));
  c.base.config = in_source(c.base.config);
  c.base.weights = in_source(c.base.weights);
  c.rater.judge.weights = in_source(c.rater.judge.weights);
  c.evaluation.held_out_judge.weights = in_source(c.evaluation.held_out_judge.weights);
  return c;
}

/// The default of an optional check: none.
struct NoCheck {
  void operator()(const auto&...) const {}
};

/*!
  REQUIRES
    - make(policy) returns a fresh trainer (same options and seed every call) on `policy`, a new tiny_policy(base)
  ENSURES
    - checks resume is exact, bitwise: trainer a runs rounds 1 and 2; trainer b runs round 1 and saves
      <dir>/ckpt.safetensors; trainer c resumes from it (after_resume(c)) and runs round 2; c's LoRA weights equal a's
      (and at_end(a, c)); a's weights moved
    - returns a's first-round metrics
!*/
template <class Make, class AfterResume = NoCheck, class AtEnd = NoCheck>
auto check_exact_resume(Base& base, const std::filesystem::path& dir, Make make, AfterResume after_resume = {},
                        AtEnd at_end = {}) {
  auto pa = tiny_policy(base);
  const auto w0 = lora_weights(pa);
  auto a = make(pa);
  const auto m1 = a.run_round();
  a.run_round();
  CHECK(lora_weights(pa) != w0);
  auto pb = tiny_policy(base);
  {
    auto b = make(pb);
    b.run_round();
    b.save(dir / "ckpt.safetensors");
  }
  auto pc = tiny_policy(base);
  auto c = make(pc);
  c.resume(dir / "ckpt.safetensors");
  CHECK(c.round() == 1);
  after_resume(c);
  c.run_round();
  CHECK(lora_weights(pc) == lora_weights(pa));
  at_end(a, c);
  return m1;
}

/*!
  REQUIRES
    - training trains `policy`; failing_step() makes a training step fail on a non-finite value
  ENSURES
    - saves <dir>/ckpt.safetensors, then checks failing_step() throws spo::error naming "non-finite" and leaves both the
      LoRA weights and the checkpoint file unchanged
!*/
template <class Training, class Step>
void check_non_finite_stop(Training& training, Policy& policy, const std::filesystem::path& dir, Step&& failing_step) {
  training.save(dir / "ckpt.safetensors");
  const std::string bytes0 = file_bytes(dir / "ckpt.safetensors");
  const auto w = lora_weights(policy);
  CHECK_THROWS_WITH_AS(failing_step(), doctest::Contains("non-finite"), spo::error);
  CHECK(lora_weights(policy) == w);
  CHECK(file_bytes(dir / "ckpt.safetensors") == bytes0);
}

}  // namespace spo::test_support
