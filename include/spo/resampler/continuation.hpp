// SPDX-License-Identifier: MIT
/// @brief Continuation rules of the step-wise resampler: which child of a step carries the chain on (Table 4).
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>

#include "spo/core/rng.hpp"
#include "spo/preference/compare.hpp"
#include "spo/resampler/concepts.hpp"

namespace spo::resampler {

/// SPO's step-wise resampler: a child drawn uniformly at random (not the winner), so the chain keeps the
/// distribution of plain DDIM sampling. One uniform from gen per call.
struct RandomChild {
  static constexpr std::string_view name = "random";
  std::int64_t choose(std::span<const double> s, const preference::Comparison&, Generator& gen) const {
    const std::uint64_t at = gen.reserve(1);
    const auto k = static_cast<std::int64_t>(s.size());
    return std::min<std::int64_t>(static_cast<std::int64_t>(rng::uniform_at(gen.seed, at, 0) * static_cast<double>(k)),
                                  k - 1);
  }
};

/// Ablation (Table 4): continue from the preferred child.
struct WinnerChild {
  static constexpr std::string_view name = "winner";
  std::int64_t choose(std::span<const double>, const preference::Comparison& c, Generator&) const { return c.win; }
};

/// Ablation (Table 4): continue from the dispreferred child.
struct LoserChild {
  static constexpr std::string_view name = "loser";
  std::int64_t choose(std::span<const double>, const preference::Comparison& c, Generator&) const { return c.lose; }
};

static_assert(ContinuationRule<RandomChild> && ContinuationRule<WinnerChild> && ContinuationRule<LoserChild>);

}  // namespace spo::resampler
