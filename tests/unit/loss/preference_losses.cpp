// SPDX-License-Identifier: MIT
// The preference losses (SPO, step DPO, D3PO, DDPO, Diffusion-DPO) and DDPO's per-prompt advantage normalisation:
// golden values and autograd gradients from torch (tools/reference/loss_golden.py -> tests/data/loss_golden.json),
// finite differences, hand-computed special values and input validation.
#include <cmath>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "spo/core/rng.hpp"
#include "spo/io/config.hpp"
#include "spo/loss.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;
using namespace spo::loss;
using nlohmann::json;

namespace {

const json& golden() {
  static const json j = [] {
    std::ifstream f(SPO_TEST_DATA_DIR "/loss_golden.json");
    REQUIRE(f.good());
    return json::parse(f);
  }();
  return j;
}

std::vector<double> vec(const json& j) { return j.get<std::vector<double>>(); }

/// |a - b| / max(|b|, 1e-6): relative error, absolute below 1e-6.
double rel_error(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-6); }

constexpr double golden_tol = 1e-12;

void check_scalar(double a, const json& b, const char* what) {
  INFO(what << ": " << a << " vs torch " << b.get<double>());
  CHECK(rel_error(a, b.get<double>()) < golden_tol);
}

void check_vector(const std::vector<double>& a, const json& b, const char* what) {
  const auto ref = vec(b);
  REQUIRE(a.size() == ref.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(what << "[" << i << "]: " << a[i] << " vs torch " << ref[i]);
    CHECK(rel_error(a[i], ref[i]) < golden_tol);
  }
}

constexpr std::uint64_t seed = 20240607;

/// Uniform in (lo, hi], the i-th number of stream `stream` of the test seed.
double uniform(std::uint64_t stream, std::uint64_t i, double lo, double hi) {
  return lo + (hi - lo) * rng::uniform_at(seed, stream << 32, i);
}

/// n log-ratios uniform in (lo, hi] at least `gap` away from log(1 - eps) and log(1 + eps).
std::vector<double> log_ratios(std::uint64_t stream, std::size_t n, double eps, double lo, double hi, double gap) {
  std::vector<double> out;
  for (std::uint64_t i = 0; out.size() < n; ++i) {
    const double d = uniform(stream, i, lo, hi);
    if (std::abs(d - std::log(1 - eps)) > gap && std::abs(d - std::log(1 + eps)) > gap) out.push_back(d);
  }
  return out;
}

std::vector<double> plus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> out(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) out[i] = a[i] + b[i];
  return out;
}

std::span<const double> span_of(const Tensor<double>& t) { return {t.data(), static_cast<std::size_t>(t.numel())}; }

/// A scalar loss of some [B] inputs with its analytic gradients, one per input.
using LossEval = std::function<std::pair<double, std::vector<std::vector<double>>>(const std::vector<Tensor<double>>&)>;

/// gradcheck_function on a scalar loss: d loss / d inputs against fourth-order central differences.
testing::GradcheckResult fd_check(std::vector<std::vector<double>> inputs, const std::vector<std::string>& names,
                                  const LossEval& eval, double step = 1e-4) {
  std::vector<Tensor<double>> xs, grads(inputs.size());
  for (const auto& v : inputs) xs.emplace_back(Shape{static_cast<std::int64_t>(v.size())}, v);
  std::vector<testing::GradcheckTarget> targets;
  for (std::size_t k = 0; k < xs.size(); ++k) targets.push_back({names[k], &xs[k], &grads[k]});
  return testing::gradcheck_function([&] { return Tensor<double>(Shape{1}, {eval(xs).first}); },
                                     [&](const Tensor<double>& dy) {
                                       const auto g = eval(xs).second;
                                       for (std::size_t k = 0; k < xs.size(); ++k) {
                                         std::vector<double> scaled = g[k];
                                         for (double& v : scaled) v *= dy[0];
                                         grads[k] = Tensor<double>(xs[k].shape(), scaled);
                                       }
                                     },
                                     targets, {.step = step});
}

}  // namespace

