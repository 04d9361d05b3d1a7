// SPDX-License-Identifier: MIT
// Experiment spo_random_pair (Table 9: two random children ordered by score instead of best and worst).
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::RandomPairCompare, spo::resampler::RandomChild>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
