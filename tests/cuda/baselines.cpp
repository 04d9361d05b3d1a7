// SPDX-License-Identifier: MIT
// The baseline trainers (Diffusion-DPO, D3PO, DDPO) on spo::cuda against the same templates on the CPU, in double:
//   - the denoising-error ops (per_sample_mean_squared_error, per_sample_scaled_difference) against their CPU forms,
//     over several launches and several partial sums per sample;
//   - on-policy DDIM trajectories (every level and step log-prob, from the same noise stream) and their row gathers;
//   - each trainer: two rounds give the same round metrics and LoRA weights, and a device checkpoint resumes the
//     second round (the DDPO stat tracker included).
// Bounds, per element: |gpu - cpu| <= tol * max|cpu| of the tensor, tol = 1e-12 for the per-sample mean squared
// error (a tree of partial sums in double against the CPU's sequential sum), 1e-14 for the scaled difference (g x -
// g y against g (x - y), in double), 1e-9 for trajectories, trained weights and round metrics (chained UNet
// reductions re-associated on the GPU, the same bound family as tests/cuda/spo_training.cpp); counts and fractions of
// discrete events are compared within the same 1e-9, i.e. exactly. Metrics use |gpu - cpu| <= 1e-9 (1 + |cpu|). A
// resumed device run matches the uninterrupted one within 1e-10 (cuDNN atomics may reorder sums).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/train/d3po_training.hpp"
#include "spo/train/ddpo_training.hpp"
#include "spo/train/diffusion_dpo_training.hpp"

#include "training_fixtures.hpp"
#include <unistd.h>

using namespace spo;
using namespace spo::cuda_training_fixtures;

namespace {

/// A rater that scores final images (on the host) by 10 x their mean value.
struct BrightnessRater {
  using scalar_type = double;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<double, cpu>& x, std::span<const std::string> prompts) {
    SPO_CHECK(static_cast<std::size_t>(x.size(0)) == prompts.size(), "count mismatch");
    const std::int64_t per = x.numel() / x.size(0);
    std::vector<double> s;
    for (std::int64_t i = 0; i < x.size(0); ++i) {
      double m = 0;
      for (std::int64_t j = 0; j < per; ++j) m += x[i * per + j];
      s.push_back(10.0 * m / static_cast<double>(per));
    }
    return s;
  }
};
static_assert(preference::Rater<BrightnessRater>);

const std::vector<std::string> prompts{"a photo of a dress", "a photo of a bag", "a photo of a sneaker"};

/// Every metric of the CPU's round record in the device's: integers equal, numbers within 1e-9 (1 + |cpu|).
void check_metrics(const nlohmann::json& host, const nlohmann::json& dev) {
  int compared = 0;
  for (const auto& [key, v] : host.items()) {
    INFO("metric " << key);
    REQUIRE(dev.contains(key));
    if (v.is_number_integer()) {
      CHECK(dev.at(key) == v);
      ++compared;
    } else if (v.is_number()) {
      const double h = v.get<double>(), d = dev.at(key).get<double>();
      CHECK(std::isfinite(h));
      CHECK(std::abs(d - h) <= 1e-9 * (1.0 + std::abs(h)));
      ++compared;
    }
  }
  CHECK(compared == static_cast<int>(host.size()));
}

