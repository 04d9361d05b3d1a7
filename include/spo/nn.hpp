// SPDX-License-Identifier: MIT
/// @brief Neural-network layers: the Layer concept, parameters, gradient mode and every layer.
#pragma once

#include "spo/nn/activation.hpp"
#include "spo/nn/attention.hpp"
#include "spo/nn/checkpoint.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/context_layer.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/gradient_hook.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/lora.hpp"
#include "spo/nn/named.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/nn/pooling.hpp"
#include "spo/nn/residual.hpp"
#include "spo/nn/sequential.hpp"
#include "spo/nn/timestep_embedding.hpp"
#include "spo/nn/upsample.hpp"
