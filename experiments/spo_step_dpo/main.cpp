// SPDX-License-Identifier: MIT
// Experiment spo_step_dpo (loss ablation): SPO's step-wise resampler pairs trained with the unclipped DPO loss on the
// step log-probability ratios instead of SPO's clipped-ratio loss; everything else is the paper's SPO.
#include "spo/experiment/spo_experiment.hpp"
#include "spo/loss/step_dpo_loss.hpp"

using Experiment = spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare,
                                        spo::resampler::RandomChild, spo::loss::StepDpoLoss>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
