// SPDX-License-Identifier: MIT
// SPO on spo::cuda against the same templates on the CPU, in double:
//   - the per-sample device ops (per_sample_affine, gaussian_log_prob, clamp_inplace) against their formulas;
//   - the DDIM arithmetic (predict, mean, k children from the same noise stream, step, log-prob and its backward,
//     guidance) for epsilon and v prediction;
//   - the text-conditioned policy's guided forward and backward (LoRA gradients);
//   - a step-wise resampler round (the same pairs, timesteps, prompts and final scores), with the preference model on
//     the device, on the host (a cross-device policy), and the step-aware preference network on the device;
//   - SpoTraining: two rounds give the same metrics and LoRA weights, and a device checkpoint resumes the second round.
// Bounds, per element: |gpu - cpu| <= tol * max|cpu| of the tensor, tol = 1e-12 for the DDIM arithmetic (a few
// operations in double), 1e-9 for model outputs, pairs and trained weights (chained UNet reductions re-associated
// on the GPU, the same bound family as tests/cuda/unet.cpp).
#include "spo/train/spo_training.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/preference/compare.hpp"
#include "spo/resampler/continuation.hpp"
#include "spo/spm/variant.hpp"

#include "reference.hpp"
#include "training_fixtures.hpp"
#include <unistd.h>

using namespace spo;
using namespace spo::cuda_training_fixtures;

namespace {

/// Prefers bright x0 predictions, with a small dependence on the timestep; scores images of device D.
template <class D>
struct Brightness {
  using scalar_type = double;
  using device_type = D;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<double, D>& x0, std::span<const std::int64_t> t,
                            std::span<const std::string>) {
    const auto h = transfer<cpu>(x0);
    const std::int64_t per = h.numel() / h.size(0);
    std::vector<double> s;
    for (std::int64_t i = 0; i < h.size(0); ++i) {
      double m = 0;
      for (std::int64_t j = 0; j < per; ++j) m += h[i * per + j];
      s.push_back(10.0 * m / static_cast<double>(per) + 1e-4 * static_cast<double>(t[static_cast<std::size_t>(i)]));
    }
    return s;
  }
};
static_assert(preference::PreferenceModel<Brightness<cuda>>);

const std::vector<std::string> prompts{"a photo of a dress", "a photo of a bag", "a photo of a sneaker"};

template <class P>
void check_ddim(const char* prediction) {
  const auto ddim = scheduler<P>(10, prediction);
  Generator g{31, 0};
  const Shape s{3, 2, 4, 4};
  const auto u = randn<double>(s, g), x = randn<double>(s, g), x_prev = randn<double>(s, g);  // [B, C, H, W]
  const std::vector<std::int64_t> t{901, 451, 1};
  const auto du = to_device(u), dx = to_device(x), dprev = to_device(x_prev);

  const auto p_h = ddim.predict(u, x, t);
  const auto p_d = ddim.predict(du, dx, t);
  CHECK(scaled_diff(p_d.x0, p_h.x0) <= 1e-12);
  CHECK(scaled_diff(p_d.eps, p_h.eps) <= 1e-12);

  const auto tr = ddim.transitions(t, 1.0);
  const auto mu_h = ddim.mean(p_h, tr);
  const auto mu_d = ddim.mean(p_d, tr);
  CHECK(scaled_diff(mu_d, mu_h) <= 1e-12);

  Generator gc_h{41, 3}, gc_d{41, 3};
  const auto c_h = ddim.sample_children(mu_h, tr, 3, gc_h);  // [k, B, C, H, W]
  const auto c_d = ddim.sample_children(mu_d, tr, 3, gc_d);
  CHECK(scaled_diff(c_d, c_h) <= 1e-12);
  CHECK(gc_h.offset == gc_d.offset);

  Generator gs_h{43, 0}, gs_d{43, 0};
  const auto st_h = ddim.step(u, 451, x, 1.0, &gs_h);
  const auto st_d = ddim.step(du, 451, dx, 1.0, &gs_d);
  CHECK(scaled_diff(st_d.prev_sample, st_h.prev_sample) <= 1e-12);
  CHECK(scaled_diff(st_d.pred_original_sample, st_h.pred_original_sample) <= 1e-12);

  const auto lp_h = ddim.log_prob(u, t, x, x_prev, 1.0);  // [B]
  const auto lp_d = ddim.log_prob(du, t, dx, dprev, 1.0);
  CHECK(scaled_diff(lp_d, lp_h) <= 1e-12);

  const Tensor<double, cpu> gl(Shape{3}, {0.7, -1.3, 2.1});  // [B]
  const auto bw_h = ddim.log_prob_backward(u, t, x, x_prev, 1.0, gl);
  const auto bw_d = ddim.log_prob_backward(du, t, dx, dprev, 1.0, to_device(gl));
  CHECK(scaled_diff(bw_d, bw_h) <= 1e-12);

  const auto gd_h = diffusion::guide(u, x, 3.0);
  const auto gd_d = diffusion::guide(du, dx, 3.0);
  CHECK(scaled_diff(gd_d, gd_h) <= 1e-12);
}

}  // namespace