/*!
  REQUIRES
    - make(policy, reference) returns a fresh trainer on that policy and reference (one device, the same options and
      seed every call)
  ENSURES
    - checks that two rounds on the CPU and on cuda give the same metrics and LoRA weights, that the weights moved,
      and that a cuda checkpoint written after round 1 resumes round 2 into the same weights and generator position
!*/
template <class Make>
void check_two_rounds_and_resume(const std::string& label, Make make) {
  auto base = make_base();
  auto ref_h = base_on<cpu>(base);
  auto ref_d = base_on<cuda>(base);
  auto pol_h = make_policy<cpu>(base);
  auto pol_d = make_policy<cuda>(base);
  auto t_h = make(pol_h, ref_h);
  auto t_d = make(pol_d, ref_d);

  const auto dir = std::filesystem::temp_directory_path() / ("spo_cuda_" + label + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (int round = 1; round <= 2; ++round) {
    INFO(label << " round " << round);
    if (round == 2) t_d.save(dir / "checkpoint.safetensors");
    const auto m_h = t_h.run_round();
    const auto m_d = t_d.run_round();
    CHECK(m_h.round == m_d.round);
    check_metrics(m_h.metrics, m_d.metrics);
    CHECK(scaled_diff(lora_weights(pol_d), lora_weights(pol_h)) <= 1e-9);
    CHECK(t_h.generator().offset == t_d.generator().offset);
  }
  // The weights moved: the comparison above is not between two untouched copies.
  auto fresh = make_policy<cpu>(base);
  CHECK(scaled_diff(lora_weights(pol_h), lora_weights(fresh)) > 1e-6);

  // Resume the device run after round 1 into a fresh policy: round 2 repeats on the same device.
  auto pol_r = make_policy<cuda>(base);
  auto t_r = make(pol_r, ref_d);
  t_r.resume(dir / "checkpoint.safetensors");
  CHECK(t_r.round() == 1);
  t_r.run_round();
  CHECK(scaled_diff(lora_weights(pol_r), lora_weights(pol_d)) <= 1e-10);
  CHECK(t_r.generator().offset == t_d.generator().offset);
  std::filesystem::remove_all(dir);
}

/// Six pairs of 8x8 images on the host: the winners are bright, the losers dark, plus noise.
train::WinLosePairs<double> tiny_pairs() {
  Generator g{5, 0};
  train::WinLosePairs<double> p{
      randn<double>(Shape{6, 1, 8, 8}, g, 0.3), randn<double>(Shape{6, 1, 8, 8}, g, 0.3), {}, 0};
  for (std::int64_t i = 0; i < p.x_win.numel(); ++i) {
    p.x_win[i] += 0.5;
    p.x_lose[i] -= 0.5;
  }
  p.prompts = {"a dress", "a bag", "a sneaker", "a shirt", "a coat", "a sandal"};
  return p;
}

const train::TrajectorySection sampling{2.0, 1.0};

}  // namespace

TEST_CASE("The denoising-error ops on cuda equal their CPU forms: per-sample mean squared error, scaled difference") {
  // 300 samples of 2500 elements: three launches of at most 128 samples, three partial sums per sample.
  const std::int64_t n = 300;
  Generator g{93, 0};
  const auto x = randn<double>(Shape{n, 1, 50, 50}, g), y = randn<double>(Shape{n, 1, 50, 50}, g);  // [N, 1, 50, 50]
  std::vector<double> w;
  for (std::int64_t i = 0; i < n; ++i) w.push_back(std::sin(0.1 * static_cast<double>(i)) - 0.3);
  const auto dx = to_device(x), dy = to_device(y);

  const auto mse_h = per_sample_mean_squared_error(x, y);  // [N]
  const auto mse_d = per_sample_mean_squared_error(dx, dy);
  REQUIRE(mse_h.size() == static_cast<std::size_t>(n));
  CHECK(scaled_diff(mse_d, mse_h) <= 1e-12);
  double direct = 0;  // sample 299, the last launch's last sample, from its formula
  for (std::int64_t i = 299 * 2500; i < 300 * 2500; ++i) direct += (x[i] - y[i]) * (x[i] - y[i]) / 2500.0;
  CHECK(std::abs(mse_d.back() - direct) <= 1e-12 * direct);

  const auto sd_h = per_sample_scaled_difference(x, y, std::span<const double>(w));  // [N, 1, 50, 50]
  const auto sd_d = per_sample_scaled_difference(dx, dy, std::span<const double>(w));
  CHECK(scaled_diff(sd_d, sd_h) <= 1e-14);
  CHECK(sd_h[299 * 2500 + 7] == w[299] * (x[299 * 2500 + 7] - y[299 * 2500 + 7]));
  CHECK_THROWS_WITH_AS(per_sample_scaled_difference(dx, dy, std::span<const double>(w).first(3)),
                       doctest::Contains("3 weights for batch 300"), spo::error);
}

