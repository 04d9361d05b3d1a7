// SPDX-License-Identifier: MIT
/// @brief Experiment drivers: SPO and preference-model experiments composed from compile-time policies.
#pragma once

#include "spo/experiment/baseline_experiment.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/experiment/spm_experiment.hpp"
#include "spo/experiment/spo_experiment.hpp"
