// SPDX-License-Identifier: MIT
/// @brief The preference-model policy the resampler and the evaluations use: scores of x0 predictions at a timestep.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/preference/rater.hpp"

namespace spo::preference {

/*!
  WHAT THIS REPRESENTS
    A preference model in SPO's sense: it scores the one-step x0 prediction of an image at timestep t against a
    prompt (algorithm.md 4.2: the SPM sees the decoded x0 prediction plus its timestep, never raw noisy pixels).
    The step-aware preference model uses t; a clean-image model (PickScore's role) and the oracle ignore it.
  REQUIRES
    - P::scalar_type, P::name (names the policy in configs, run records and results); P::device_type, the device
      of the images it scores (cpu when absent: preference_device_t)
    - p.score(x0 [B, C, R, R] on that device, t (B timesteps), prompts (B)) -> B finite scores, higher is preferred; score i depends
      only on (x0[i], t[i], prompts[i]) up to rounding. Values of x0 outside [-1, 1] are allowed (the model clamps
      them as its preprocessing, like SPO's get_preference_score).
!*/
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

template <class P>
concept PreferenceModel = requires(P& p, const Tensor<typename P::scalar_type, preference_device_t<P>>& x0,
                                   std::span<const std::int64_t> t,
                                   std::span<const std::string> prompts) {
  { P::name } -> std::convertible_to<std::string_view>;
  { p.score(x0, t, prompts) } -> std::same_as<std::vector<double>>;
};

/// A rater used as a preference model: it scores the x0 prediction and ignores the timestep. With the oracle rater
/// this is the upper bound of the ablations (the labels' own source, applied to noisy predictions).
template <Rater R>
class RaterPreference {
 public:
  using scalar_type = typename R::scalar_type;
  using device_type = cpu;
  static constexpr std::string_view name = R::name;

  explicit RaterPreference(R rater) : rater_(std::move(rater)) {}

  std::vector<double> score(const Tensor<scalar_type, cpu>& x0, std::span<const std::int64_t> t,
                            std::span<const std::string> prompts) {
    SPO_CHECK(x0.rank() >= 1 && static_cast<std::int64_t>(t.size()) == x0.size(0),
              name << ": " << t.size() << " timesteps for images " << x0.shape());
    return rater_.score(x0, prompts);
  }

  R& rater() { return rater_; }

 private:
  R rater_;
};

}  // namespace spo::preference
