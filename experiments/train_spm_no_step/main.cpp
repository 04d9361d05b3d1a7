// SPDX-License-Identifier: MIT
// Experiment train_spm_no_step: trains the preference-model variant spm::NoStepConditionPM (see
// docs/preference_models.md).
#include "spo/experiment/spm_experiment.hpp"

using Experiment = spo::spm::NoStepConditionPM;

int main(int argc, char** argv) { return spo::experiment::run_spm_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
