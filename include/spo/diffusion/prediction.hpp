// SPDX-License-Identifier: MIT
/// @brief Model parameterizations (epsilon, v, sample): how a model output maps to x0 and eps, and training targets.
#pragma once

#include <cmath>
#include <string_view>

#include "spo/core/error.hpp"
#include "spo/core/host_device.hpp"
#include "spo/diffusion/concepts.hpp"

namespace spo::diffusion {

/// u = eps_hat: x0 = (x_t - sqrt(1 - abar) u) / sqrt(abar), eps = u.
struct EpsilonPrediction {
  static constexpr std::string_view name = "epsilon";
  SPO_HOST_DEVICE static X0Eps interpret(double u, double x, double a) {
    return {(x - std::sqrt(1.0 - a) * u) / std::sqrt(a), u};
  }
  SPO_HOST_DEVICE static X0Eps jacobian(double a) { return {-std::sqrt(1.0 - a) / std::sqrt(a), 1.0}; }
  SPO_HOST_DEVICE static double target(double x0, double eps, double a) { return eps; }
};

/// u = v_hat (Salimans & Ho 2022): x0 = sqrt(abar) x_t - sqrt(1 - abar) u, eps = sqrt(abar) u + sqrt(1 - abar) x_t;
/// target v = sqrt(abar) eps - sqrt(1 - abar) x0.
struct VPrediction {
  static constexpr std::string_view name = "v_prediction";
  SPO_HOST_DEVICE static X0Eps interpret(double u, double x, double a) {
    const double sa = std::sqrt(a), sb = std::sqrt(1.0 - a);
    return {sa * x - sb * u, sa * u + sb * x};
  }
  SPO_HOST_DEVICE static X0Eps jacobian(double a) { return {-std::sqrt(1.0 - a), std::sqrt(a)}; }
  SPO_HOST_DEVICE static double target(double x0, double eps, double a) {
    return std::sqrt(a) * eps - std::sqrt(1.0 - a) * x0;
  }
};

/// u = x0_hat: eps = (x_t - sqrt(abar) u) / sqrt(1 - abar).
struct SamplePrediction {
  static constexpr std::string_view name = "sample";
  SPO_HOST_DEVICE static X0Eps interpret(double u, double x, double a) {
    return {u, (x - std::sqrt(a) * u) / std::sqrt(1.0 - a)};
  }
  SPO_HOST_DEVICE static X0Eps jacobian(double a) { return {1.0, -std::sqrt(a) / std::sqrt(1.0 - a)}; }
  SPO_HOST_DEVICE static double target(double x0, double eps, double a) { return x0; }
};

/// The parameterization as a runtime value, for schedulers configured from a diffusers scheduler_config.json.
enum class PredictionKind { epsilon, v_prediction, sample };

inline std::string_view to_string(PredictionKind k) {
  switch (k) {
    case PredictionKind::epsilon:
      return EpsilonPrediction::name;
    case PredictionKind::v_prediction:
      return VPrediction::name;
    case PredictionKind::sample:
      return SamplePrediction::name;
  }
  return "?";
}

inline PredictionKind parse_prediction_kind(std::string_view s) {
  if (s == EpsilonPrediction::name) return PredictionKind::epsilon;
  if (s == VPrediction::name) return PredictionKind::v_prediction;
  if (s == SamplePrediction::name) return PredictionKind::sample;
  SPO_CHECK(false, "unknown prediction type '" << s << "' (expected epsilon, v_prediction or sample)");
  return PredictionKind::epsilon;
}

}  // namespace spo::diffusion
