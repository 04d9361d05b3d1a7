// SPDX-License-Identifier: MIT
/// @brief The tiny text-conditioned model every training test builds, on the CPU and on spo::cuda.
#pragma once

#include "spo/model/fashion_default.hpp"

namespace spo::test_support {

/// Two levels (8, 16 channels), attention at the second, 8x8 images of 1 channel; text tower of width 6.
inline const model::UNetConfig tiny_unet{.block_out_channels = {8, 16},
                                         .attention = {false, true},
                                         .layers_per_block = 1,
                                         .attention_heads = 2,
                                         .cross_attention_dim = 8,
                                         .norm_num_groups = 4};
inline const model::TextSection tiny_text{6};

}  // namespace spo::test_support
