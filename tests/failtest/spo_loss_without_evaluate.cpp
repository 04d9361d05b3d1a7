// SPDX-License-Identifier: MIT
// expect: satisfaction of 'PairLoss<L>' \[with L = HalfWrittenLoss\]
// requires: spo/experiment/spo_experiment.hpp
/// @brief An experiment's loss policy must be a loss::PairLoss: a loss with a name, options and validation but no
/// evaluate (value and gradients) must be rejected naming the concept.
#include <span>

#include "spo/experiment/spo_experiment.hpp"
#include "spo/loss/step_dpo_loss.hpp"

struct HalfWrittenLoss {
  static constexpr std::string_view name = "half_written";
  static constexpr bool needs_transition_log_prob = true;
  using options_type = spo::loss::StepDpoOptions;
#ifdef SPO_FAILTEST_CONTROL
  static spo::loss::PairLossResult evaluate(std::span<const double> w, std::span<const double> w_ref,
                                            std::span<const double> l, std::span<const double> l_ref,
                                            const options_type& o) {
    return spo::loss::step_dpo_loss(w, w_ref, l, l_ref, o);
  }
#endif
};

using Experiment = spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare,
                                        spo::resampler::RandomChild, HalfWrittenLoss>;

int main() { return Experiment::loss_type::name.size() > 0 ? 0 : 1; }