TEST_CASE("SPO loss: value, gradients and diagnostics match torch") {
  for (const json& c : golden()["spo"]) {
    INFO(c["name"].get<std::string>());
    const SpoLossOptions opts{c["beta"].get<double>(), c["clip_eps"].get<double>()};
    const auto lp_w = vec(c["lp_w"]), lp_w_ref = vec(c["lp_w_ref"]), lp_l = vec(c["lp_l"]),
               lp_l_ref = vec(c["lp_l_ref"]);
    const PairLossResult r = spo_loss(lp_w, lp_w_ref, lp_l, lp_l_ref, opts);
    check_scalar(r.loss, c["loss"], "loss");
    check_vector(r.d_w, c["d_lp_w"], "d_lp_w");
    check_vector(r.d_l, c["d_lp_l"], "d_lp_l");
    check_scalar(r.ratio_win_mean, c["ratio_win_mean"], "ratio_win_mean");
    check_scalar(r.ratio_lose_mean, c["ratio_lose_mean"], "ratio_lose_mean");
    check_scalar(r.clipped_ratio_win_mean, c["clipped_ratio_win_mean"], "clipped_ratio_win_mean");
    check_scalar(r.clipped_ratio_lose_mean, c["clipped_ratio_lose_mean"], "clipped_ratio_lose_mean");
    CHECK(r.clip_fraction == c["clip_fraction"].get<double>());
    CHECK(r.implicit_accuracy == doctest::Approx(c["implicit_accuracy"].get<double>()).epsilon(1e-15));
  }
}

TEST_CASE("D3PO loss and sign vectors match torch") {
  for (const json& c : golden()["d3po"]) {
    INFO(c["name"].get<std::string>());
    const D3poLossOptions opts{c["beta"].get<double>(), c["clip_eps"].get<double>()};
    const D3poSigns s = d3po_signs(vec(c["pref0"]), vec(c["pref1"]));
    CHECK(s.h0 == vec(c["h0"]));
    CHECK(s.h1 == vec(c["h1"]));
    const D3poLossResult r =
        d3po_loss(vec(c["lp_0"]), vec(c["lp_0_ref"]), vec(c["lp_1"]), vec(c["lp_1_ref"]), s.h0, s.h1, opts);
    check_scalar(r.loss, c["loss"], "loss");
    check_vector(r.d_lp_0, c["d_lp_0"], "d_lp_0");
    check_vector(r.d_lp_1, c["d_lp_1"], "d_lp_1");
    check_scalar(r.ratio_0_mean, c["ratio_0_mean"], "ratio_0_mean");
    check_scalar(r.ratio_1_mean, c["ratio_1_mean"], "ratio_1_mean");
    check_scalar(r.clipped_ratio_0_mean, c["clipped_ratio_0_mean"], "clipped_ratio_0_mean");
    check_scalar(r.clipped_ratio_1_mean, c["clipped_ratio_1_mean"], "clipped_ratio_1_mean");
    CHECK(r.clip_fraction == c["clip_fraction"].get<double>());
    CHECK(r.tie_fraction == c["tie_fraction"].get<double>());
    // every tie has zero gradient on both sides
    for (std::size_t i = 0; i < s.h0.size(); ++i)
      if (s.h0[i] == 0) CHECK((r.d_lp_0[i] == 0 && r.d_lp_1[i] == 0));
  }
}

TEST_CASE("DDPO loss matches torch") {
  for (const json& c : golden()["ddpo"]) {
    INFO(c["name"].get<std::string>());
    const DdpoLossOptions opts{c["clip_range"].get<double>(), c["adv_clip_max"].get<double>()};
    const DdpoLossResult r = ddpo_loss(vec(c["lp"]), vec(c["lp_old"]), vec(c["advantages"]), opts);
    check_scalar(r.loss, c["loss"], "loss");
    check_vector(r.d_lp, c["d_lp"], "d_lp");
    check_scalar(r.approx_kl, c["approx_kl"], "approx_kl");
    check_scalar(r.ratio_mean, c["ratio_mean"], "ratio_mean");
    CHECK(r.clipfrac == c["clipfrac"].get<double>());
  }
}

TEST_CASE("Diffusion-DPO loss matches torch") {
  for (const json& c : golden()["diffusion_dpo"]) {
    INFO(c["name"].get<std::string>());
    const DiffusionDpoOptions opts{c["beta"].get<double>()};
    const DiffusionDpoResult r =
        diffusion_dpo_loss(vec(c["err_w"]), vec(c["err_ref_w"]), vec(c["err_l"]), vec(c["err_ref_l"]), opts);
    check_scalar(r.loss, c["loss"], "loss");
    check_vector(r.d_w, c["d_err_w"], "d_err_w");
    check_vector(r.d_l, c["d_err_l"], "d_err_l");
    check_scalar(r.model_error_mean, c["model_error_mean"], "model_error_mean");
    check_scalar(r.ref_error_mean, c["ref_error_mean"], "ref_error_mean");
    CHECK(r.implicit_accuracy == doctest::Approx(c["implicit_accuracy"].get<double>()).epsilon(1e-15));
  }
}

