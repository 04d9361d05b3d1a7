// SPDX-License-Identifier: MIT
/// @brief The resampler module's contract: the continuation rule that picks the child carrying the chain on (the
/// resampler is composed with it, a preference::PreferenceModel and a preference::ComparePolicy).
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>

#include "spo/core/rng.hpp"
#include "spo/preference/concepts.hpp"

namespace spo::resampler {

/*!
  WHAT THIS REPRESENTS
    The rule that picks the child x_{t-1} from which the chain continues, given the k children's scores and the
    compare policy's outcome.
  REQUIRES
    - R::name names the rule in configs and results
    - r.choose(scores (k), comparison, gen) returns an index in [0, k)
!*/
template <class R>
concept ContinuationRule = requires(const R& r, std::span<const double> s, const preference::Comparison& c,
                                    Generator& g) {
  { R::name } -> std::convertible_to<std::string_view>;
  { r.choose(s, c, g) } -> std::same_as<std::int64_t>;
};

}  // namespace spo::resampler
