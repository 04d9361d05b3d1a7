// SPDX-License-Identifier: MIT
// Golden tests against diffusers' DDIMScheduler (tools/reference/ddim_golden.py ->
// tests/data/diffusion/ddim_golden.json).
#include <fstream>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "spo/diffusion/ddim.hpp"

using namespace spo;
using namespace spo::diffusion;
using nlohmann::json;

namespace {

const json& golden() {
  static const json j = [] {
    std::ifstream f(SPO_TEST_DATA_DIR "/diffusion/ddim_golden.json");
    REQUIRE(f.good());
    return json::parse(f);
  }();
  return j;
}

template <Scalar T>
Tensor<T> tensor_of(const json& values, const json& shape) {
  std::vector<std::int64_t> dims = shape.get<std::vector<std::int64_t>>();
  std::vector<double> v = values.get<std::vector<double>>();
  std::vector<T> tv(v.begin(), v.end());
  return Tensor<T>(Shape(dims.begin(), dims.end()), tv);
}

/// max |a - b| / max(|b|, 1): relative for large values, absolute below 1.
template <Scalar T>
double rel_error(const Tensor<T>& a, const Tensor<T>& b) {
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / std::max(std::abs(double(b[i])), 1.0));
  return worst;
}

template <Parameterization P, class F>
void with_prediction(const std::string& name, F&& f) {
  if (name == P::name) f.template operator()<P>();
}

template <class F>
void dispatch(const std::string& schedule, const std::string& prediction, F&& f) {
  auto with_schedule = [&]<class S>(S s) {
    with_prediction<EpsilonPrediction>(prediction, [&]<class P>() { f(s, P{}); });
    with_prediction<VPrediction>(prediction, [&]<class P>() { f(s, P{}); });
    with_prediction<SamplePrediction>(prediction, [&]<class P>() { f(s, P{}); });
  };
  if (schedule == "linear")
    with_schedule(LinearBetas{});
  else if (schedule == "scaled_linear")
    with_schedule(ScaledLinearBetas{});
  else if (schedule == "squaredcos_cap_v2")
    with_schedule(SquaredCosCapV2Betas{});
  else
    FAIL("unknown schedule " << schedule);
}

}  // namespace

TEST_CASE("betas and alphas_cumprod match diffusers bitwise (float32)") {
  const auto& s = golden()["schedules"];
  auto check = [&](auto schedule) {
    const std::string name(decltype(schedule)::name);
    NoiseSchedule ns(schedule, 1000, false);
    const auto betas = s[name]["betas"].get<std::vector<double>>();
    const auto ac = s[name]["alphas_cumprod"].get<std::vector<double>>();
    REQUIRE(betas.size() == 1000);
    int differ_b = 0, differ_a = 0;
    for (std::size_t i = 0; i < 1000; ++i) {
      differ_b += ns.betas()[i] != static_cast<float>(betas[i]);
      differ_a += ns.alphas_cumprod()[i] != static_cast<float>(ac[i]);
    }
    INFO(name << ": " << differ_b << " betas and " << differ_a << " alphas_cumprod differ");
    CHECK(differ_b == 0);
    CHECK(differ_a == 0);
  };
  check(LinearBetas{});
  check(ScaledLinearBetas{});
  check(SquaredCosCapV2Betas{});
  // Sanity values of docs/algorithm.md section 1.1 (float64 there).
  NoiseSchedule sd(ScaledLinearBetas{}, 1000, false);
  CHECK(sd.alpha_cumprod(501) == doctest::Approx(0.274999067).epsilon(1e-6));
  CHECK(sd.final_alpha_cumprod() == doctest::Approx(0.99915).epsilon(1e-6));
  CHECK(NoiseSchedule(ScaledLinearBetas{}, 1000, true).final_alpha_cumprod() == 1.0f);
}