TEST_CASE("DDIM trajectories on cuda equal the CPU's: every level and step log-prob, and their row gathers") {
  auto base = make_base();
  auto host = make_policy<cpu>(base);
  auto dev = make_policy<cuda>(base);
  const auto ddim = scheduler<diffusion::EpsilonPrediction>(4, "epsilon");
  Generator g_h{73, 0}, g_d{73, 0};
  const auto th = train::sample_trajectories(host, ddim, prompts, 1, 8, sampling, g_h);
  const auto td = train::sample_trajectories(dev, ddim, prompts, 1, 8, sampling, g_d);
  CHECK(g_h.offset == g_d.offset);
  CHECK(th.t == td.t);
  CHECK(th.prompts == td.prompts);
  REQUIRE(th.x.size() == 5);
  REQUIRE(td.x.size() == th.x.size());
  for (std::size_t j = 0; j < th.x.size(); ++j) CHECK(scaled_diff(td.x[j], th.x[j]) <= 1e-9);
  REQUIRE(td.logp.size() == th.logp.size());
  for (std::size_t j = 0; j < th.logp.size(); ++j) CHECK(scaled_diff(td.logp[j], th.logp[j]) <= 1e-9);
  // The final level differs from the initial noise: the levels compared above are the steps' results.
  CHECK(scaled_diff(th.x.back(), th.x.front()) > 1e-3);

  const std::vector<std::int64_t> levels{4, 0, 2, 2}, rows{2, 0, 1, 2};
  const auto gh = train::gather_rows(th.x, levels, rows);  // [4, 1, 8, 8]
  const auto gd = train::gather_rows(td.x, levels, rows);
  CHECK(scaled_diff(gd, gh) <= 1e-9);
  CHECK(gh[0] == th.x[4][2 * 64]);
  CHECK(gh[3 * 64 + 5] == th.x[2][2 * 64 + 5]);
  CHECK(scaled_diff(gather_rows(td.x[3], rows), gather_rows(th.x[3], rows)) <= 1e-9);
}

TEST_CASE("Diffusion-DPO on cuda: two rounds equal the CPU's, and a device checkpoint resumes the second") {
  const auto ddim = scheduler<diffusion::EpsilonPrediction>(4, "epsilon");
  const train::DiffusionDpoTrainSection tr{2, 2, 3, 1e-2, 1e-4, 1.0, 1};
  const loss::DiffusionDpoOptions beta{5000.0};
  check_two_rounds_and_resume("diffusion_dpo", [&](auto& policy, auto& reference) {
    using P = std::remove_reference_t<decltype(policy)>;
    using R = std::remove_reference_t<decltype(reference)>;
    return train::DiffusionDpoTraining<P, R, Epsilon>(policy, reference, ddim, tiny_pairs(), beta, tr, 7,
                                                      nlohmann::json::object());
  });
}

TEST_CASE("D3PO on cuda: two rounds equal the CPU's, and a device checkpoint resumes the second") {
  const auto ddim = scheduler<diffusion::EpsilonPrediction>(4, "epsilon");
  BrightnessRater rater;
  const loss::D3poLossOptions lo{10.0, 0.1};
  const train::D3poTrainSection tr{2, 3, {0, 1}, 2, 0.5, 1e-2, 1e-4, 1.0, 1};
  check_two_rounds_and_resume("d3po", [&](auto& policy, auto& reference) {
    using P = std::remove_reference_t<decltype(policy)>;
    using R = std::remove_reference_t<decltype(reference)>;
    return train::D3poTraining<P, R, Epsilon, BrightnessRater>(policy, reference, ddim, rater, sampling, lo, tr, 1, 8,
                                                               7, nlohmann::json::object());
  });
}

TEST_CASE("DDPO on cuda: two rounds equal the CPU's, and a device checkpoint resumes the second with its tracker") {
  const auto ddim = scheduler<diffusion::EpsilonPrediction>(4, "epsilon");
  BrightnessRater rater;
  const loss::DdpoLossOptions lo{0.2, 5.0};
  const loss::StatTrackerOptions tracker{16, 2};
  // 3 prompts x 2 samples from the 10 prompts of template 0, minibatches of 4, 2 inner epochs.
  const train::DdpoTrainSection tr{2, 3, 2, {0}, 4, 2, 0.5, 1e-2, 1e-4, 1.0, 1};
  check_two_rounds_and_resume("ddpo", [&](auto& policy, auto&) {
    using P = std::remove_reference_t<decltype(policy)>;
    return train::DdpoTraining<P, Epsilon, BrightnessRater>(policy, ddim, rater, sampling, lo, tracker, tr, 1, 8, 7,
                                                            nlohmann::json::object());
  });
}
