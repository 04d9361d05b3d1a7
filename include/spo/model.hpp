// SPDX-License-Identifier: MIT
/// @brief Composed networks: ResNet and transformer blocks, the SD-style UNet, the SD VAE (AutoencoderKL),
/// text-conditioned models.
#pragma once

#include "spo/model/autoencoder_kl.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/model/resnet_block.hpp"
#include "spo/model/spatial_self_attention.hpp"
#include "spo/model/text_conditioned.hpp"
#include "spo/model/transformer_2d.hpp"
#include "spo/model/unet_2d_condition.hpp"