TEST_CASE("PerPromptStatTracker reproduces ddpo-pytorch's advantage sequences") {
  for (const json& c : golden()["stat_tracker"]) {
    INFO(c["name"].get<std::string>());
    PerPromptStatTracker tracker({c["buffer_size"].get<std::int64_t>(), c["min_count"].get<std::int64_t>()});
    int step = 0;
    for (const json& s : c["steps"]) {
      INFO("update " << step++);
      const auto prompts = s["prompts"].get<std::vector<std::string>>();
      check_vector(tracker.update(prompts, vec(s["rewards"])), s["advantages"], "advantages");
    }
    const auto stats = tracker.stats();
    REQUIRE(stats.size() == c["final_stats"].size());
    for (const auto& [prompt, st] : c["final_stats"].items()) {
      INFO(prompt);
      REQUIRE(stats.count(prompt) == 1);
      check_scalar(stats.at(prompt).mean, st["mean"], "mean");
      check_scalar(stats.at(prompt).stddev, st["std"], "std");
      CHECK(stats.at(prompt).count == st["count"].get<std::int64_t>());
      CHECK(static_cast<std::int64_t>(tracker.buffers().at(prompt).size()) == st["count"].get<std::int64_t>());
    }
    tracker.clear();
    CHECK(tracker.stats().empty());
  }
  const json& b = golden()["batch_advantages"];
  check_vector(batch_advantages(vec(b["rewards"])), b["advantages"], "batch advantages");
}

TEST_CASE("PerPromptStatTracker by hand: batch statistics until min_count, then the prompt's last rewards") {
  PerPromptStatTracker t({2, 2});
  const std::vector<std::string> p1{"a", "b"};
  // one reward each: both prompts below min_count -> batch mean 2, std 1
  auto a1 = t.update(p1, std::vector<double>{1.0, 3.0});
  CHECK(a1[0] == doctest::Approx(-1.0 / (1.0 + 1e-6)).epsilon(1e-15));
  CHECK(a1[1] == doctest::Approx(1.0 / (1.0 + 1e-6)).epsilon(1e-15));
  // "a" now holds {1, 5}: mean 3, std 2; "c" has one reward -> batch {5, 7}: mean 6, std 1
  auto a2 = t.update(std::vector<std::string>{"a", "c"}, std::vector<double>{5.0, 7.0});
  CHECK(a2[0] == doctest::Approx(2.0 / (2.0 + 1e-6)).epsilon(1e-15));
  CHECK(a2[1] == doctest::Approx(1.0 / (1.0 + 1e-6)).epsilon(1e-15));
  // "a" overflows: the buffer keeps {5, 9} (mean 7, std 2)
  auto a3 = t.update(std::vector<std::string>{"a"}, std::vector<double>{9.0});
  CHECK(a3[0] == doctest::Approx(2.0 / (2.0 + 1e-6)).epsilon(1e-15));
  CHECK(t.buffers().at("a") == std::deque<double>{5.0, 9.0});
  CHECK(t.update({}, {}).empty());
}

