// SPDX-License-Identifier: MIT
/// @brief The preference-model policy the resampler and the evaluations use: scores of x0 predictions at a timestep.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/preference/concepts.hpp"
#include "spo/preference/rater.hpp"

namespace spo::preference {

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