TEST_CASE("set_timesteps matches diffusers for every spacing, N and steps_offset") {
  for (const auto& c : golden()["timesteps"]) {
    const auto spacing = parse_timestep_spacing(c["spacing"].get<std::string>());
    const auto expected = c["timesteps"].get<std::vector<std::int64_t>>();
    const auto got = make_timesteps(spacing, c["n"].get<int>(), 1000, c["steps_offset"].get<int>());
    INFO(c["spacing"] << " N=" << c["n"] << " offset=" << c["steps_offset"]);
    CHECK(got == expected);
  }
  CHECK(make_timesteps(TimestepSpacing::leading, 20, 1000, 1).front() == 951);
  CHECK_THROWS_AS(make_timesteps(TimestepSpacing::leading, 1001, 1000, 0), spo::error);
  CHECK_THROWS_WITH_AS(parse_timestep_spacing("uniform"), doctest::Contains("uniform"), spo::error);
}

TEST_CASE_TEMPLATE("DDIM step matches diffusers (eta, prediction type, clip_sample, set_alpha_to_one)", T, float,
                   double) {
  int cases = 0;
  for (const auto& c : golden()["steps"]) {
    dispatch(c["schedule"], c["prediction_type"], [&](auto schedule, auto prediction) {
      using S = decltype(schedule);
      using P = decltype(prediction);
      DdimConfig cfg;
      cfg.clip_sample = c["clip_sample"];
      cfg.clip_sample_range = 1.0;
      cfg.set_alpha_to_one = c["set_alpha_to_one"];
      Ddim<S, P> ddim(schedule, cfg);
      ddim.set_timesteps(c["num_inference_steps"]);
      const auto x = tensor_of<T>(c["sample"], c["shape"]);
      const auto u = tensor_of<T>(c["model_output"], c["shape"]);
      const auto z = tensor_of<T>(c["noise"], c["shape"]);
      const double eta = c["eta"];
      auto out = ddim.step(u, c["timestep"].get<std::int64_t>(), x, eta, nullptr, &z);
      // float32 reference: its own rounding is amplified where 1 - abar_t is small (t = 1, sample prediction).
      const double e1 = rel_error(out.prev_sample, tensor_of<T>(c["prev_sample"], c["shape"]));
      const double e2 = rel_error(out.pred_original_sample, tensor_of<T>(c["pred_original_sample"], c["shape"]));
      // float64 reference (the same diffusers code on float64 inputs).
      const double e3 = rel_error(out.prev_sample, tensor_of<T>(c["prev_sample_f64"], c["shape"]));
      const double e4 = rel_error(out.pred_original_sample, tensor_of<T>(c["pred_original_sample_f64"], c["shape"]));
      INFO(c["schedule"] << " " << c["prediction_type"] << " eta=" << eta << " clip=" << c["clip_sample"]
                         << " alpha_one=" << c["set_alpha_to_one"] << " t=" << c["timestep"] << ": " << e1 << ", " << e2
                         << ", " << e3 << ", " << e4);
      CHECK(e1 <= 2e-5);
      CHECK(e2 <= 1e-5);
      const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-12;
      CHECK(e3 <= tol);
      CHECK(e4 <= tol);
      ++cases;
    });
  }
  CHECK(cases == static_cast<int>(golden()["steps"].size()));
}

TEST_CASE("SPO/DDPO log-prob and its analytic gradient match the torch reference (float64)") {
  for (const auto& c : golden()["logprobs"]) {
    dispatch(c["schedule"], c["prediction_type"], [&](auto schedule, auto prediction) {
      Ddim<decltype(schedule), decltype(prediction)> ddim(schedule, DdimConfig{});
      ddim.set_timesteps(c["num_inference_steps"]);
      const auto t = c["timesteps"].get<std::vector<std::int64_t>>();
      const auto x = tensor_of<double>(c["sample"], c["shape"]);
      const auto u = tensor_of<double>(c["model_output"], c["shape"]);
      const auto prev = tensor_of<double>(c["prev_sample"], c["shape"]);
      const double eta = c["eta"];
      const auto lp = ddim.log_prob(u, t, x, prev, eta);
      const auto expected = c["log_prob"].get<std::vector<double>>();
      const auto stds = c["std"].get<std::vector<double>>();
      const auto tr = ddim.transitions(t, eta);
      for (std::size_t b = 0; b < expected.size(); ++b) {
        INFO(c["schedule"] << " " << c["prediction_type"] << " t=" << t[b]);
        // alphas_cumprod is float32 in both; the remaining difference is float64 rounding.
        CHECK(lp[b] == doctest::Approx(expected[b]).epsilon(1e-9));
        CHECK(tr[b].std == doctest::Approx(stds[b]).epsilon(1e-9));
      }
      auto mu = ddim.mean(ddim.predict(u, x, t), tr);
      CHECK(rel_error(mu, tensor_of<double>(c["mean"], c["shape"])) <= 1e-9);
      const auto up = tensor_of<double>(c["upstream"], json::array({3}));
      const auto grad = ddim.log_prob_backward(u, t, x, prev, eta, up);
      CHECK(rel_error(grad, tensor_of<double>(c["grad_model_output"], c["shape"])) <= 1e-9);
    });
  }
}

