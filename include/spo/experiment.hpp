// SPDX-License-Identifier: MIT
/// @brief The composition root: component loaders and the experiment drivers (SPO, the baselines and the
/// preference-model experiments) composed from compile-time policies.
#pragma once

#include "spo/experiment/baseline_experiment.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/experiment/components.hpp"
#include "spo/experiment/spm_experiment.hpp"
#include "spo/experiment/spo_experiment.hpp"
