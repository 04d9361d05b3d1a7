// SPDX-License-Identifier: MIT
// expect: satisfaction of 'ContinuationRule<Continuation>' \[with Continuation = NoChoice\]
// requires: spo/experiment/spo_experiment.hpp
/// @brief A continuation rule must choose the child that carries the chain on: one without choose() must be
/// rejected naming the concept.
#include "spo/experiment/spo_experiment.hpp"

struct NoChoice {
  static constexpr std::string_view name = "no_choice";
#ifdef SPO_FAILTEST_CONTROL
  std::int64_t choose(std::span<const double>, const spo::preference::Comparison& c, spo::Generator&) const {
    return c.win;
  }
#endif
};

using Experiment = spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare, NoChoice>;

int main() { return Experiment::continuation_type::name.size() > 0 ? 0 : 1; }
