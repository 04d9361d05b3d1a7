// SPDX-License-Identifier: MIT
/// @brief Sigma tables of the sigma-parameterized samplers (Euler, DPM-Solver): sigma(t), numpy's interp, Karras
/// sigmas and their timesteps, bit-compatible with diffusers' set_timesteps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "spo/core/error.hpp"

namespace spo::diffusion {

namespace detail {
/// double a * b, rounded before any following addition (keeps the compiler from fusing it into an FMA, which
/// numpy's baseline build never does).
inline double mul_f64(double a, double b) {
  volatile double p = a * b;
  return p;
}
}  // namespace detail

/// sigma_t = sqrt((1 - abar_t) / abar_t) in float32 for every training timestep (ascending t).
/// Ref: diffusers EulerDiscreteScheduler.set_timesteps (torch float32 ops).
inline std::vector<float> sigma_table(const std::vector<float>& alphas_cumprod) {
  std::vector<float> s(alphas_cumprod.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const float a = alphas_cumprod[i];
    s[i] = std::sqrt((1.0f - a) / a);
  }
  return s;
}

/// numpy.interp(x, arange(len(table)), table) for x in [0, len - 1]: table[j] where x == j, else
/// slope * (x - j) + table[j] with slope = table[j + 1] - table[j], in double.
inline std::vector<double> interp_sigmas(const std::vector<double>& x, const std::vector<float>& table) {
  SPO_CHECK(!table.empty(), "interp_sigmas: empty sigma table");
  const auto last = static_cast<std::int64_t>(table.size()) - 1;
  std::vector<double> out;
  out.reserve(x.size());
  for (double v : x) {
    if (v >= static_cast<double>(last)) {
      out.push_back(table[static_cast<std::size_t>(last)]);
      continue;
    }
    if (v <= 0.0) {
      out.push_back(table[0]);
      continue;
    }
    const auto j = static_cast<std::int64_t>(std::floor(v));
    const double lo = table[static_cast<std::size_t>(j)], hi = table[static_cast<std::size_t>(j + 1)];
    if (static_cast<double>(j) == v) {
      out.push_back(lo);
      continue;
    }
    const double slope = (hi - lo) / 1.0;
    out.push_back(detail::mul_f64(slope, v - static_cast<double>(j)) + lo);
  }
  return out;
}

/// The Karras et al. (2022) schedule: (max^(1/rho) + ramp_i (min^(1/rho) - max^(1/rho)))^rho, rho = 7, ramp =
/// numpy.linspace(0, 1, n). Ref: diffusers EulerDiscreteScheduler._convert_to_karras.
inline std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n) {
  SPO_CHECK(n >= 1, "karras_sigmas: n must be >= 1, got " << n);
  constexpr double rho = 7.0;
  const double min_inv = std::pow(sigma_min, 1.0 / rho), max_inv = std::pow(sigma_max, 1.0 / rho);
  const double step = n > 1 ? 1.0 / static_cast<double>(n - 1) : 0.0;
  std::vector<double> s(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double ramp = (i == n - 1 && n > 1) ? 1.0 : static_cast<double>(i) * step;
    s[static_cast<std::size_t>(i)] = std::pow(max_inv + detail::mul_f64(ramp, min_inv - max_inv), rho);
  }
  return s;
}

/// log(sigma_t) per training timestep in float32 (numpy.log of the float32 sigma table).
inline std::vector<float> log_sigma_table(const std::vector<float>& sigmas) {
  std::vector<float> l(sigmas.size());
  for (std::size_t i = 0; i < l.size(); ++i) l[i] = std::log(sigmas[i]);
  return l;
}

/// The (fractional) training timestep of a sigma: linear interpolation in log sigma between the two neighbouring
/// training timesteps, clipped to the table. Ref: diffusers EulerDiscreteScheduler._sigma_to_t (the denominator
/// low - high is a float32 difference there).
inline double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const auto n = static_cast<std::int64_t>(log_sigmas.size());
  SPO_CHECK(n >= 2, "sigma_to_t: the log-sigma table needs at least 2 entries");
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  std::int64_t low = 0;
  for (std::int64_t i = 0; i < n; ++i)
    if (log_sigma - static_cast<double>(log_sigmas[static_cast<std::size_t>(i)]) >= 0.0) low = i;
  low = std::min(low, n - 2);
  const float lo = log_sigmas[static_cast<std::size_t>(low)], hi = log_sigmas[static_cast<std::size_t>(low + 1)];
  const float denom = lo - hi;
  const double w = std::clamp((static_cast<double>(lo) - log_sigma) / static_cast<double>(denom), 0.0, 1.0);
  return detail::mul_f64(1.0 - w, static_cast<double>(low)) + detail::mul_f64(w, static_cast<double>(low + 1));
}

}  // namespace spo::diffusion
