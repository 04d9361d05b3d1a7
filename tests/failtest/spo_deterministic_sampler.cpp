// SPDX-License-Identifier: MIT
// expect: satisfaction of 'SamplerSuitsLoss<Loss, .+Loss = spo::loss::SpoLoss.+DeterministicDdim
// requires: spo/experiment/spo_experiment.hpp
/// @brief SPO's loss differentiates the transition log-probabilities of the children: an experiment composed with a
/// deterministic sampler (DDIM eta = 0: no transition density) must be rejected naming the concept.
#include "spo/experiment/spo_experiment.hpp"

#ifdef SPO_FAILTEST_CONTROL
using Sampler = spo::diffusion::AncestralDdim;
#else
using Sampler = spo::diffusion::DeterministicDdim;
#endif

using Schedule = spo::diffusion::DdimScheduler<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction, Sampler>;
using Experiment = spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare,
                                        spo::resampler::RandomChild, spo::loss::SpoLoss, Schedule>;

int main() { return Experiment::sampler_type::stochastic ? 0 : 1; }
