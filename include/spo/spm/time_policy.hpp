// SPDX-License-Identifier: MIT
/// @brief Time policies of the preference network: step-conditioned (SPO's step-aware SPM) or unconditioned (CLIP).
#pragma once

#include <concepts>
#include <string_view>
#include <type_traits>

namespace spo::spm {

/*!
  WHAT THIS REPRESENTS
    Whether the image tower of a preference network sees the denoising timestep t.
  REQUIRES
    - P::name: the policy's config spelling
    - P::conditioned: a constexpr bool; true adds the timestep embedder and adaLN-Zero modulations
      (SPO's time-conditioned CLIP), false gives the plain CLIP tower, which ignores t
!*/
template <class P>
concept TimePolicy = requires {
  { P::name } -> std::convertible_to<std::string_view>;
  { P::conditioned } -> std::convertible_to<bool>;
}
&&std::same_as<std::remove_cv_t<decltype(P::conditioned)>, bool>;

/// The step-aware preference model: adaLN-Zero modulation by the timestep in every vision block and after ln_post.
struct StepConditioned {
  static constexpr std::string_view name = "step";
  static constexpr bool conditioned = true;
};

/// A plain CLIP-style preference model (PickScore-like): the timestep is accepted and ignored.
struct Unconditioned {
  static constexpr std::string_view name = "none";
  static constexpr bool conditioned = false;
};

static_assert(TimePolicy<StepConditioned> && TimePolicy<Unconditioned>);

}  // namespace spo::spm
