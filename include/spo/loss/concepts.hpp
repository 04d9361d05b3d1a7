// SPDX-License-Identifier: MIT
/// @brief The loss module's contracts: a loss policy, a pairwise preference loss a trainer is composed with, and the
/// fit between a loss and a sampler.
#pragma once

#include <concepts>
#include <span>
#include <string_view>
#include <vector>

#include <boost/hana/concept/struct.hpp>

#include "spo/diffusion/concepts.hpp"

namespace spo::loss {

/*!
  WHAT THIS REPRESENTS
    A loss of a preference-optimisation method as a type.
  REQUIRES
    - L::name names it (the "policies.loss" value of a config)
    - L::needs_transition_log_prob: the loss differentiates per-step transition log-probabilities (SPO, D3PO,
      DDPO), so the sampler must be stochastic; false for a loss on denoising errors (Diffusion-DPO)
!*/
template <class L>
concept LossPolicy = requires {
  { L::name } -> std::convertible_to<std::string_view>;
  { L::needs_transition_log_prob } -> std::convertible_to<bool>;
};

/*!
  WHAT THIS REPRESENTS
    What a pairwise loss returns: its value and its gradient with respect to the per-item inputs of the winner and
    the loser (step log-probabilities or denoising errors, whichever the loss takes).
!*/
template <class R>
concept PairLossOutput = requires(const R& r) {
  { r.loss } -> std::convertible_to<double>;
  { r.d_w } -> std::convertible_to<std::vector<double>>;
  { r.d_l } -> std::convertible_to<std::vector<double>>;
  { r.implicit_accuracy } -> std::convertible_to<double>;
};

/*!
  WHAT THIS REPRESENTS
    A pairwise preference loss, the loss policy of a pair trainer (SPO's step pairs, Diffusion-DPO's offline pairs):
    a function of B items, each a preferred (w) and a dispreferred (l) input under the policy and the frozen
    reference.
  REQUIRES
    - LossPolicy<L>
    - L::options_type: its hyper-parameters, a Hana struct (the config's "loss" section; every key required)
    - validate(options) (found by ADL) throws spo::config_error naming "loss.<key>" and the value for bad options
    - L::evaluate(w, w_ref, l, l_ref, options) with B >= 1 finite values each returns a PairLossOutput whose d_w[i],
      d_l[i] are d loss / d w[i], d loss / d l[i] (the reference inputs get no gradient); loss is the mean over items
!*/
template <class L>
concept PairLoss = LossPolicy<L> && boost::hana::Struct<typename L::options_type>::value &&
    requires(const typename L::options_type& o, std::span<const double> v) {
  { validate(o) } -> std::same_as<void>;
  { L::evaluate(v, v, v, v, o) } -> PairLossOutput;
};

/// A pair loss on step log-probabilities: what a trainer of step-wise pairs (SPO) differentiates.
template <class L>
concept StepPairLoss = PairLoss<L> && L::needs_transition_log_prob;

/// A loss and a sampler that fit: a loss on transition log-probabilities needs a stochastic transition.
template <class L, class S>
concept SamplerSuitsLoss = LossPolicy<L> && diffusion::SamplerPolicy<S> &&
    (!L::needs_transition_log_prob || diffusion::StochasticTransition<S>);

}  // namespace spo::loss
