// SPDX-License-Identifier: MIT
/// @brief Losses that are not diffusion-specific (cross-entropy).
#pragma once

#include "spo/loss/cross_entropy.hpp"
