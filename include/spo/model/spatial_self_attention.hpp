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
    (attention_head_dim = C). The core is the device's attention_forward kernel (no [B, H, N, N] tensor).
  REQUIRES
    C % groups == 0, C % heads == 0.
  ENSURES
    forward keeps nothing for a backward (there is none: the VAE is frozen) and frees each intermediate once used.
!*/
template <Scalar T, Device D = cpu>
class SpatialSelfAttention {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  SpatialSelfAttention() = default;
  SpatialSelfAttention(std::int64_t channels, std::int64_t heads, std::int64_t groups, double eps)
      : channels_(channels),
        heads_(heads),
        group_norm_(groups, channels, eps),
        to_q_(channels, channels),
        to_k_(channels, channels),
        to_v_(channels, channels),
        to_out_(channels, channels) {
    SPO_CHECK(heads >= 1 && channels % heads == 0,
              "SpatialSelfAttention: " << channels << " channels are not divisible by " << heads << " heads");
  }

  void reset_parameters(Generator& gen) {
    to_q_.reset_parameters(gen);
    to_k_.reset_parameters(gen);
    to_v_.reset_parameters(gen);
    to_out_.reset_parameters(gen);
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() == 4 && x.size(1) == channels_, "SpatialSelfAttention(" << channels_ << "): input shape "
                                                                               << x.shape() << " is not [B, "
                                                                               << channels_ << ", H, W]");
    nn::no_grad_guard no_grad;
    const std::int64_t b = x.size(0), h = x.size(2), w = x.size(3), n = h * w;
    tensor t = nchw_to_tokens(group_norm_.forward(x));  // [B, HW, C]
    tensor q = to_q_.forward(t);                        // [B, HW, C]
    tensor k = to_k_.forward(t);                        // [B, HW, C]
    tensor v = to_v_.forward(t);                        // [B, HW, C]
    t = tensor();
    auto o = tensor::uninitialized(Shape{b, n, channels_});  // [B, HW, C]
    auto lse = tensor::uninitialized(Shape{b, heads_, n});   // [B, heads, HW]
    const std::int64_t dim_head = channels_ / heads_;
    attention_forward(cpu_kernels::AttentionShape{b, heads_, n, n, dim_head}, q, k, v, o, lse,
                      T(1) / std::sqrt(static_cast<T>(dim_head)));
    q = tensor();
    k = tensor();
    v = tensor();
    lse = tensor();
    tensor y = tokens_to_nchw(to_out_.forward(o), h, w);  // [B, C, H, W]
    add_inplace(y, x);
    return y;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    group_norm_.visit_parameters(f, nn::join_name(prefix, "group_norm"));
    to_q_.visit_parameters(f, nn::join_name(prefix, "to_q"));
    to_k_.visit_parameters(f, nn::join_name(prefix, "to_k"));
    to_v_.visit_parameters(f, nn::join_name(prefix, "to_v"));
    to_out_.visit_parameters(f, nn::join_name(prefix, "to_out.0"));
  }

 private:
  std::int64_t channels_ = 0, heads_ = 1;
  nn::GroupNorm<T, D> group_norm_;
  nn::Linear<T, D> to_q_, to_k_, to_v_, to_out_;
};

}  // namespace spo::model
