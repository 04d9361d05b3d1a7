// SPDX-License-Identifier: MIT
/// @brief Composed networks: ResNet and transformer blocks, the SD-style UNet, the SD VAE (AutoencoderKL),
/// text-conditioned models, and the Stable Diffusion 1.x/2.x and SDXL text-to-image pipelines.
#pragma once

#include "spo/model/autocast.hpp"
#include "spo/model/autoencoder_kl.hpp"
#include "spo/model/diffusers_unet_config.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/model/resnet_block.hpp"
#include "spo/model/spatial_self_attention.hpp"
#include "spo/model/stable_diffusion.hpp"
#include "spo/model/text_conditioned.hpp"
#include "spo/model/transformer_2d.hpp"
#include "spo/model/unet_2d_condition.hpp"