TEST_CASE("SPO special values") {
  const SpoLossOptions opts = spo_sd15_loss_options;
  SUBCASE("r_w = r_l = 1 gives log 2 and the gradient beta / 2 / B") {
    const std::vector<double> lp{-0.7, 0.2, 1.3};
    const auto r = spo_loss(lp, lp, lp, lp, opts);
    CHECK(r.loss == std::log(2.0));
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(r.d_w[i] == doctest::Approx(-10.0 * 0.5 / 3).epsilon(1e-15));
      CHECK(r.d_l[i] == doctest::Approx(10.0 * 0.5 / 3).epsilon(1e-15));
    }
    CHECK(r.implicit_accuracy == 0.5);
    CHECK(r.clip_fraction == 0.0);
    CHECK(r.ratio_win_mean == 1.0);
  }
  SUBCASE("r_w >> 1, r_l << 1 reaches the minimum 0.126131 with zero gradient") {
    const std::vector<double> lp_w{2.0, 5.0}, lp_l{-3.0, -2.0}, ref{0.0, 0.0};
    const auto r = spo_loss(lp_w, ref, lp_l, ref, opts);
    // -log sigmoid(10 (log 1.1 - log 0.9)) = log(1 + exp(-2.0067069546215)) = 0.126131...
    const double minimum = std::log(1.0 + std::exp(-10.0 * (std::log(1.1) - std::log(0.9))));
    CHECK(minimum == doctest::Approx(0.126131).epsilon(1e-5));
    CHECK(r.loss == doctest::Approx(minimum).epsilon(1e-14));
    CHECK(r.d_w == std::vector<double>{0.0, 0.0});
    CHECK(r.d_l == std::vector<double>{0.0, 0.0});
    CHECK(r.clip_fraction == 1.0);
    CHECK(r.implicit_accuracy == 1.0);
    CHECK(r.clipped_ratio_win_mean == doctest::Approx(1.1).epsilon(1e-15));
    CHECK(r.clipped_ratio_lose_mean == doctest::Approx(0.9).epsilon(1e-15));
    CHECK(r.ratio_win_mean == doctest::Approx((std::exp(2.0) + std::exp(5.0)) / 2).epsilon(1e-15));
  }
  SUBCASE("a side whose ratio leaves the clip range gets zero gradient, the other keeps its own") {
    // r_w = exp(0.05) inside, r_l = exp(-0.3) < 0.9 clipped: z = 10 (0.05 - log 0.9)
    const std::vector<double> lp_w{0.05}, lp_l{-0.3}, ref{0.0};
    const auto r = spo_loss(lp_w, ref, lp_l, ref, opts);
    const double z = 10.0 * (0.05 - std::log(0.9));
    CHECK(r.loss == doctest::Approx(std::log(1.0 + std::exp(-z))).epsilon(1e-14));
    CHECK(r.d_w[0] == doctest::Approx(-10.0 / (1.0 + std::exp(z))).epsilon(1e-14));
    CHECK(r.d_l[0] == 0.0);
    CHECK(r.clip_fraction == 0.5);
    // and the other way round
    const auto s = spo_loss(std::vector<double>{0.3}, ref, std::vector<double>{-0.02}, ref, opts);
    CHECK(s.d_w[0] == 0.0);
    CHECK(s.d_l[0] == doctest::Approx(10.0 / (1.0 + std::exp(10.0 * (std::log(1.1) + 0.02)))).epsilon(1e-14));
  }
  SUBCASE("a ratio exactly on the clip bound keeps its gradient (torch.clamp: min <= x <= max)") {
    const double d = 0.0953;
    const SpoLossOptions edge{10.0, std::exp(d) - 1.0};  // 1 + eps == exp(d) exactly
    REQUIRE(1.0 + edge.clip_eps == std::exp(d));
    const auto r = spo_loss(std::vector<double>{d}, std::vector<double>{0.0}, std::vector<double>{0.0},
                            std::vector<double>{0.0}, edge);
    CHECK(r.d_w[0] != 0.0);
    CHECK(r.clip_fraction == 0.0);
    const auto c = clipped_ratio(d + 1e-12, 0.0, edge.clip_eps);
    CHECK_FALSE(c.passes_gradient);
  }
  SUBCASE("log_sigmoid and sigmoid stay finite and accurate in the tails") {
    CHECK(log_sigmoid(0.0) == -std::log(2.0));
    CHECK(log_sigmoid(-800.0) == -800.0);
    CHECK(log_sigmoid(800.0) == 0.0);
    CHECK(log_sigmoid(40.0) == doctest::Approx(-std::exp(-40.0)).epsilon(1e-14));
    CHECK(sigmoid(-800.0) == 0.0);
    CHECK(sigmoid(-40.0) == doctest::Approx(std::exp(-40.0)).epsilon(1e-14));
    CHECK(sigmoid(800.0) == 1.0);
  }
}

