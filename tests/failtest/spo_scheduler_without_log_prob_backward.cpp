// SPDX-License-Identifier: MIT
// expect: satisfaction of 'Scheduler<typename P::scheduler_type, float, spo::cpu>' \[with P = NoBackwardPolicy\]
// requires: spo/experiment/spo_experiment.hpp
/// @brief The scheduler an experiment trains with must differentiate its transition log-probability: a scheduler
/// without log_prob_backward must be rejected naming the concept.
#include "spo/experiment/spo_experiment.hpp"

using Ddim = spo::diffusion::Ddim<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>;

/// DDIM with every member but the log-probability's backward.
class NoBackward : private Ddim {
 public:
  using Ddim::Ddim;
  using Ddim::log_prob;
  using Ddim::mean;
  using Ddim::num_inference_steps;
  using Ddim::predict;
  using Ddim::sample_children;
  using Ddim::set_timesteps;
  using Ddim::timesteps;
  using Ddim::transitions;
  using typename Ddim::prediction_type;
  using typename Ddim::schedule_type;
#ifdef SPO_FAILTEST_CONTROL
  using Ddim::log_prob_backward;
#endif
};

struct NoBackwardPolicy {
  using scheduler_type = NoBackward;
  using sampler_type = spo::diffusion::AncestralDdim;
};

using Experiment = spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare,
                                        spo::resampler::RandomChild, spo::loss::SpoLoss, NoBackwardPolicy>;

int main() { return Experiment::sampler_type::stochastic ? 0 : 1; }