TEST_CASE("The per-sample device ops equal their CPU formulas: affine (several launches, in place), clamp, log-prob") {
  // 300 samples: the coefficient tables travel 128 per launch, so three launches each.
  const std::int64_t n = 300, per = 6;
  Generator g{91, 0};
  const auto a = randn<double>(Shape{n, 2, 3}, g), b = randn<double>(Shape{n, 2, 3}, g);  // [N, 2, 3]
  std::vector<SampleWeights> w;
  std::vector<double> sd;
  for (std::int64_t i = 0; i < n; ++i) {
    w.push_back({std::sin(0.1 * static_cast<double>(i)), std::cos(0.07 * static_cast<double>(i)) - 0.5});
    sd.push_back(0.05 + 0.01 * static_cast<double>(i % 17));
  }
  Tensor<double, cpu> affine(a.shape());  // [N, 2, 3]
  for (std::int64_t i = 0; i < n * per; ++i)
    affine[i] = w[static_cast<std::size_t>(i / per)].a * a[i] + w[static_cast<std::size_t>(i / per)].b * b[i];
  auto da = to_device(a), db = to_device(b);
  auto out = Tensor<double, cuda>::uninitialized(a.shape());
  per_sample_affine<double>(da.view(), db.view(), std::span<const SampleWeights>(w), out.view());
  CHECK(scaled_diff(out, affine) <= 1e-15);
  per_sample_affine<double>(da.view(), TensorView<const double, cuda>(db.view()), std::span<const SampleWeights>(w),
                            db.view());
  CHECK(scaled_diff(db, affine) <= 1e-15);  // out aliasing b

  constexpr double log_sqrt_2pi = 0.91893853320467274178;
  Tensor<double, cpu> lp(Shape{n});  // [N]
  for (std::int64_t i = 0; i < n; ++i) {
    double sq = 0;
    for (std::int64_t j = i * per; j < (i + 1) * per; ++j) sq += (a[j] - affine[j]) * (a[j] - affine[j]);
    const double s = sd[static_cast<std::size_t>(i)];
    lp[i] = -sq / (2 * s * s) / static_cast<double>(per) - std::log(s) - log_sqrt_2pi;
  }
  CHECK(scaled_diff(gaussian_log_prob(da, to_device(affine), std::span<const double>(sd)), lp) <= 1e-13);

  const Tensor<double, cpu> c(Shape{7}, {-2.0, -1.0, -0.5, 0.0, 0.75, 1.0, 3.0});  // [7]
  auto dc = to_device(c);
  clamp_inplace(dc, -1.0, 1.0);
  const auto hc = to_host(dc);
  for (std::int64_t i = 0; i < 7; ++i) CHECK(hc[i] == std::clamp(c[i], -1.0, 1.0));
  CHECK_THROWS_WITH_AS(clamp_inplace(dc, 1.0, -1.0), doctest::Contains("empty range"), spo::error);
}

TEST_CASE("DDIM on cuda equals the CPU: predict, mean, children, step, log-prob and backward, guidance") {
  check_ddim<diffusion::EpsilonPrediction>("epsilon");
  check_ddim<diffusion::VPrediction>("v_prediction");
}

TEST_CASE("DDIM on cuda: clip_sample clamps x0 as on the CPU; its log-prob backward is refused with a reason") {
  auto ddim = diffusion::make_scheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>(
      diffusion::ScheduleSection{"linear", 1e-4, 0.02, 1000, "epsilon", "leading", 1});
  diffusion::DdimConfig c = ddim.config();
  c.clip_sample = true;
  diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction> clipped(diffusion::LinearBetas{1e-4, 0.02}, c);
  clipped.set_timesteps(10);
  Generator g{51, 0};
  const auto u = randn<double>(Shape{2, 1, 4, 4}, g), x = randn<double>(Shape{2, 1, 4, 4}, g);
  const std::vector<std::int64_t> t{901, 11};
  const auto h = clipped.predict(u, x, t);
  const auto d = clipped.predict(to_device(u), to_device(x), t);
  CHECK(scaled_diff(d.x0, h.x0) <= 1e-12);
  const Tensor<double, cpu> gl(Shape{2}, {1.0, 1.0});
  CHECK_THROWS_WITH_AS(clipped.log_prob_backward(to_device(u), t, to_device(x), to_device(x), 1.0, to_device(gl)),
                       doctest::Contains("clip_sample"), spo::error);
}