TEST_CASE("DDPO and Diffusion-DPO values by hand") {
  SUBCASE("DDPO: r = 1, clamped advantages, the clipped side of the PPO max") {
    const DdpoLossOptions opts{0.2, 5.0};
    // items: (r = 1, A = 2), (r = e^0.5 > 1.2, A = 10 -> 5: clipped term wins, no gradient),
    //        (r = e^0.5, A = -1: unclipped term wins, gradient -A r / B), (r = e^-0.5 < 0.8, A = 3: unclipped wins)
    const std::vector<double> lp{0.0, 0.5, 0.5, -0.5}, old{0.0, 0.0, 0.0, 0.0}, adv{2.0, 10.0, -1.0, 3.0};
    const auto r = ddpo_loss(lp, old, adv, opts);
    const double e = std::exp(0.5), ie = std::exp(-0.5);
    CHECK(r.loss == doctest::Approx((-2.0 - 5.0 * 1.2 + e - 3.0 * ie) / 4).epsilon(1e-14));
    CHECK(r.d_lp[0] == doctest::Approx(-2.0 / 4).epsilon(1e-15));
    CHECK(r.d_lp[1] == 0.0);
    CHECK(r.d_lp[2] == doctest::Approx(e / 4).epsilon(1e-15));
    CHECK(r.d_lp[3] == doctest::Approx(-3.0 * ie / 4).epsilon(1e-15));
    CHECK(r.approx_kl == doctest::Approx(0.5 * 0.75 / 4).epsilon(1e-15));
    CHECK(r.clipfrac == 0.75);
  }
  SUBCASE("Diffusion-DPO: a tie counts half, a large margin does not overflow") {
    const DiffusionDpoOptions opts = diffusion_dpo_sd15_options;
    // item 0: model == ref -> inside 0; item 1: model_diff - ref_diff = 1 -> inside = -2500
    const std::vector<double> err_w{0.2, 1.2}, err_ref_w{0.2, 0.2}, err_l{0.1, 0.1}, err_ref_l{0.1, 0.1};
    const auto r = diffusion_dpo_loss(err_w, err_ref_w, err_l, err_ref_l, opts);
    CHECK(r.loss == doctest::Approx((std::log(2.0) + 2500.0) / 2).epsilon(1e-14));
    CHECK(r.implicit_accuracy == 0.25);
    CHECK(r.d_w[0] == doctest::Approx(0.5 * 5000 * 0.5 / 2).epsilon(1e-15));
    CHECK(r.d_w[1] == doctest::Approx(0.5 * 5000 / 2).epsilon(1e-15));
    CHECK(r.d_l[1] == -r.d_w[1]);
    CHECK(r.model_error_mean == doctest::Approx((0.2 + 1.2 + 0.1 + 0.1) / 4).epsilon(1e-15));
  }
}

TEST_CASE("every gradient matches finite differences away from the clip kinks") {
  MESSAGE("seed " << seed);
  const std::size_t b = 7;
  std::vector<double> ref_a, ref_b;
  for (std::size_t i = 0; i < b; ++i) {
    ref_a.push_back(uniform(1, i, -1.5, 0.5));
    ref_b.push_back(uniform(2, i, -1.5, 0.5));
  }
  SUBCASE("SPO") {
    for (const SpoLossOptions opts : {SpoLossOptions{10.0, 0.1}, SpoLossOptions{2.0, 0.3}}) {
      const auto lp_w = plus(ref_a, log_ratios(3, b, opts.clip_eps, -0.3, 0.3, 1e-3));
      const auto lp_l = plus(ref_b, log_ratios(4, b, opts.clip_eps, -0.3, 0.3, 1e-3));
      auto res = fd_check({lp_w, lp_l}, {"lp_w", "lp_l"}, [&](const std::vector<Tensor<double>>& x) {
        auto r = spo_loss(span_of(x[0]), ref_a, span_of(x[1]), ref_b, opts);
        return std::pair{r.loss, std::vector{r.d_w, r.d_l}};
      });
      INFO(res.report << res.worst);
      CHECK(res.ok);
    }
  }
  SUBCASE("D3PO") {
    const D3poSigns s = d3po_signs(std::vector<double>{1, 0, 2, 2, 0, 1, 1}, std::vector<double>{0, 0, 1, 3, 2, 1, 2});
    for (const D3poLossOptions opts : {d3po_default_loss_options, D3poLossOptions{5.0, 0.2}}) {
      const auto lp_0 = plus(ref_a, log_ratios(5, b, opts.clip_eps, -0.3, 0.3, 1e-3));
      const auto lp_1 = plus(ref_b, log_ratios(6, b, opts.clip_eps, -0.3, 0.3, 1e-3));
      auto res = fd_check({lp_0, lp_1}, {"lp_0", "lp_1"}, [&](const std::vector<Tensor<double>>& x) {
        auto r = d3po_loss(span_of(x[0]), ref_a, span_of(x[1]), ref_b, s.h0, s.h1, opts);
        return std::pair{r.loss, std::vector{r.d_lp_0, r.d_lp_1}};
      });
      INFO(res.report << res.worst);
      CHECK(res.ok);
    }
  }
  SUBCASE("DDPO") {
    std::vector<double> adv;
    for (std::size_t i = 0; i < b; ++i) adv.push_back(uniform(7, i, -7.0, 7.0));
    // (options, log-ratio spread, kink gap, finite-difference step)
    for (const auto& [opts, spread, gap, step] : {std::tuple{DdpoLossOptions{0.2, 5.0}, 0.5, 1e-3, 1e-4},
                                                  std::tuple{ddpo_default_loss_options, 4e-4, 2e-5, 1e-7}}) {
      const auto lp = plus(ref_a, log_ratios(8, b, opts.clip_range, -spread, spread, gap));
      auto res = fd_check(
          {lp}, {"lp"},
          [&](const std::vector<Tensor<double>>& x) {
            auto r = ddpo_loss(span_of(x[0]), ref_a, adv, opts);
            return std::pair{r.loss, std::vector<std::vector<double>>{r.d_lp}};
          },
          step);
      INFO(res.report << res.worst);
      CHECK(res.ok);
    }
  }
  SUBCASE("Diffusion-DPO") {
    std::vector<double> err_ref_w, err_ref_l, err_w, err_l;
    for (std::size_t i = 0; i < b; ++i) {
      err_ref_w.push_back(uniform(9, i, 0.05, 0.3));
      err_ref_l.push_back(uniform(10, i, 0.05, 0.3));
      err_w.push_back(err_ref_w[i] + uniform(11, i, -0.002, 0.002));
      err_l.push_back(err_ref_l[i] + uniform(12, i, -0.002, 0.002));
    }
    for (const double beta : {1.0, 5000.0}) {
      auto res = fd_check(
          {err_w, err_l}, {"err_w", "err_l"},
          [&](const std::vector<Tensor<double>>& x) {
            auto r = diffusion_dpo_loss(span_of(x[0]), err_ref_w, span_of(x[1]), err_ref_l, DiffusionDpoOptions{beta});
            return std::pair{r.loss, std::vector{r.d_w, r.d_l}};
          },
          1e-4 / beta);
      INFO("beta " << beta << "\n" << res.report << res.worst);
      CHECK(res.ok);
    }
  }
}

