// SPDX-License-Identifier: MIT
// Experiment spo_clean_pm (Table 5: the clean-image preference model (PickScore role) at every step).
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::spm::CleanPM, spo::preference::BestWorstCompare, spo::resampler::RandomChild>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
