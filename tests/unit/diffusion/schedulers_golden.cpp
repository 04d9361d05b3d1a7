// SPDX-License-Identifier: MIT
// Golden tests of the inference schedulers against diffusers 0.26.1 (tools/reference/scheduler_golden.py ->
// tests/data/diffusion/schedulers_golden.json), and the scheduler_config.json errors.
#include <cmath>
#include <fstream>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "spo/diffusion/scheduler_json.hpp"

using namespace spo;
using namespace spo::diffusion;
using nlohmann::json;

namespace {

const json& golden() {
  static const json j = [] {
    std::ifstream f(SPO_TEST_DATA_DIR "/diffusion/schedulers_golden.json");
    REQUIRE(f.good());
    return json::parse(f);
  }();
  return j;
}

Tensor<double> tensor_of(const json& values, const json& shape) {
  const auto dims = shape.get<std::vector<std::int64_t>>();
  return Tensor<double>(Shape(dims.begin(), dims.end()), values.get<std::vector<double>>());
}

/// max |a - b| / max(|b|, 1).
double rel_error(const Tensor<double>& a, const Tensor<double>& b) {
  REQUIRE(a.numel() == b.numel());
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1.0));
  return worst;
}

/// The reference's model: u = (0.9 - 0.5 t / 1000) x + 0.3 cos(t / 97) b, b_i = sin(0.37 i + 0.1).
Tensor<double> fake_model(const Tensor<double>& x, double t) {
  Tensor<double> u(x.shape());  // x.shape
  const double a = 0.9 - 0.5 * t / 1000.0, c = 0.3 * std::cos(t / 97.0);
  for (std::int64_t i = 0; i < x.numel(); ++i) u[i] = a * x[i] + c * std::sin(0.37 * static_cast<double>(i) + 0.1);
  return u;
}