TEST_CASE("invalid options and inputs are errors that name the values") {
  const std::vector<double> a{0.1, 0.2, 0.3}, two{0.1, 0.2}, nan{0.1, std::nan(""), 0.3}, empty{};
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const spo::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  for (const SpoLossOptions o : {SpoLossOptions{0.0, 0.1}, SpoLossOptions{-1.0, 0.1}, SpoLossOptions{NAN, 0.1},
                                 SpoLossOptions{10.0, 0.0}, SpoLossOptions{10.0, 1.0}, SpoLossOptions{10.0, -0.1}}) {
    CHECK_THROWS_AS(validate(o), spo::error);
    CHECK_THROWS_AS(spo_loss(a, a, a, a, o), spo::error);
  }
  CHECK(message([&] {
          validate(SpoLossOptions{10.0, 1.5});
        }).find("loss.clip_eps: must lie in (0, 1), got 1.5") != std::string::npos);
  CHECK(message([&] { spo_loss(a, a, two, a, spo_sd15_loss_options); }).find("lp_w has 3 items but lp_l has 2") !=
        std::string::npos);
  CHECK(message([&] { spo_loss(a, a, a, nan, spo_sd15_loss_options); }).find("lp_l_ref[1] = nan is not finite") !=
        std::string::npos);
  CHECK_THROWS_AS(spo_loss(empty, empty, empty, empty, spo_sd15_loss_options), spo::error);

  const std::vector<double> h0{1, -1, 0}, h1{-1, 1, 0}, bad_h1{-1, 1, 1}, half{0.5, -0.5, 0};
  CHECK_NOTHROW(d3po_loss(a, a, a, a, h0, h1, d3po_default_loss_options));
  CHECK(message([&] { d3po_loss(a, a, a, a, h0, bad_h1, d3po_default_loss_options); }).find("(h0, h1)[2] = (0, 1)") !=
        std::string::npos);
  CHECK_THROWS_AS(d3po_loss(a, a, a, a, half, half, d3po_default_loss_options), spo::error);
  CHECK_THROWS_AS(d3po_loss(a, a, a, a, h0, h1, D3poLossOptions{0.1, 2.0}), spo::error);
  CHECK_THROWS_AS(d3po_loss(a, a, two, a, h0, h1, d3po_default_loss_options), spo::error);
  CHECK_THROWS_AS(d3po_signs(a, nan), spo::error);

  CHECK_THROWS_AS(validate(DdpoLossOptions{0.0, 5.0}), spo::error);
  CHECK_THROWS_AS(validate(DdpoLossOptions{1.0, 5.0}), spo::error);
  CHECK_THROWS_AS(validate(DdpoLossOptions{1e-4, 0.0}), spo::error);
  CHECK_THROWS_AS(validate(DdpoLossOptions{1e-4, INFINITY}), spo::error);
  CHECK_THROWS_AS(ddpo_loss(a, two, a, ddpo_default_loss_options), spo::error);
  CHECK_THROWS_AS(ddpo_loss(a, a, nan, ddpo_default_loss_options), spo::error);
  CHECK_THROWS_AS(batch_advantages(empty), spo::error);

  CHECK_THROWS_AS(validate(DiffusionDpoOptions{0.0}), spo::error);
  CHECK_THROWS_AS(diffusion_dpo_loss(a, a, a, a, DiffusionDpoOptions{-5.0}), spo::error);
  CHECK_THROWS_AS(diffusion_dpo_loss(a, a, nan, a, diffusion_dpo_sd15_options), spo::error);
  CHECK(message([&] {
          diffusion_dpo_loss(a, a, std::vector<double>{0.1, -0.2, 0.3}, a, diffusion_dpo_sd15_options);
        }).find("negative squared error at item 1") != std::string::npos);

  CHECK_THROWS_AS(PerPromptStatTracker({0, 0}), spo::error);
  CHECK(message([&] {
          PerPromptStatTracker({4, 5});
        }).find("stat_tracker.min_count: must lie in [0, buffer_size = 4], got 5") != std::string::npos);
  PerPromptStatTracker t({4, 2});
  const std::vector<std::string> prompts{"a", "b", "a"};
  CHECK(message([&] { t.update(prompts, two); }).find("3 prompts but 2 rewards") != std::string::npos);
  CHECK_THROWS_AS(t.update(prompts, nan), spo::error);
  CHECK(t.buffers().empty());
}

