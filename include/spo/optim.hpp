// SPDX-License-Identifier: MIT
/// @brief Optimizers that update nn::Parameter values from their gradients.
#pragma once

#include "spo/optim/concepts.hpp"
// The contracts above; the components:
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/optim/ema.hpp"
#include "spo/optim/loss_scaler.hpp"
#include "spo/optim/master_weights.hpp"
#include "spo/optim/mixed_precision_step.hpp"
#include "spo/optim/precision.hpp"
