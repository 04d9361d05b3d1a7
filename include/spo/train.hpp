// SPDX-License-Identifier: MIT
/// @brief Training loops and their plumbing: progress, metrics log, run record, pretraining, SPO and the baselines
/// (Diffusion-DPO, D3PO, DDPO).
#pragma once

#include "spo/train/concepts.hpp"
#include "spo/train/common_sections.hpp"
#include "spo/train/d3po_training.hpp"
#include "spo/train/ddpo_training.hpp"
#include "spo/train/diffusion_dpo_training.hpp"
#include "spo/train/metrics_log.hpp"
#include "spo/train/pretraining.hpp"
#include "spo/train/progress.hpp"
#include "spo/train/round_trainer.hpp"
#include "spo/train/run_record.hpp"
#include "spo/train/spo_training.hpp"
