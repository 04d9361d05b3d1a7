// SPDX-License-Identifier: MIT
// Experiment spo_cuda: the paper's SPO (step-aware preference model, best-and-worst pairs, random continuation) with
// the diffusion model, the resampler, the preference network and the trainer on the GPU; the same configs as `spo`.
#include "spo/cuda.hpp"
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare, spo::resampler::RandomChild,
                         spo::loss::SpoLoss, spo::experiment::DefaultScheduler,
                         spo::experiment::FashionDiffusionOn<spo::cuda>>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
