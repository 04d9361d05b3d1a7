// SPDX-License-Identifier: MIT
/// @brief Loss policies as types, with what each needs from the sampler: the step-wise losses (SPO, D3PO, DDPO)
/// differentiate per-step transition log-probabilities; Diffusion-DPO differentiates the denoising error.
#pragma once

#include <concepts>
#include <string_view>

#include "spo/diffusion/sampler_policy.hpp"

namespace spo::loss {

/// SPO: DPO on the per-step log-probabilities of a win/lose pair of children of one x_t (spo_loss.hpp).
struct SpoLossPolicy {
  static constexpr std::string_view name = "spo";
  static constexpr bool needs_transition_log_prob = true;
};
/// D3PO: DPO on the per-step log-probabilities of two whole trajectories (d3po_loss.hpp).
struct D3poLossPolicy {
  static constexpr std::string_view name = "d3po";
  static constexpr bool needs_transition_log_prob = true;
};
/// DDPO: PPO on the per-step log-probabilities of sampled trajectories (ddpo_loss.hpp).
struct DdpoLossPolicy {
  static constexpr std::string_view name = "ddpo";
  static constexpr bool needs_transition_log_prob = true;
};
/// Diffusion-DPO: DPO on the denoising errors of noised offline pairs (diffusion_dpo_loss.hpp); any sampler.
struct DiffusionDpoLossPolicy {
  static constexpr std::string_view name = "diffusion_dpo";
  static constexpr bool needs_transition_log_prob = false;
};

template <class L>
concept LossPolicy = requires {
  { L::name } -> std::convertible_to<std::string_view>;
  { L::needs_transition_log_prob } -> std::convertible_to<bool>;
};

/// A loss and a sampler that fit: a loss on transition log-probabilities needs a stochastic transition.
template <class L, class S>
concept SamplerSuitsLoss = LossPolicy<L> && diffusion::SamplerPolicy<S> &&
                           (!L::needs_transition_log_prob || diffusion::StochasticTransition<S>);

}  // namespace spo::loss