TEST_CASE("The text-conditioned LoRA policy on cuda: guided forward and backward equal the CPU's") {
  auto base = make_base();
  auto host = make_policy<cpu>(base);
  auto dev = make_policy<cuda>(base);
  Generator g{61, 0};
  const auto x = randn<double>(Shape{3, 1, 8, 8}, g), dy = randn<double>(Shape{3, 1, 8, 8}, g);
  const Tensor<double, cpu> t(Shape{3}, {901.0, 451.0, 1.0});
  const std::vector<std::string> empty(3);
  nn::zero_grad(host);
  nn::zero_grad(dev);
  const auto y_h = host.guided(x, t, host.encode(prompts), host.encode(empty), 3.0);
  const auto y_d = dev.guided(to_device(x), to_device(t), dev.encode(prompts), dev.encode(empty), 3.0);
  CHECK(scaled_diff(y_d, y_h) <= 1e-9);
  const auto dx_h = host.guided_backward(dy);
  const auto dx_d = dev.guided_backward(to_device(dy));
  CHECK(scaled_diff(dx_d, dx_h) <= 1e-9);
  int compared = 0;
  std::map<std::string, Tensor<double, cpu>> grads;
  host.visit_parameters([&](std::string_view name, auto& p) {
    if (p.trainable) grads.emplace(std::string(name), p.grad);
  });
  dev.visit_parameters([&](std::string_view name, auto& p) {
    if (!p.trainable) return;
    CHECK(scaled_diff(p.grad, grads.at(std::string(name))) <= 1e-9);
    ++compared;
  });
  CHECK(compared == static_cast<int>(grads.size()));
  CHECK(compared > 0);
}

namespace {

template <class PmHost, class PmDev>
void check_round(PmHost pm_h, PmDev pm_d, double threshold) {
  auto base = make_base();
  auto host = make_policy<cpu>(base);
  auto dev = make_policy<cuda>(base);
  const auto ddim = scheduler<diffusion::EpsilonPrediction>(5, "epsilon");
  const resampler::ResamplerOptions o{3, 1, threshold, 2.0, 1.0, 0, 1000};
  resampler::StepwiseResampler<PmHost, preference::BestWorstCompare, resampler::RandomChild> rs_h(o);
  resampler::StepwiseResampler<PmDev, preference::BestWorstCompare, resampler::RandomChild> rs_d(o);
  Generator g_h{71, 0}, g_d{71, 0};
  const auto r_h = rs_h.sample(host, ddim, pm_h, prompts, 8, 1, g_h);
  const auto r_d = rs_d.sample(dev, ddim, pm_d, prompts, 8, 1, g_d);
  CHECK(g_h.offset == g_d.offset);
  REQUIRE(r_h.pairs.size() == r_d.pairs.size());
  CHECK(r_h.pairs.size() > 0);
  CHECK(r_h.pairs.t == r_d.pairs.t);
  CHECK(r_h.pairs.prompts == r_d.pairs.prompts);
  CHECK(r_h.valid_per_t == r_d.valid_per_t);
  CHECK(scaled_diff(r_d.pairs.x_t, r_h.pairs.x_t) <= 1e-9);
  CHECK(scaled_diff(r_d.pairs.x_win, r_h.pairs.x_win) <= 1e-9);
  CHECK(scaled_diff(r_d.pairs.x_lose, r_h.pairs.x_lose) <= 1e-9);
  CHECK(scaled_diff(r_d.final_images, r_h.final_images) <= 1e-9);
  REQUIRE(r_h.final_scores.size() == r_d.final_scores.size());
  for (std::size_t i = 0; i < r_h.final_scores.size(); ++i)
    CHECK(std::abs(r_h.final_scores[i] - r_d.final_scores[i]) <= 1e-9 * (1.0 + std::abs(r_h.final_scores[i])));
}

spm::PreferenceNetworkConfig tiny_spm_config() {
  // image 8x8, 1 channel, patch 4, width 16, depth 2, 2 heads, embed 12; text width 16, 2 heads, 8 tokens
  return {{8, 1, 4, 16, 2, 2, 12}, 16, 2, 8, 2.6592600369327779};
}

}  // namespace

