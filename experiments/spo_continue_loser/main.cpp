// SPDX-License-Identifier: MIT
// Experiment spo_continue_loser (Table 4: continue the chain from the dispreferred child).
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare, spo::resampler::LoserChild>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
