// SPDX-License-Identifier: MIT
/// @brief Losses: cross-entropy and the preference-optimisation losses (SPO, D3PO, DDPO, Diffusion-DPO).
#pragma once

#include "spo/loss/clipped_ratio.hpp"
#include "spo/loss/cross_entropy.hpp"
#include "spo/loss/d3po_loss.hpp"
#include "spo/loss/ddpo_loss.hpp"
#include "spo/loss/diffusion_dpo_loss.hpp"
#include "spo/loss/loss_policy.hpp"
#include "spo/loss/pair_preference.hpp"
#include "spo/loss/spo_loss.hpp"
