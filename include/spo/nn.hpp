// SPDX-License-Identifier: MIT
/// @brief Neural-network layers: the Layer concept, parameters, gradient mode and every layer.
#pragma once

#include "spo/nn/grad_mode.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/parameter.hpp"