std::string error_of(const json& config, std::string_view override_class = {}) {
  try {
    (void)scheduler_from_config(config, override_class);
  } catch (const config_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

static_assert(SamplingScheduler<DdimSampling> && SamplingScheduler<EulerDiscrete> &&
              SamplingScheduler<EulerAncestral> && SamplingScheduler<DpmSolverMultistep> && SamplingScheduler<Pndm>);
static_assert(SamplingScheduler<EulerDiscrete, float>);

TEST_CASE("inference schedulers reproduce diffusers' sampling chains (float64)") {
  double worst_step = 0, worst_input = 0, worst_sigma_init = 0;
  int chains = 0, steps = 0;
  for (const auto& c : golden()["cases"]) {
    const std::string name = c["name"];
    INFO(name);
    const double eta = c.contains("eta") ? c["eta"].get<double>() : 0.0;
    AnyScheduler any = scheduler_from_config(c["config"], {}, eta);
    std::visit(
        [&](auto& s) {
          s.set_timesteps(c["num_inference_steps"]);
          const auto ref_ts = c["timesteps"].get<std::vector<double>>();
          REQUIRE(s.timesteps().size() == ref_ts.size());
          if (c["config"].value("use_karras_sigmas", false) && c["config"]["_class_name"] == "EulerDiscreteScheduler") {
            // Karras timesteps interpolate numpy's float32 log table, which numpy's SIMD log computes within 1 ulp
            // (190 of 1000 entries differ from the correctly rounded log): the float32 timesteps agree to 1 ulp.
            for (std::size_t i = 0; i < ref_ts.size(); ++i) {
              const auto r = static_cast<float>(ref_ts[i]);
              CHECK(std::abs(s.timesteps()[i] - ref_ts[i]) <= std::nextafter(r, 1e9f) - r);
            }
          } else {
            CHECK(s.timesteps() == ref_ts);
          }
          if constexpr (requires { s.sigmas(); }) {
            const auto expected = c["sigmas"].get<std::vector<double>>();
            REQUIRE(s.sigmas().size() == expected.size());
            int differ = 0;
            for (std::size_t i = 0; i < expected.size(); ++i)
              differ += s.sigmas()[i] != static_cast<float>(expected[i]);
            INFO(differ << " float32 sigmas differ");
            CHECK(differ == 0);
          }
          const double sigma0 = c["init_noise_sigma"];
          worst_sigma_init = std::max(worst_sigma_init, std::abs(s.init_noise_sigma() - sigma0) / sigma0);
          CHECK(s.init_noise_sigma() == doctest::Approx(sigma0).epsilon(1e-14));
          auto x = tensor_of(c["initial_sample"], c["shape"]);
          const auto& ts = s.timesteps();
          REQUIRE(ts.size() == c["steps"].size());
          for (std::size_t i = 0; i < ts.size(); ++i) {
            const auto& st = c["steps"][i];
            const auto x_in = s.scale_model_input(x, ts[i]);
            if (st.contains("scaled_input")) {
              const double e = rel_error(x_in, tensor_of(st["scaled_input"], c["shape"]));
              worst_input = std::max(worst_input, e);
              CHECK(e <= 1e-10);
            } else {
              CHECK(rel_error(x_in, x) == 0.0);
            }
            const auto u = fake_model(x_in, ref_ts[i]);  // the reference model saw the reference's timestep
            if (st.contains("noise")) {
              const auto z = tensor_of(st["noise"], c["shape"]);
              x = s.step(u, ts[i], x, StepNoise<double>(z));
            } else {
              x = s.step(u, ts[i], x, StepNoise<double>());
            }
            const double e = rel_error(x, tensor_of(st["prev_sample"], c["shape"]));
            worst_step = std::max(worst_step, e);
            INFO("step " << i << " t=" << ts[i] << ": " << e);
            CHECK(e <= 1e-10);
            ++steps;
          }
        },
        any);
    ++chains;
  }
  MESSAGE("chains " << chains << ", steps " << steps << ": max step error " << worst_step << ", scaled input "
                    << worst_input << ", init_noise_sigma " << worst_sigma_init);
  CHECK(chains == 15);
}

TEST_CASE("scheduler_config.json errors name the class or key") {
  const json sd15 = json::parse(R"({"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
    "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false})");
  CHECK(error_of(sd15) == "no error");
  CHECK(std::holds_alternative<Pndm>(scheduler_from_config(sd15)));
  // the override reads the same keys into another class (diffusers' from_config)
  const auto ddim = scheduler_from_config(sd15, "ddim");
  REQUIRE(std::holds_alternative<DdimSampling>(ddim));
  CHECK(std::get<DdimSampling>(ddim).config().ddim.clip_sample == false);
  CHECK(std::get<DdimSampling>(ddim).config().ddim.steps_offset == 1);
  CHECK(std::holds_alternative<EulerAncestral>(scheduler_from_config(sd15, "euler_a")));

  json j = sd15;
  j["_class_name"] = "LMSDiscreteScheduler";
  CHECK(error_of(j).find("LMSDiscreteScheduler") != std::string::npos);
  CHECK(error_of(j).find("--scheduler") != std::string::npos);
  CHECK(error_of(sd15, "UniPCMultistepScheduler").find("UniPCMultistepScheduler") != std::string::npos);
  j = sd15;
  j.erase("_class_name");
  CHECK(error_of(j).find("_class_name") != std::string::npos);

  j = sd15;
  j["skip_prk_steps"] = false;
  CHECK(error_of(j).find("skip_prk_steps") != std::string::npos);
  CHECK(error_of(j).find("--scheduler") != std::string::npos);
  j = sd15;
  j["made_up_key"] = 3;
  CHECK(error_of(j).find("made_up_key") != std::string::npos);
  j = sd15;
  j["rescale_betas_zero_snr"] = true;  // not a PNDM option in diffusers 0.26.1: refused rather than ignored
  CHECK(error_of(j).find("rescale_betas_zero_snr") != std::string::npos);
  j = sd15;
  j["beta_schedule"] = "sigmoid";
  CHECK(error_of(j).find("beta_schedule") != std::string::npos);
  j = sd15;
  j["steps_offset"] = "one";
  CHECK(error_of(j).find("steps_offset") != std::string::npos);
  j = sd15;
  j["timestep_spacing"] = "uniform";
  CHECK(error_of(j).find("timestep_spacing") != std::string::npos);

  json dpm = {{"_class_name", "DPMSolverMultistepScheduler"},
              {"beta_schedule", "scaled_linear"},
              {"beta_start", 0.00085},
              {"beta_end", 0.012},
              {"use_karras_sigmas", true}};
  CHECK(error_of(dpm) == "no error");
  for (auto [key, value] : std::vector<std::pair<std::string, json>>{{"solver_order", 3},
                                                                     {"algorithm_type", "sde-dpmsolver++"},
                                                                     {"use_lu_lambdas", true},
                                                                     {"lambda_min_clipped", -5.1},
                                                                     {"variance_type", "learned_range"},
                                                                     {"final_sigmas_type", "sigma_max"},
                                                                     {"solver_type", "bh2"}}) {
    json d = dpm;
    d[key] = value;
    INFO(key);
    CHECK(error_of(d).find(key) != std::string::npos);
  }
  // the values diffusers writes by default are accepted, -Infinity included
  const auto text = R"({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity,
    "use_lu_lambdas": false, "variance_type": null, "prediction_type": "epsilon"})";
  CHECK(std::holds_alternative<DpmSolverMultistep>(scheduler_from_json_text(text)));

  json euler = {{"_class_name", "EulerDiscreteScheduler"}, {"interpolation_type", "log_linear"}};
  CHECK(error_of(euler).find("interpolation_type") != std::string::npos);
  euler = {{"_class_name", "EulerDiscreteScheduler"}, {"timestep_type", "continuous"}};
  CHECK(error_of(euler).find("timestep_type") != std::string::npos);
  euler = {{"_class_name", "EulerAncestralDiscreteScheduler"}, {"prediction_type", "sample"}};
  CHECK(error_of(euler).find("prediction_type") != std::string::npos);
  json ddim_j = {{"_class_name", "DDIMScheduler"}, {"thresholding", true}, {"sample_max_value", 0.5}};
  CHECK(error_of(ddim_j).find("sample_max_value") != std::string::npos);
  ddim_j = {{"_class_name", "DDIMScheduler"}, {"trained_betas", {0.1, 0.2}}};
  CHECK(error_of(ddim_j).find("trained_betas") != std::string::npos);
}

TEST_CASE("stateful schedulers check the timestep they are given and stochastic steps need noise") {
  auto s = std::get<EulerAncestral>(scheduler_from_config(json{{"_class_name", "EulerAncestralDiscreteScheduler"}}));
  s.set_timesteps(4);
  Tensor<double> x(Shape{1, 2, 2, 2});
  CHECK_THROWS_WITH_AS(s.step(x, s.timesteps()[1], x, StepNoise<double>()), doctest::Contains("not the current"),
                       spo::error);
  CHECK_THROWS_WITH_AS(s.step(x, s.timesteps()[0], x, StepNoise<double>()), doctest::Contains("generator"), spo::error);
  Generator gen(7);
  auto y = s.step(x, s.timesteps()[0], x, StepNoise<double>(gen));
  CHECK(y.numel() == x.numel());
}
