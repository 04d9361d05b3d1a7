// SPDX-License-Identifier: MIT
/// @brief Model parameterizations (epsilon, v, sample): how a model output maps to x0 and eps, and training targets.
#pragma once

#include <cmath>
#include <string_view>

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

}  // namespace spo::diffusion
