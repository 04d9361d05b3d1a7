// SPDX-License-Identifier: MIT
// Experiment spo_no_step_condition (Table 5: the preference model without time conditioning).
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::spm::NoStepConditionPM, spo::preference::BestWorstCompare, spo::resampler::RandomChild>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
