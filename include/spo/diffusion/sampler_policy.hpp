// SPDX-License-Identifier: MIT
/// @brief Sampler policies as types: how x_{t-1} is drawn from x_t, and whether that transition has a density
/// (the per-step log-probability that SPO, D3PO and DDPO optimise).
#pragma once

#include <string_view>

#include "spo/diffusion/concepts.hpp"

namespace spo::diffusion {

/// DDIM with eta = 1: x_{t-1} ~ N(mu, sigma_t^2) with DDPM's posterior variance (SPO, D3PO and DDPO sample so).
struct AncestralDdim {
  static constexpr std::string_view name = "ddim_eta_1";
  static constexpr double eta = 1.0;
  static constexpr bool stochastic = true;
};

/// DDIM with eta = 0: x_{t-1} is a deterministic function of x_t (no transition density, no log-probability).
struct DeterministicDdim {
  static constexpr std::string_view name = "ddim_eta_0";
  static constexpr double eta = 0.0;
  static constexpr bool stochastic = false;
};

}  // namespace spo::diffusion
