// SPDX-License-Identifier: MIT
// expect: satisfaction of 'ComparePolicy<Compare>' \[with Compare = UnnamedCompare\]
// requires: spo/experiment/spo_experiment.hpp
/// @brief A compare policy must name itself (configs and results refer to it): one without a name must be rejected
/// naming the concept.
#include "spo/experiment/spo_experiment.hpp"

struct UnnamedCompare {
#ifdef SPO_FAILTEST_CONTROL
  static constexpr std::string_view name = "first_two";
#endif
  spo::preference::Comparison compare(std::span<const double>, double, spo::Generator&) const {
    return {0, 1, true, 1.0};
  }
};

using Experiment = spo::experiment::Spo<spo::spm::StepAwarePM, UnnamedCompare, spo::resampler::RandomChild>;

int main() { return Experiment::compare_type::name.size() > 0 ? 0 : 1; }
