// SPDX-License-Identifier: MIT
// Experiment train_pm_clean: trains the preference-model variant spm::CleanPM (see docs/preference_models.md).
#include "spo/experiment/spm_experiment.hpp"

using Experiment = spo::spm::CleanPM;

int main(int argc, char** argv) { return spo::experiment::run_spm_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