TEST_CASE("loss options round-trip through JSON; a missing key is an error") {
  const auto spo_j = io::json::parse(R"({"beta": 10.0, "clip_eps": 0.1})");
  CHECK(io::to_json(io::from_json<SpoLossOptions>(spo_j, "spo.json")) == spo_j);
  CHECK_THROWS_AS(io::from_json<SpoLossOptions>(io::json::parse(R"({"beta": 10.0})"), "spo.json"), spo::error);
  const auto d3po_j = io::json::parse(R"({"beta": 0.1, "clip_eps": 0.1})");
  CHECK(io::to_json(io::from_json<D3poLossOptions>(d3po_j, "d3po.json")) == d3po_j);
  const auto ddpo_j = io::json::parse(R"({"clip_range": 0.0001, "adv_clip_max": 5.0})");
  CHECK(io::to_json(io::from_json<DdpoLossOptions>(ddpo_j, "ddpo.json")) == ddpo_j);
  const auto dpo_j = io::json::parse(R"({"beta": 5000.0})");
  CHECK(io::to_json(io::from_json<DiffusionDpoOptions>(dpo_j, "dpo.json")) == dpo_j);
  const auto tracker_j = io::json::parse(R"({"buffer_size": 16, "min_count": 16})");
  const auto tracker = io::from_json<StatTrackerOptions>(tracker_j, "tracker.json");
  CHECK(tracker.buffer_size == ddpo_default_tracker_options.buffer_size);
  CHECK(io::to_json(tracker) == tracker_j);
}