TEST_CASE("log-prob constants: at x_prev = mu it equals -log(std) - log(sqrt(2 pi)); eta = 0 is rejected") {
  Ddim<ScaledLinearBetas, EpsilonPrediction> ddim(ScaledLinearBetas{}, DdimConfig{1000, TimestepSpacing::leading, 1});
  ddim.set_timesteps(20);
  Generator g{9, 0};
  auto x = randn<double>(Shape{2, 1, 4, 4}, g);
  auto u = randn<double>(Shape{2, 1, 4, 4}, g);
  std::vector<std::int64_t> t{751, 1};
  auto tr = ddim.transitions(t, 1.0);
  // docs/algorithm.md 1.3: t=751 -> 701: std 0.557616496, dir 0.779196464; t=1 (clamped to 0): std 0.0206483202.
  CHECK(tr[0].std == doctest::Approx(0.557616496).epsilon(1e-6));
  CHECK(tr[0].dir == doctest::Approx(0.779196464).epsilon(1e-6));
  CHECK(tr[1].std == doctest::Approx(0.0206483202).epsilon(1e-6));
  auto mu = ddim.mean(ddim.predict(u, x, t), tr);
  auto lp = ddim.log_prob(u, t, x, mu, 1.0);
  CHECK(lp[0] == doctest::Approx(-std::log(tr[0].std) - 0.9189385332046727).epsilon(1e-12));
  CHECK_THROWS_AS(ddim.log_prob(u, t, x, mu, 0.0), spo::error);
}

TEST_CASE("children share one mean; their empirical std matches the transition std") {
  Ddim<ScaledLinearBetas, EpsilonPrediction> ddim(ScaledLinearBetas{}, DdimConfig{1000, TimestepSpacing::leading, 1});
  ddim.set_timesteps(20);
  Generator g{1, 0};
  auto x = randn<double>(Shape{2, 1, 32, 32}, g);
  auto u = randn<double>(Shape{2, 1, 32, 32}, g);
  std::vector<std::int64_t> t{751, 751};
  auto tr = ddim.transitions(t, 1.0);
  auto mu = ddim.mean(ddim.predict(u, x, t), tr);
  auto children = ddim.sample_children(mu, tr, 4, g);
  CHECK(children.shape() == Shape{4, 2, 1, 32, 32});
  double s2 = 0;
  for (std::int64_t c = 0; c < 4; ++c)
    for (std::int64_t i = 0; i < mu.numel(); ++i) {
      const double d = children[c * mu.numel() + i] - mu[i];
      s2 += d * d;
    }
  CHECK(std::sqrt(s2 / (4 * mu.numel())) == doctest::Approx(tr[0].std).epsilon(0.03));
  CHECK(max_abs_diff<double>(children.view().slice(0, 1).reshaped(mu.shape()),
                             children.view().slice(1, 1).reshaped(mu.shape())) > 0.1);
}

TEST_CASE("classifier-free guidance combines eps_u + g (eps_c - eps_u)") {
  Tensor<double> eu(Shape{2}, {1.0, -1.0}), ec(Shape{2}, {2.0, 0.5});
  auto e = guide(eu, ec, 5.0);
  CHECK(e[0] == doctest::Approx(6.0));
  CHECK(e[1] == doctest::Approx(6.5));
}
