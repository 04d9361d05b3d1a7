// SPDX-License-Identifier: MIT
/// @brief Reads a diffusers `scheduler/scheduler_config.json` into one of the inference schedulers (DDIM, Euler,
/// Euler ancestral, DPM-Solver++, PNDM), optionally overriding its class.
#pragma once

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"
#include "spo/diffusion/ddim_sampling.hpp"
#include "spo/diffusion/dpm_solver_multistep.hpp"
#include "spo/diffusion/euler_ancestral.hpp"
#include "spo/diffusion/euler_discrete.hpp"
#include "spo/diffusion/pndm.hpp"

namespace spo::diffusion {

/// Any inference scheduler a diffusers pipeline may ship (dispatch with std::visit).
using AnyScheduler = std::variant<DdimSampling, EulerDiscrete, EulerAncestral, DpmSolverMultistep, Pndm>;

namespace detail {

/// Every __init__ argument of a diffusers 0.26.1 scheduler class. A key of this list that the selected class does
/// not take is ignored, as diffusers ignores it (configs carry other classes' keys, and a class override keeps the
/// file's keys); a key outside it is an error.
inline const std::set<std::string, std::less<>>& diffusers_scheduler_keys() {
  static const std::set<std::string, std::less<>> keys = {"algorithm_type",
                                                          "alpha_cum_end",
                                                          "alpha_cum_start",
                                                          "beta_end",
                                                          "beta_schedule",
                                                          "beta_start",
                                                          "clip_denoised",
                                                          "clip_sample",
                                                          "clip_sample_range",
                                                          "correct_steps",
                                                          "corrector_order",
                                                          "disable_corrector",
                                                          "dynamic_thresholding_ratio",
                                                          "eta",
                                                          "euler_at_final",
                                                          "final_sigmas_type",
                                                          "gamma_cum_end",
                                                          "gamma_cum_start",
                                                          "interpolation_type",
                                                          "lambda_min_clipped",
                                                          "lower_order_final",
                                                          "mask_token_id",
                                                          "masking_schedule",
                                                          "num_train_timesteps",
                                                          "num_vec_classes",
                                                          "original_inference_steps",
                                                          "predict_x0",
                                                          "prediction_type",
                                                          "predictor_order",
                                                          "rescale_betas_zero_snr",
                                                          "rho",
                                                          "s",
                                                          "s_churn",
                                                          "s_max",
                                                          "s_min",
                                                          "s_noise",
                                                          "sample_max_value",
                                                          "sampling_eps",
                                                          "scaler",
                                                          "set_alpha_to_one",
                                                          "sigma_data",
                                                          "sigma_max",
                                                          "sigma_min",
                                                          "skip_prk_steps",
                                                          "snr",
                                                          "solver_order",
                                                          "solver_p",
                                                          "solver_type",
                                                          "steps_offset",
                                                          "tau_func",
                                                          "thresholding",
                                                          "timestep_scaling",
                                                          "timestep_spacing",
                                                          "timestep_type",
                                                          "trained_betas",
                                                          "use_karras_sigmas",
                                                          "use_lu_lambdas",
                                                          "variance_type"};
  return keys;
}

/// Python's json writes -Infinity, Infinity and NaN as bare tokens; they become strings so that nlohmann parses
/// the file (number readers below accept them).
inline std::string quote_nonfinite_tokens(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size())
        out += text[++i];
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (std::string_view tok : {"-Infinity", "Infinity", "NaN"}) {
      if (text.substr(i, tok.size()) == tok) {
        out += '"';
        out += tok;
        out += '"';
        i += tok.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

/// Typed access to the keys of one scheduler class; missing keys take the class's diffusers default.
class SchedulerConfigReader {
 public:
  SchedulerConfigReader(const nlohmann::json& j, std::string_view cls) : j_(j), cls_(cls) {}

  bool has(std::string_view key) const { return j_.contains(key) && !j_.at(std::string(key)).is_null(); }

  double number(const std::string& key, double def) {
    used_.insert(key);
    if (!has(key)) return def;
    const auto& v = j_.at(key);
    if (v.is_string()) {
      const auto s = v.get<std::string>();
      if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
      if (s == "Infinity") return std::numeric_limits<double>::infinity();
    }
    SPO_CONFIG_CHECK(v.is_number(), key, "must be a number for " << cls_ << ", got " << v.dump());
    return v.get<double>();
  }
  int integer(const std::string& key, int def) {
    used_.insert(key);
    if (!has(key)) return def;
    const auto& v = j_.at(key);
    SPO_CONFIG_CHECK(v.is_number_integer(), key, "must be an integer for " << cls_ << ", got " << v.dump());
    return v.get<int>();
  }
  bool boolean(const std::string& key, bool def) {
    used_.insert(key);
    if (!has(key)) return def;
    const auto& v = j_.at(key);
    SPO_CONFIG_CHECK(v.is_boolean(), key, "must be true or false for " << cls_ << ", got " << v.dump());
    return v.get<bool>();
  }
  std::string string(const std::string& key, const std::string& def) {
    used_.insert(key);
    if (!has(key)) return def;
    const auto& v = j_.at(key);
    SPO_CONFIG_CHECK(v.is_string(), key, "must be a string for " << cls_ << ", got " << v.dump());
    return v.get<std::string>();
  }
  /// A key of the class that spo does not implement: accepted only at the class's default value (`def`; null
  /// stands for an absent key).
  void unsupported(const std::string& key, const nlohmann::json& def) {
    used_.insert(key);
    if (!j_.contains(key)) return;
    const auto& v = j_.at(key);
    const bool is_default = v == def || (v.is_number() && def.is_number() && v.get<double>() == def.get<double>()) ||
                            (v.is_string() && def.is_number() && std::isinf(def.get<double>()) &&
                             v.get<std::string>() == (def.get<double>() < 0 ? "-Infinity" : "Infinity"));
    SPO_CONFIG_CHECK(is_default, key,
                     "= " << v.dump() << " is not implemented for " << cls_ << " (only " << def.dump() << ")");
  }

  /// The remaining keys: "_"-prefixed metadata and other diffusers classes' keys are accepted; a key that
  /// rescales the betas must not be set for a class without it; anything else is an error naming the key.
  void finish() const {
    for (const auto& [key, value] : j_.items()) {
      if (used_.count(key) || key.starts_with("_")) continue;
      SPO_CONFIG_CHECK(diffusers_scheduler_keys().count(key), key,
                       "is not a diffusers scheduler option (" << cls_ << ")");
      SPO_CONFIG_CHECK(key != "rescale_betas_zero_snr" || value != true, key,
                       "= true is not an option of " << cls_ << " in diffusers 0.26.1; not implemented");
    }
  }

  /// betas from beta_schedule / beta_start / beta_end / num_train_timesteps / trained_betas (and
  /// rescale_betas_zero_snr when the class takes it).
  std::vector<float> betas(bool takes_rescale) {
    const int t = integer("num_train_timesteps", 1000);
    SPO_CONFIG_CHECK(t >= 2, "num_train_timesteps", "must be >= 2, got " << t);
    const double start = number("beta_start", 0.0001), end = number("beta_end", 0.02);
    const std::string schedule = string("beta_schedule", "linear");
    std::vector<float> b;
    used_.insert("trained_betas");
    if (has("trained_betas")) {
      const auto& v = j_.at("trained_betas");
      SPO_CONFIG_CHECK(v.is_array() && static_cast<int>(v.size()) == t, "trained_betas",
                       "must be an array of num_train_timesteps = " << t << " numbers");
      for (const auto& x : v) {
        SPO_CONFIG_CHECK(x.is_number() && x.get<double>() > 0 && x.get<double>() < 1, "trained_betas",
                         "values must lie in (0, 1), got " << x.dump());
        b.push_back(static_cast<float>(x.get<double>()));
      }
    } else if (schedule == LinearBetas::name || schedule == ScaledLinearBetas::name) {
      SPO_CONFIG_CHECK(std::isfinite(start) && start > 0 && start < 1, "beta_start",
                       "must lie in (0, 1), got " << start);
      SPO_CONFIG_CHECK(std::isfinite(end) && end > 0 && end < 1, "beta_end", "must lie in (0, 1), got " << end);
      b = schedule == LinearBetas::name ? LinearBetas{start, end}.betas(t) : ScaledLinearBetas{start, end}.betas(t);
    } else if (schedule == SquaredCosCapV2Betas::name) {
      b = SquaredCosCapV2Betas{}.betas(t);
    } else {
      SPO_CONFIG_CHECK(false, "beta_schedule",
                       "\"" << schedule << "\" is not implemented (linear, scaled_linear or squaredcos_cap_v2)");
    }
    if (takes_rescale && boolean("rescale_betas_zero_snr", false)) b = rescale_zero_terminal_snr(b);
    return b;
  }

  PredictionKind prediction() {
    const auto s = string("prediction_type", "epsilon");
    SPO_CONFIG_CHECK(s == "epsilon" || s == "v_prediction" || s == "sample", "prediction_type",
                     "\"" << s << "\" is not one of epsilon, v_prediction, sample");
    return parse_prediction_kind(s);
  }
  TimestepSpacing spacing(const std::string& def) {
    const auto s = string("timestep_spacing", def);
    SPO_CONFIG_CHECK(s == "leading" || s == "trailing" || s == "linspace", "timestep_spacing",
                     "\"" << s << "\" is not one of leading, trailing, linspace");
    return parse_timestep_spacing(s);
  }
  int steps_offset() {
    const int o = integer("steps_offset", 0);
    SPO_CONFIG_CHECK(o >= 0, "steps_offset", "must be >= 0, got " << o);
    return o;
  }
  std::optional<DynamicThresholding> thresholding() {
    const bool on = boolean("thresholding", false);
    DynamicThresholding th{number("dynamic_thresholding_ratio", 0.995), number("sample_max_value", 1.0)};
    if (!on) return std::nullopt;
    SPO_CONFIG_CHECK(th.ratio >= 0 && th.ratio <= 1, "dynamic_thresholding_ratio",
                     "must lie in [0, 1], got " << th.ratio);
    SPO_CONFIG_CHECK(th.sample_max_value >= 1, "sample_max_value", "must be >= 1, got " << th.sample_max_value);
    return th;
  }

 private:
  const nlohmann::json& j_;
  std::string cls_;
  std::set<std::string, std::less<>> used_;
};

inline std::string canonical_scheduler_class(std::string_view name) {
  if (name == "ddim" || name == DdimSampling::class_name) return std::string(DdimSampling::class_name);
  if (name == "euler" || name == EulerDiscrete::class_name) return std::string(EulerDiscrete::class_name);
  if (name == "euler_a" || name == "euler_ancestral" || name == EulerAncestral::class_name)
    return std::string(EulerAncestral::class_name);
  if (name == "dpm++2m" || name == "dpmpp_2m" || name == DpmSolverMultistep::class_name)
    return std::string(DpmSolverMultistep::class_name);
  if (name == "pndm" || name == Pndm::class_name) return std::string(Pndm::class_name);
  return std::string(name);
}

}  // namespace detail

/// The scheduler names accepted as a class override (diffusers class names, or ddim, euler, euler_a, dpm++2m, pndm).
inline constexpr std::string_view scheduler_override_names =
    "DDIMScheduler (ddim), EulerDiscreteScheduler (euler), EulerAncestralDiscreteScheduler (euler_a), "
    "DPMSolverMultistepScheduler (dpm++2m), PNDMScheduler (pndm)";

/*!
  REQUIRES
    - config: the object of a diffusers scheduler_config.json
    - override_class: empty (use config's `_class_name`) or one of scheduler_override_names; the file's keys then
      configure that class, as diffusers' `Class.from_config(pipe.scheduler.config)` does
  ENSURES
    - the scheduler with every key of its class read (missing keys take diffusers 0.26.1's defaults for that class);
      DDIM's eta (a step argument in diffusers) is `ddim_eta`
    - throws config_error naming the key for an unknown class, an unimplemented key at a non-default value, a
      value of the wrong type or range, or a key no diffusers scheduler has
!*/
inline AnyScheduler scheduler_from_config(const nlohmann::json& config, std::string_view override_class = {},
                                          double ddim_eta = 0.0) {
  SPO_CONFIG_CHECK(config.is_object(), "scheduler_config", "must be a JSON object");
  std::string cls;
  if (!override_class.empty()) {
    cls = detail::canonical_scheduler_class(override_class);
  } else {
    SPO_CONFIG_CHECK(config.contains("_class_name") && config.at("_class_name").is_string(), "_class_name",
                     "missing: scheduler_config.json must name its scheduler class");
    cls = config.at("_class_name").get<std::string>();
  }
  detail::SchedulerConfigReader r(config, cls);
  if (cls == DdimSampling::class_name) {
    DdimSamplingConfig c;
    const auto betas = r.betas(true);
    c.ddim.clip_sample = r.boolean("clip_sample", true);
    c.ddim.clip_sample_range = r.number("clip_sample_range", 1.0);
    SPO_CONFIG_CHECK(c.ddim.clip_sample_range > 0, "clip_sample_range",
                     "must be > 0, got " << c.ddim.clip_sample_range);
    c.ddim.set_alpha_to_one = r.boolean("set_alpha_to_one", true);
    c.ddim.steps_offset = r.steps_offset();
    c.ddim.timestep_spacing = r.spacing("leading");
    c.prediction_type = r.prediction();
    c.thresholding = r.thresholding();
    c.eta = ddim_eta;
    r.finish();
    return DdimSampling(betas, c);
  }
  if (cls == EulerDiscrete::class_name || cls == EulerAncestral::class_name) {
    const bool ancestral = cls == EulerAncestral::class_name;
    EulerConfig c;
    const auto betas = r.betas(true);
    c.rescale_betas_zero_snr = r.boolean("rescale_betas_zero_snr", false);
    c.prediction_type = r.prediction();
    c.timestep_spacing = r.spacing("linspace");
    c.steps_offset = r.steps_offset();
    if (!ancestral) {
      const auto interp = r.string("interpolation_type", "linear");
      SPO_CONFIG_CHECK(interp == "linear", "interpolation_type",
                       "\"" << interp << "\" is not implemented for " << cls << " (only \"linear\")");
      c.use_karras_sigmas = r.boolean("use_karras_sigmas", false);
      if (r.has("sigma_min")) c.sigma_min = r.number("sigma_min", 0.0);
      if (r.has("sigma_max")) c.sigma_max = r.number("sigma_max", 0.0);
      r.unsupported("timestep_type", "discrete");
    } else {
      SPO_CONFIG_CHECK(c.prediction_type != PredictionKind::sample, "prediction_type",
                       "\"sample\" is not supported by " << cls << " (as in diffusers)");
    }
    r.finish();
    if (ancestral) return EulerAncestral(betas, c);
    return EulerDiscrete(betas, c);
  }
  if (cls == DpmSolverMultistep::class_name) {
    DpmSolverConfig c;
    const auto betas = r.betas(false);
    c.solver_order = r.integer("solver_order", 2);
    SPO_CONFIG_CHECK(c.solver_order == 1 || c.solver_order == 2, "solver_order",
                     "= " << c.solver_order << " is not implemented for " << cls << " (1 or 2)");
    c.prediction_type = r.prediction();
    c.thresholding = r.thresholding();
    const auto algorithm = r.string("algorithm_type", "dpmsolver++");
    SPO_CONFIG_CHECK(algorithm == "dpmsolver++", "algorithm_type",
                     "\"" << algorithm << "\" is not implemented for " << cls << " (only \"dpmsolver++\")");
    const auto solver = r.string("solver_type", "midpoint");
    SPO_CONFIG_CHECK(solver == "midpoint" || solver == "heun", "solver_type",
                     "\"" << solver << "\" is not one of midpoint, heun");
    c.solver_type = solver == "heun" ? DpmSolverType::heun : DpmSolverType::midpoint;
    c.lower_order_final = r.boolean("lower_order_final", true);
    c.euler_at_final = r.boolean("euler_at_final", false);
    c.use_karras_sigmas = r.boolean("use_karras_sigmas", false);
    r.unsupported("use_lu_lambdas", false);
    const auto final_sigmas = r.string("final_sigmas_type", "zero");
    SPO_CONFIG_CHECK(final_sigmas == "zero" || final_sigmas == "sigma_min", "final_sigmas_type",
                     "\"" << final_sigmas << "\" is not one of zero, sigma_min");
    c.final_sigmas_type = final_sigmas == "zero" ? FinalSigmas::zero : FinalSigmas::sigma_min;
    r.unsupported("lambda_min_clipped", -std::numeric_limits<double>::infinity());
    r.unsupported("variance_type", nullptr);
    c.timestep_spacing = r.spacing("linspace");
    c.steps_offset = r.steps_offset();
    r.finish();
    return DpmSolverMultistep(betas, c);
  }
  if (cls == Pndm::class_name) {
    PndmConfig c;
    const auto betas = r.betas(false);
    SPO_CONFIG_CHECK(r.boolean("skip_prk_steps", false), "skip_prk_steps",
                     "is false: PNDM's Runge-Kutta warm-up is not implemented for "
                         << cls << "; set skip_prk_steps true (PLMS) or pass a scheduler override (--scheduler "
                         << scheduler_override_names << ")");
    c.set_alpha_to_one = r.boolean("set_alpha_to_one", false);
    c.prediction_type = r.prediction();
    SPO_CONFIG_CHECK(c.prediction_type != PredictionKind::sample, "prediction_type",
                     "\"sample\" is not supported by " << cls << " (epsilon or v_prediction)");
    c.timestep_spacing = r.spacing("leading");
    c.steps_offset = r.steps_offset();
    r.finish();
    return Pndm(betas, c);
  }
  throw config_error(override_class.empty() ? "_class_name" : "scheduler",
                     "scheduler class \"" + cls + "\" is not implemented; pass a scheduler override (--scheduler " +
                         std::string(scheduler_override_names) + ")");
}

/// scheduler_from_config for the text of a scheduler_config.json (Python's -Infinity / NaN tokens accepted).
inline AnyScheduler scheduler_from_json_text(std::string_view text, std::string_view override_class = {},
                                             double ddim_eta = 0.0) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(detail::quote_nonfinite_tokens(text));
  } catch (const nlohmann::json::parse_error& e) {
    throw config_error("scheduler_config", std::string("is not valid JSON: ") + e.what());
  }
  return scheduler_from_config(j, override_class, ddim_eta);
}

/// scheduler_from_config for a scheduler_config.json file.
inline AnyScheduler load_scheduler_config(const std::string& path, std::string_view override_class = {},
                                          double ddim_eta = 0.0) {
  std::ifstream f(path, std::ios::binary);
  SPO_CHECK(f.good(), "cannot open scheduler config '" << path << "'");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return scheduler_from_json_text(ss.str(), override_class, ddim_eta);
  } catch (const config_error& e) {
    throw config_error(e.key(), e.problem() + " (in " + path + ")");
  }
}

}  // namespace spo::diffusion
