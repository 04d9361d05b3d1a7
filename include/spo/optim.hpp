// SPDX-License-Identifier: MIT
/// @brief Optimizers that update nn::Parameter values from their gradients.
#pragma once

