// SPDX-License-Identifier: MIT
/// @brief Compare policies: which two of k children form a (win, lose) pair, and whether the pair is kept.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/preference/concepts.hpp"

namespace spo::preference {

/// softmax over the two raw scores, first minus second: tanh((a - b) / 2), in [-1, 1].
inline double softmax_gap(double a, double b) { return std::tanh((a - b) / 2.0); }

/// SPO's rule (compare_funcs.preference_score_compare): the best and the worst of k children; valid when
/// softmax([s_max, s_min])[0] - softmax(...)[1] > threshold. Ties in the sort keep the lower index first, as a
/// stable descending sort does.
struct BestWorstCompare {
  static constexpr std::string_view name = "best_worst";
  Comparison compare(std::span<const double> s, double threshold, Generator&) const {
    SPO_CHECK(s.size() >= 2, "compare needs at least 2 children, got " << s.size());
    std::int64_t best = 0, worst = 0;
    for (std::size_t i = 1; i < s.size(); ++i) {
      if (s[i] > s[static_cast<std::size_t>(best)]) best = static_cast<std::int64_t>(i);
      if (s[i] <= s[static_cast<std::size_t>(worst)]) worst = static_cast<std::int64_t>(i);
    }
    if (best == worst) worst = best == 0 ? 1 : 0;  // all scores equal: any pair, gap 0
    const double gap = softmax_gap(s[static_cast<std::size_t>(best)], s[static_cast<std::size_t>(worst)]);
    return {best, worst, gap > threshold, gap};
  }
};

/// The ablation of Table 9: two children drawn uniformly without replacement, ordered by score; same threshold.
struct RandomPairCompare {
  static constexpr std::string_view name = "random_pair";
  Comparison compare(std::span<const double> s, double threshold, Generator& gen) const {
    SPO_CHECK(s.size() >= 2, "compare needs at least 2 children, got " << s.size());
    const auto k = static_cast<std::uint64_t>(s.size());
    const std::uint64_t first = gen.reserve(2);
    const auto a = static_cast<std::int64_t>(rng::uniform_at(gen.seed, first, 0) * static_cast<double>(k));
    auto b = static_cast<std::int64_t>(rng::uniform_at(gen.seed, first, 1) * static_cast<double>(k - 1));
    if (b >= a) ++b;  // uniform over the other k - 1 children
    const bool a_first = s[static_cast<std::size_t>(a)] >= s[static_cast<std::size_t>(b)];
    const std::int64_t win = a_first ? a : b, lose = a_first ? b : a;
    const double gap = softmax_gap(s[static_cast<std::size_t>(win)], s[static_cast<std::size_t>(lose)]);
    return {win, lose, gap > threshold, gap};
  }
};

/// The threshold on the softmax gap must lie in [0, 1).
inline void check_threshold(double threshold, std::string_view key = "threshold") {
  SPO_CONFIG_CHECK(threshold >= 0.0 && threshold < 1.0, std::string(key), "must be in [0, 1), got " << threshold);
}

}  // namespace spo::preference
