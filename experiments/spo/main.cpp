// SPDX-License-Identifier: MIT
// Experiment spo: SPO as in the paper: the step-aware preference model, best-and-worst pairs, random continuation.
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare, spo::resampler::RandomChild>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
