// SPDX-License-Identifier: MIT
/// @brief The tiny UNet of the device parity tests: two levels with cross-attention at both, 8 x 8 inputs.
#pragma once

#include "spo/model/unet_2d_condition.hpp"

namespace spo::cuda_test {

/// 3 -> 2 channels, levels of 16 and 24 channels, one resnet and one transformer per level, 2 heads, context width
/// 12, 4 groups; with text_time an SDXL-style added embedding (P = 10 pooled values, K = 2 ids of width 8).
inline model::UNetConfig tiny_unet_config(bool text_time = false) {
  model::UNetConfig c;
  c.in_channels = 3;
  c.out_channels = 2;
  c.block_out_channels = {16, 24};
  c.attention = {true, true};
  c.layers_per_block = 1;
  c.attention_heads = 2;
  c.cross_attention_dim = 12;
  c.norm_num_groups = 4;
  if (text_time) c.text_time = model::TextTimeConfig{8, 10 + 2 * 8};
  return c;
}

}  // namespace spo::cuda_test
