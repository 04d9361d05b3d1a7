// SPDX-License-Identifier: MIT
/// @brief Preference labels drawn from rewards as people give them: Bradley-Terry noise with a temperature, and ties.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/preference/rater.hpp"

namespace spo::preference {

/// The label of a pair (a, b) in the SPM loss's convention (docs/algorithm.md 4.3): (1, 0) a preferred, (0, 1) b
/// preferred, (0.5, 0.5) a tie.
struct PreferenceLabel {
  double y_a = 0.5;
  double y_b = 0.5;

  bool is_tie() const { return y_a == y_b; }
  friend bool operator==(const PreferenceLabel&, const PreferenceLabel&) = default;
};

inline constexpr PreferenceLabel label_a{1.0, 0.0};
inline constexpr PreferenceLabel label_b{0.0, 1.0};
inline constexpr PreferenceLabel label_tie{0.5, 0.5};

/// How a rater's rewards become labels; every key is required in a config.
struct LabelConfig {
  BOOST_HANA_DEFINE_STRUCT(LabelConfig, (double, temperature), (double, tie_margin));
};

/// temperature >= 0 (0: the deterministic limit) and tie_margin >= 0, both finite.
inline void validate(const LabelConfig& c, std::string_view key = "labels") {
  SPO_CONFIG_CHECK(std::isfinite(c.temperature) && c.temperature >= 0, std::string(key) + ".temperature",
                   "must be finite and >= 0, got " << c.temperature);
  SPO_CONFIG_CHECK(std::isfinite(c.tie_margin) && c.tie_margin >= 0, std::string(key) + ".tie_margin",
                   "must be finite and >= 0, got " << c.tie_margin);
}

/*!
  ENSURES
    - returns the Bradley-Terry probability that a is preferred over b:
        P(a > b) = sigmoid((r_a - r_b) / temperature) = 1 / (1 + exp(-(r_a - r_b) / temperature))
      evaluated without overflow; temperature == 0 gives its limit 1, 0 or 0.5 (r_a == r_b)
    - throws spo::error for non-finite rewards or a negative / non-finite temperature
!*/
inline double preference_probability(double r_a, double r_b, double temperature) {
  SPO_CHECK(std::isfinite(r_a) && std::isfinite(r_b), "rewards must be finite, got " << r_a << " and " << r_b);
  SPO_CHECK(std::isfinite(temperature) && temperature >= 0,
            "label temperature must be finite and >= 0, got " << temperature);
  const double d = r_a - r_b;
  if (temperature == 0) return d > 0 ? 1.0 : d < 0 ? 0.0 : 0.5;
  const double z = d / temperature;
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

/*!
  ENSURES
    - |r_a - r_b| < tie_margin: label_tie (0.5, 0.5), whatever u is
    - otherwise label_a when u < preference_probability(r_a, r_b, temperature), else label_b; for u uniform in
      [0, 1), a is preferred with exactly that probability
!*/
inline PreferenceLabel draw_label(double r_a, double r_b, const LabelConfig& c, double u) {
  const double p = preference_probability(r_a, r_b, c.temperature);
  if (std::abs(r_a - r_b) < c.tie_margin) return label_tie;
  return u < p ? label_a : label_b;
}

/*!
  ENSURES
    - label i = draw_label(r_a[i], r_b[i], c, u_i), with u_i = rng::uniform_at(gen.seed, first, i) and
      first = gen.reserve(n): one number per pair, ties included, so the stream position after the call depends
      only on n (the same seed gives the same labels, and a resumed run continues the same stream)
    - throws spo::error for mismatched sizes or an invalid config (validate)
!*/
inline std::vector<PreferenceLabel> draw_labels(std::span<const double> r_a, std::span<const double> r_b,
                                                const LabelConfig& c, Generator& gen) {
  validate(c);
  SPO_CHECK(r_a.size() == r_b.size(), "draw_labels: " << r_a.size() << " rewards for a but " << r_b.size() << " for b");
  const std::uint64_t first = gen.reserve(r_a.size());
  std::vector<PreferenceLabel> out;
  out.reserve(r_a.size());
  for (std::size_t i = 0; i < r_a.size(); ++i)
    out.push_back(draw_label(r_a[i], r_b[i], c, rng::uniform_at(gen.seed, first, i)));
  return out;
}

/// Labels for pairs of images [B, 1, R, R] under the same prompts, as a rater R scores them.
template <Rater R>
std::vector<PreferenceLabel> label_pairs(R& rater, const Tensor<typename R::scalar_type, cpu>& images_a,
                                         const Tensor<typename R::scalar_type, cpu>& images_b,
                                         std::span<const std::string> prompts, const LabelConfig& c, Generator& gen) {
  check_same_shape(images_a.shape(), images_b.shape(), "label_pairs");
  const auto r_a = rater.score(images_a, prompts);
  const auto r_b = rater.score(images_b, prompts);
  return draw_labels(r_a, r_b, c, gen);
}

}  // namespace spo::preference
