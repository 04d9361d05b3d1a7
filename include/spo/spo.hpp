// SPDX-License-Identifier: MIT
/// @brief The whole library: every module umbrella, listed in floor order.
///
/// The floors: a header of a module includes headers of its own module and of modules listed above it, never below
/// (tests/build/floor_check.cmake reads this list; `ctest -R module_floors`). From the ground up: the core; tensors;
/// layers; gradient checks; optimizers; data-parallel communicators; files (configs, checkpoints, run plumbing); the
/// data; text; diffusion (schedules, DDIM); losses; models; the judges; preferences (rater, pairs, compare);
/// evaluation; the resampler; the training loops; the step-aware preference model; and the composition root, the
/// experiments.
#pragma once

// The floor order, lowest first (kept as written):
// clang-format off
#include "spo/core.hpp"
#include "spo/tensor.hpp"
#include "spo/nn.hpp"
#include "spo/testing.hpp"
#include "spo/optim.hpp"
#include "spo/dist.hpp"
#include "spo/io.hpp"
#include "spo/data.hpp"
#include "spo/text.hpp"
#include "spo/diffusion.hpp"
#include "spo/loss.hpp"
#include "spo/model.hpp"
#include "spo/judge.hpp"
#include "spo/preference.hpp"
#include "spo/eval.hpp"
#include "spo/resampler.hpp"
#include "spo/train.hpp"
#include "spo/spm.hpp"
#include "spo/experiment.hpp"
// clang-format on
