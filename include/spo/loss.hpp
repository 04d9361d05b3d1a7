// SPDX-License-Identifier: MIT
/// @brief Losses: their contracts, cross-entropy and the preference-optimisation losses (SPO, unclipped step DPO,
/// D3PO, DDPO, Diffusion-DPO).
#pragma once

#include "spo/loss/concepts.hpp"
// The contracts above; the components:
#include "spo/loss/clipped_ratio.hpp"
#include "spo/loss/cross_entropy.hpp"
#include "spo/loss/d3po_loss.hpp"
#include "spo/loss/ddpo_loss.hpp"
#include "spo/loss/diffusion_dpo_loss.hpp"
#include "spo/loss/pair_preference.hpp"
#include "spo/loss/spo_loss.hpp"
#include "spo/loss/step_dpo_loss.hpp"
