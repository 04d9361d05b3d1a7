// SPDX-License-Identifier: MIT
/// @brief SpatialSelfAttention: self-attention over the pixels of a feature map with its own group norm and residual
/// (the attention of diffusers' UNetMidBlock2D, as in the AutoencoderKL mid blocks); forward only.
#pragma once

#include <string_view>

#include "spo/nn/attention.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/tensor/layout.hpp"

namespace spo::model {

/*!
  WHAT THIS REPRESENTS
    diffusers' Attention(query_dim=C, heads, dim_head=C/heads, norm_num_groups=G, eps, residual_connection=True,
    bias=True, rescale_output_factor=1) applied to x [B, C, H, W] (AttnProcessor on a 4-D input):
      t = group_norm(x) as tokens [B, HW, C];  q, k, v = to_q(t), to_k(t), to_v(t)   (with biases)
      y = x + to_out.0(concat_h softmax(q_h k_h^T / sqrt(C/heads)) v_h) as [B, C, H, W]
    Keys: group_norm.{weight,bias} [C], to_q/to_k/to_v/to_out.0.{weight [C, C], bias [C]}. The VAE uses one head
    (attention_head_dim = C). The core is nn::Attention with biased q/k/v (no [B, H, N, N] tensor).
  REQUIRES
    C % groups == 0, C % heads == 0.
  ENSURES
    forward keeps nothing for a backward (there is none: the VAE is frozen) and frees each intermediate once used.
!*/
template <StorageScalar T, Device D = cpu>
class SpatialSelfAttention {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  SpatialSelfAttention() = default;
  SpatialSelfAttention(std::int64_t channels, std::int64_t heads, std::int64_t groups, double eps)
      : channels_(channels), heads_(heads), group_norm_(groups, channels, eps) {
    SPO_CHECK(heads >= 1 && channels % heads == 0,
              "SpatialSelfAttention: " << channels << " channels are not divisible by " << heads << " heads");
    attention_ = nn::Attention<T, D>(channels, heads, channels / heads, 0, {.qkv_bias = true});
  }

  void reset_parameters(Generator& gen) { attention_.reset_parameters(gen); }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() == 4 && x.size(1) == channels_, "SpatialSelfAttention(" << channels_ << "): input shape "
                                                                               << x.shape() << " is not [B, "
                                                                               << channels_ << ", H, W]");
    nn::no_grad_guard no_grad;
    const std::int64_t h = x.size(2), w = x.size(3);
    tensor y = tokens_to_nchw(attention_.forward(nchw_to_tokens(group_norm_.forward(x))), h, w);  // [B, C, H, W]
    add_inplace(y, x);
    return y;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    group_norm_.visit_parameters(f, nn::join_name(prefix, "group_norm"));
    attention_.visit_parameters(f, prefix);
  }

 private:
  std::int64_t channels_ = 0, heads_ = 1;
  nn::GroupNorm<T, D> group_norm_;
  nn::Attention<T, D> attention_;  // one biased q/k/v/out set under to_q ... to_out.0
};

}  // namespace spo::model
