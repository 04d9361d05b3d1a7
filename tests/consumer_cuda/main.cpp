// SPDX-License-Identifier: MIT
/// @brief Downstream use of the installed CUDA component: a small UNet on spo::cuda, one forward pass (or, without a
/// usable device, the reason; building and linking is what this consumer proves on a machine without a GPU).
#include <cstdio>

#include <spo/cuda.hpp>
#include <spo/model/unet_2d_condition.hpp>

int main() {
  if (!spo::cuda_runtime::cuda_available()) {
    std::printf("no CUDA device: %s\n", spo::cuda_runtime::unavailable_reason().c_str());
    return 0;
  }
  spo::model::UNetConfig c;
  c.in_channels = 1;
  c.out_channels = 1;
  c.block_out_channels = {32, 64};
  c.attention = {false, true};
  c.layers_per_block = 1;
  c.attention_heads = 4;
  c.cross_attention_dim = 16;
  c.norm_num_groups = 8;
  spo::model::UNet2DCondition<float, spo::cuda> unet(c);
  spo::Generator g{1, 0};
  unet.reset_parameters(g);
  spo::Tensor<float, spo::cuda> x(spo::Shape{2, 1, 16, 16}), t(spo::Shape{2}), context(spo::Shape{2, 3, 16});
  const auto y = spo::to_host(unet.forward(x, t, context));  // [2, 1, 16, 16]
  std::printf("unet on cuda: %lld outputs\n", static_cast<long long>(y.numel()));
  return 0;
}
