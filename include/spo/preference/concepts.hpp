// SPDX-License-Identifier: MIT
/// @brief The preference module's contracts: a rater (the labels' source), a preference model (scores of x0
/// predictions at a timestep) and a compare policy (which two children form a pair).
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::preference {

/*!
  WHAT THIS REPRESENTS
    A rater: a policy that scores generated images against their prompts, higher is better. It plays the part of
    the human raters who label preference pairs (Pick-a-Pic in SPO); labels.hpp draws labels from its scores.
  REQUIRES
    - R::scalar_type is the image scalar type, R::name names the rater in configs and run records
    - r.score(images, prompts) with images [B, 1, R, R] (values nominally in [-1, 1]) and prompts.size() == B
      returns B finite scores; score i depends only on (images[i], prompts[i]), up to floating-point rounding
  ENSURES
    - an images/prompts count mismatch or an unknown prompt throws spo::error
!*/
template <class R>
concept Rater = requires(R& r, const Tensor<typename R::scalar_type, cpu>& images, std::span<const std::string> p) {
  { R::name } -> std::convertible_to<std::string_view>;
  { r.score(images, p) } -> std::same_as<std::vector<double>>;
};

/// The device whose images a preference model scores: P::device_type, or cpu when P does not name one.
template <class P>
struct preference_device {
  using type = cpu;
};
template <class P>
requires requires { typename P::device_type; }
struct preference_device<P> {
  using type = typename P::device_type;
};
template <class P>
using preference_device_t = typename preference_device<P>::type;

/*!
  WHAT THIS REPRESENTS
    A preference model in SPO's sense: it scores the one-step x0 prediction of an image at timestep t against a
    prompt (docs/algorithm.md 4.2: the SPM sees the decoded x0 prediction plus its timestep, never raw noisy pixels).
    The step-aware preference model uses t; a clean-image model (PickScore's role) and the oracle ignore it.
  REQUIRES
    - P::scalar_type, P::name (names the policy in configs, run records and results); P::device_type, the device
      of the images it scores (cpu when absent: preference_device_t)
    - p.score(x0 [B, C, R, R] on that device, t (B timesteps), prompts (B)) -> B finite scores, higher is
      preferred; score i depends only on (x0[i], t[i], prompts[i]) up to rounding. Values of x0 outside [-1, 1] are
      allowed (the model clamps them as its preprocessing, like SPO's get_preference_score).
!*/
template <class P>
concept PreferenceModel = requires(P& p, const Tensor<typename P::scalar_type, preference_device_t<P>>& x0,
                                   std::span<const std::int64_t> t, std::span<const std::string> prompts) {
  { P::name } -> std::convertible_to<std::string_view>;
  { p.score(x0, t, prompts) } -> std::same_as<std::vector<double>>;
};

/// The outcome for one prompt: indices of the preferred and the rejected child, and whether the pair is kept.
struct Comparison {
  std::int64_t win = 0;
  std::int64_t lose = 0;
  bool valid = false;
  double gap = 0.0;  ///< softmax(s_win, s_lose)[0] - softmax(s_win, s_lose)[1] = tanh((s_win - s_lose) / 2)
};

/*!
  WHAT THIS REPRESENTS
    A rule that turns the scores of k children of one parent into a training pair.
  REQUIRES
    - C::name names the rule in configs
    - c.compare(scores, threshold, gen) with scores.size() >= 2 returns a Comparison with win != lose, both in
      [0, k), s[win] >= s[lose], and valid iff the softmax gap of the two scores exceeds the threshold
!*/
template <class C>
concept ComparePolicy = requires(const C& c, std::span<const double> scores, double threshold, Generator& gen) {
  { C::name } -> std::convertible_to<std::string_view>;
  { c.compare(scores, threshold, gen) } -> std::same_as<Comparison>;
};

}  // namespace spo::preference