TEST_CASE("step DPO loss: hand values, finite differences, equality with SPO's loss inside the clip range") {
  const StepDpoOptions opts{10.0};
  SUBCASE("hand values: z = beta ((w - w_ref) - (l - l_ref)), loss = log(1 + exp(-z))") {
    const std::vector<double> w{0.02, -0.01}, w_ref{0.0, 0.0}, l{-0.01, 0.03}, l_ref{0.0, 0.0};
    const auto r = step_dpo_loss(w, w_ref, l, l_ref, opts);
    const double z0 = 10.0 * 0.03, z1 = 10.0 * -0.04;
    CHECK(r.loss == doctest::Approx((std::log1p(std::exp(-z0)) + std::log1p(std::exp(-z1))) / 2).epsilon(1e-14));
    CHECK(r.d_w[0] == doctest::Approx(-10.0 / (1 + std::exp(z0)) / 2).epsilon(1e-14));
    CHECK(r.d_l[1] == doctest::Approx(10.0 / (1 + std::exp(z1)) / 2).epsilon(1e-14));
    CHECK(r.implicit_accuracy == 0.5);
    CHECK(r.clip_fraction == 0.0);
    CHECK(r.ratio_win_mean == doctest::Approx((std::exp(0.02) + std::exp(-0.01)) / 2).epsilon(1e-14));
  }
  SUBCASE("inside [1 - eps, 1 + eps] every ratio passes SPO's clamp: both losses agree to rounding") {
    const std::size_t b = 9;
    std::vector<double> ref_a, ref_b;
    for (std::size_t i = 0; i < b; ++i) {
      ref_a.push_back(uniform(7, i, -1.5, 0.5));
      ref_b.push_back(uniform(8, i, -1.5, 0.5));
    }
    const auto lp_w = plus(ref_a, log_ratios(9, b, 0.1, -0.09, 0.09, 0.0));
    const auto lp_l = plus(ref_b, log_ratios(10, b, 0.1, -0.09, 0.09, 0.0));
    const auto d = step_dpo_loss(lp_w, ref_a, lp_l, ref_b, opts);
    const auto s = spo_loss(lp_w, ref_a, lp_l, ref_b, SpoLossOptions{10.0, 0.1});
    CHECK(s.clip_fraction == 0.0);
    CHECK(rel_error(d.loss, s.loss) < 1e-12);
    for (std::size_t i = 0; i < b; ++i) {
      CHECK(rel_error(d.d_w[i], s.d_w[i]) < 1e-12);
      CHECK(rel_error(d.d_l[i], s.d_l[i]) < 1e-12);
    }
  }
  SUBCASE("outside it the unclipped loss keeps the gradient SPO's clamp removes") {
    const std::vector<double> w{0.5}, l{0.0}, ref{0.0};
    const auto d = step_dpo_loss(w, ref, l, ref, opts);
    const auto s = spo_loss(w, ref, l, ref, SpoLossOptions{10.0, 0.1});
    CHECK(s.d_w[0] == 0.0);
    CHECK(d.d_w[0] < -1e-4);
  }
  SUBCASE("finite differences over large and small log-ratios (no kinks)") {
    const std::size_t b = 7;
    std::vector<double> ref_a, ref_b, lp_w, lp_l;
    for (std::size_t i = 0; i < b; ++i) {
      ref_a.push_back(uniform(11, i, -1.5, 0.5));
      ref_b.push_back(uniform(12, i, -1.5, 0.5));
      lp_w.push_back(ref_a.back() + uniform(13, i, -1.0, 1.0));
      lp_l.push_back(ref_b.back() + uniform(14, i, -1.0, 1.0));
    }
    for (const StepDpoOptions o : {StepDpoOptions{10.0}, StepDpoOptions{0.5}}) {
      auto res = fd_check({lp_w, lp_l}, {"lp_w", "lp_l"}, [&](const std::vector<Tensor<double>>& x) {
        auto r = step_dpo_loss(span_of(x[0]), ref_a, span_of(x[1]), ref_b, o);
        return std::pair{r.loss, std::vector{r.d_w, r.d_l}};
      });
      INFO(res.report << res.worst);
      CHECK(res.ok);
    }
  }
  SUBCASE("bad options and inputs are errors naming the key or the item") {
    const std::vector<double> a{0.1, 0.2}, one{0.1}, nan{0.1, std::nan("")};
    CHECK_THROWS_WITH_AS(step_dpo_loss(a, a, a, a, StepDpoOptions{0.0}),
                         doctest::Contains("loss.beta: must be finite and > 0, got 0"), spo::error);
    CHECK_THROWS_WITH_AS(step_dpo_loss(a, a, one, a, opts), doctest::Contains("lp_w has 2 items but lp_l has 1"),
                         spo::error);
    CHECK_THROWS_WITH_AS(step_dpo_loss(a, nan, a, a, opts), doctest::Contains("lp_w_ref[1] = nan is not finite"),
                         spo::error);
  }
  static_assert(StepPairLoss<StepDpoLoss> && StepPairLoss<SpoLoss> && PairLoss<DiffusionDpoLoss>);
  static_assert(!StepPairLoss<DiffusionDpoLoss>);
}
