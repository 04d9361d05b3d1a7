// SPDX-License-Identifier: MIT
/// @brief Training loops: the shared round loop, pretraining, SPO and the baselines
/// (Diffusion-DPO, D3PO, DDPO).
#pragma once

#include "spo/train/concepts.hpp"
// The contracts above; the components:
#include "spo/train/common_sections.hpp"
#include "spo/train/compute_budget.hpp"
#include "spo/train/d3po_training.hpp"
#include "spo/train/data_parallel.hpp"
#include "spo/train/ddpo_training.hpp"
#include "spo/train/diffusion_dpo_training.hpp"
#include "spo/train/pretraining.hpp"
#include "spo/train/round_trainer.hpp"
#include "spo/train/spo_training.hpp"
