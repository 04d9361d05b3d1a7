// SPDX-License-Identifier: MIT
/// @brief Sampler policies as types: how x_{t-1} is drawn from x_t, and whether that transition has a density
/// (the per-step log-probability that SPO, D3PO and DDPO optimise).
#pragma once

#include <concepts>
#include <string_view>

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

/*!
  WHAT THIS REPRESENTS
    A sampler policy of an experiment.
  REQUIRES
    - S::name names it; S::eta is DDIM's eta (>= 0); S::stochastic is true iff eta > 0, i.e. the transition
      p(x_{t-1} | x_t) is a Gaussian with positive variance whose log-probability exists
!*/
template <class S>
concept SamplerPolicy = requires {
  { S::name } -> std::convertible_to<std::string_view>;
  { S::eta } -> std::convertible_to<double>;
  { S::stochastic } -> std::convertible_to<bool>;
} && (S::eta >= 0.0) && (S::stochastic == (S::eta > 0.0));

/// A sampler whose transitions have a log-probability (what a step-wise preference loss differentiates).
template <class S>
concept StochasticTransition = SamplerPolicy<S> && S::stochastic;

}  // namespace spo::diffusion
