// SPDX-License-Identifier: MIT
/// @brief Training loops and their plumbing: progress, metrics log, run record, pretraining.
#pragma once

#include "spo/train/metrics_log.hpp"
#include "spo/train/pretraining.hpp"
#include "spo/train/progress.hpp"
#include "spo/train/run_record.hpp"
#include "spo/train/spo_training.hpp"