TEST_CASE("A resampler round on cuda equals the CPU's: pairs, timesteps, prompts, final images and scores") {
  SUBCASE("preference model on the device") { check_round(Brightness<cpu>{}, Brightness<cuda>{}, 0.0); }
  SUBCASE("cuda policy scored by a host preference model") { check_round(Brightness<cpu>{}, Brightness<cpu>{}, 0.0); }
  SUBCASE("the step-aware preference network on the device") {
    using Net = spm::StepAwarePM::network<double, cpu>;
    const auto vocab = text::fashion_tokenizer(8).vocab_size();
    Net net(tiny_spm_config(), vocab);
    Generator g{81, 0};
    net.reset_parameters(g);
    Generator gm{82, 0};  // adaLN modulations off their identity init, so the timestep matters
    net.visit_parameters(
        [&](std::string_view name, auto& p) {
          if (std::string(name).find("adaLN") != std::string::npos) fill_uniform(p.value.view(), gm, -0.1, 0.1);
        },
        {});
    spm::StepAwarePM::network<double, cuda> dev(tiny_spm_config(), vocab);
    nn::copy_parameters(net, dev);
    check_round(spm::NetworkPreference<spm::StepAwarePM, double>(std::move(net)),
                spm::NetworkPreference<spm::StepAwarePM, double, cuda>(std::move(dev)), 0.0);
  }
}

namespace {

template <class D>
using TrainingOn = train::SpoTraining<PolicyOn<D>, BaseOn<D>, Epsilon, Brightness<D>, preference::BestWorstCompare,
                                      resampler::RandomChild>;
const resampler::ResamplerOptions train_rs{3, 1, 0.0, 2.0, 1.0, 0, 1000};
const train::SpoTrainSection train_section{2, 3, {0, 1}, 4, 1e-2, 1e-4, 1.0, 1};

}  // namespace

TEST_CASE("SpoTraining on cuda: two rounds equal the CPU's, and a device checkpoint resumes the second exactly") {
  auto base = make_base();
  auto ref_h = base_on<cpu>(base);
  auto ref_d = base_on<cuda>(base);
  auto pol_h = make_policy<cpu>(base);
  auto pol_d = make_policy<cuda>(base);
  const auto ddim = scheduler<diffusion::EpsilonPrediction>(4, "epsilon");
  Brightness<cpu> pm_h;
  Brightness<cuda> pm_d;
  const loss::SpoLossOptions lo{10.0, 0.1};
  TrainingOn<cpu> t_h(pol_h, ref_h, ddim, pm_h, train_rs, lo, train_section, 8, 7, nlohmann::json::object());
  TrainingOn<cuda> t_d(pol_d, ref_d, ddim, pm_d, train_rs, lo, train_section, 8, 7, nlohmann::json::object());

  const auto dir = std::filesystem::temp_directory_path() / ("spo_cuda_training_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (int round = 1; round <= 2; ++round) {
    if (round == 2) t_d.save(dir / "checkpoint.safetensors");
    const auto m_h = t_h.run_round();
    const auto m_d = t_d.run_round();
    const auto& mh = m_h.metrics;
    const auto& md = m_d.metrics;
    auto num = [](const nlohmann::json& m, const char* key) { return m.at(key).get<double>(); };
    CHECK(mh.at("items") == md.at("items"));
    CHECK(mh.at("items").get<std::int64_t>() > 0);
    CHECK(mh.at("valid_per_t") == md.at("valid_per_t"));
    CHECK(std::abs(num(mh, "loss") - num(md, "loss")) <= 1e-9);
    CHECK(std::abs(num(mh, "grad_norm") - num(md, "grad_norm")) <= 1e-9 * (1.0 + num(mh, "grad_norm")));
    CHECK(std::abs(num(mh, "implicit_accuracy") - num(md, "implicit_accuracy")) <= 1e-12);
    CHECK(scaled_diff(lora_weights(pol_d), lora_weights(pol_h)) <= 1e-9);
  }
  // The weights moved: the comparison above is not between two untouched copies.
  auto fresh = make_policy<cpu>(base);
  CHECK(scaled_diff(lora_weights(pol_h), lora_weights(fresh)) > 1e-6);

  // Resume the device run after round 1 into a fresh policy: round 2 repeats on the same device.
  auto pol_r = make_policy<cuda>(base);
  Brightness<cuda> pm_r;
  TrainingOn<cuda> t_r(pol_r, ref_d, ddim, pm_r, train_rs, lo, train_section, 8, 7, nlohmann::json::object());
  t_r.resume(dir / "checkpoint.safetensors");
  CHECK(t_r.round() == 1);
  t_r.run_round();
  CHECK(scaled_diff(lora_weights(pol_r), lora_weights(pol_d)) <= 1e-10);  // cuDNN atomics may reorder sums
  CHECK(t_r.generator().offset == t_d.generator().offset);
  std::filesystem::remove_all(dir);
}
