// SPDX-License-Identifier: MIT
/// @brief Transformer2DModel with one BasicTransformerBlock (self-attention, cross-attention, GEGLU feed-forward).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spo/model/resnet_block.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/attention.hpp"
#include "spo/nn/layer_norm.hpp"

namespace spo::model {

/*!
  WHAT THIS REPRESENTS
    diffusers' BasicTransformerBlock (norm_type "layer_norm", activation "geglu", no only_cross_attention):
      h = x + attn1(norm1(x));  h = h + attn2(norm2(h), context);  y = h + ff(norm3(h))
    with ff = net.2(GEGLU net.0(.)), GEGLU inner width 4 dim. x [B, N, dim], context [B, M, Dctx].
    Proj is the projection policy of both attentions (nn::Linear, or nn::LoRA<nn::Linear> for SPO).
!*/
template <StorageScalar T, Device D = cpu, class Proj = nn::Linear<T, D>>
class BasicTransformerBlock {
 public:
  using tensor = Tensor<T, D>;

  BasicTransformerBlock() = default;
  BasicTransformerBlock(std::int64_t dim, std::int64_t heads, std::int64_t context_dim, double eps = 1e-5)
      : norm1_(dim, eps),
        attn1_(dim, heads, dim / heads),
        norm2_(dim, eps),
        attn2_(dim, heads, dim / heads, context_dim),
        norm3_(dim, eps),
        ff0_(dim, 4 * dim),
        ff2_(4 * dim, dim) {
    SPO_CHECK(dim % heads == 0, "BasicTransformerBlock: dim " << dim << " is not divisible by " << heads << " heads");
  }

  void reset_parameters(Generator& gen) {
    attn1_.reset_parameters(gen);
    attn2_.reset_parameters(gen);
    ff0_.reset_parameters(gen);
    ff2_.reset_parameters(gen);
  }

  tensor forward(const tensor& x, const tensor& context) {
    auto h = attn1_.forward(norm1_.forward(x));  // [B, N, dim]
    add_inplace(h, x);
    auto h2 = attn2_.forward(norm2_.forward(h), context);  // [B, N, dim]
    add_inplace(h2, h);
    auto y = ff2_.forward(ff0_.forward(norm3_.forward(h2)));  // [B, N, dim]
    add_inplace(y, h2);
    return y;
  }

  BlockGradients<T, D> backward(const tensor& dy) {
    auto dh2 = norm3_.backward(ff0_.backward(ff2_.backward(dy)));  // [B, N, dim]
    add_inplace(dh2, dy);
    auto g2 = attn2_.backward_context(dh2);
    auto dh = norm2_.backward(g2.dx);
    add_inplace(dh, dh2);
    auto dx = norm1_.backward(attn1_.backward(dh));
    add_inplace(dx, dh);
    return {std::move(dx), std::move(g2.dcontext)};
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    norm1_.visit_parameters(f, nn::join_name(prefix, "norm1"));
    attn1_.visit_parameters(f, nn::join_name(prefix, "attn1"));
    norm2_.visit_parameters(f, nn::join_name(prefix, "norm2"));
    attn2_.visit_parameters(f, nn::join_name(prefix, "attn2"));
    norm3_.visit_parameters(f, nn::join_name(prefix, "norm3"));
    ff0_.visit_parameters(f, nn::join_name(prefix, "ff.net.0"));
    ff2_.visit_parameters(f, nn::join_name(prefix, "ff.net.2"));
  }

  /// Calls f(projection) for every attention projection (to_q, to_k, to_v, to_out.0 of attn1 and attn2).
  template <class F>
  void for_each_projection(F&& f) {
    for (auto* a : {&attn1_, &attn2_}) {
      f(a->to_q());
      f(a->to_k());
      f(a->to_v());
      f(a->to_out());
    }
  }

 private:
  nn::LayerNorm<T, D> norm1_;
  nn::Attention<T, D, Proj> attn1_;
  nn::LayerNorm<T, D> norm2_;
  nn::Attention<T, D, Proj> attn2_;
  nn::LayerNorm<T, D> norm3_;
  nn::GEGLU<T, D> ff0_;
  nn::Linear<T, D> ff2_;
};

/*!
  WHAT THIS REPRESENTS
    diffusers' Transformer2DModel for continuous inputs with `layers` transformer blocks (num_layers; SD 1.x/2.x
    use 1, SDXL's transformer_layers_per_block up to 10):
      y = x + proj_out(block_{L-1}(... block_0(proj_in(norm(x)) as tokens, context) ..., context))
    norm = GroupNorm(groups, C, eps=1e-6); proj_in/proj_out are 1x1 convolutions, or Linear layers applied to the
    token layout when use_linear_projection (SD 2.x, SDXL). x [B, C, H, W] -> y [B, C, H, W]. Block k has the keys
    `transformer_blocks.k`.
!*/
template <StorageScalar T, Device D = cpu, class Proj = nn::Linear<T, D>>
class Transformer2D {
 public:
  using tensor = Tensor<T, D>;

  Transformer2D() = default;
  Transformer2D(std::int64_t channels, std::int64_t heads, std::int64_t context_dim, std::int64_t groups,
                bool use_linear_projection, std::int64_t layers = 1)
      : linear_(use_linear_projection), norm_(groups, channels, 1e-6) {
    SPO_CHECK(layers >= 1, "Transformer2D: " << layers << " transformer blocks (need at least 1)");
    for (std::int64_t k = 0; k < layers; ++k) blocks_.emplace_back(channels, heads, context_dim);
    if (linear_) {
      lin_in_ = nn::Linear<T, D>(channels, channels);
      lin_out_ = nn::Linear<T, D>(channels, channels);
    } else {
      conv_in_ = nn::Conv2d<T, D>(channels, channels, 1);
      conv_out_ = nn::Conv2d<T, D>(channels, channels, 1);
    }
  }

  void reset_parameters(Generator& gen) {
    if (linear_) {
      lin_in_.reset_parameters(gen);
      lin_out_.reset_parameters(gen);
    } else {
      conv_in_.reset_parameters(gen);
      conv_out_.reset_parameters(gen);
    }
    for (auto& b : blocks_) b.reset_parameters(gen);
  }

  tensor forward(const tensor& x, const tensor& context) {
    h_ = x.size(2);
    w_ = x.size(3);
    auto n = norm_.forward(x);                                                                         // [B, C, H, W]
    auto tokens = linear_ ? lin_in_.forward(nchw_to_tokens(n)) : nchw_to_tokens(conv_in_.forward(n));  // [B, HW, C]
    auto t = blocks_[0].forward(tokens, context);                                                      // [B, HW, C]
    for (std::size_t k = 1; k < blocks_.size(); ++k) t = blocks_[k].forward(t, context);               // [B, HW, C]
    auto y = linear_ ? tokens_to_nchw(lin_out_.forward(t), h_, w_) : conv_out_.forward(tokens_to_nchw(t, h_, w_));
    add_inplace(y, x);  // [B, C, H, W]
    return y;
  }

  BlockGradients<T, D> backward(const tensor& dy) {
    auto dt = linear_ ? lin_out_.backward(nchw_to_tokens(dy)) : nchw_to_tokens(conv_out_.backward(dy));  // [B, HW, C]
    auto g = blocks_.back().backward(dt);
    for (std::size_t k = blocks_.size() - 1; k-- > 0;) {
      auto gk = blocks_[k].backward(g.dx);
      g.dx = std::move(gk.dx);
      add_inplace(g.dcond, gk.dcond);
    }
    auto dn =
        linear_ ? tokens_to_nchw(lin_in_.backward(g.dx), h_, w_) : conv_in_.backward(tokens_to_nchw(g.dx, h_, w_));
    auto dx = norm_.backward(dn);  // [B, C, H, W]
    add_inplace(dx, dy);
    return {std::move(dx), std::move(g.dcond)};
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    norm_.visit_parameters(f, nn::join_name(prefix, "norm"));
    if (linear_)
      lin_in_.visit_parameters(f, nn::join_name(prefix, "proj_in"));
    else
      conv_in_.visit_parameters(f, nn::join_name(prefix, "proj_in"));
    for (std::size_t k = 0; k < blocks_.size(); ++k)
      blocks_[k].visit_parameters(f, nn::join_name(prefix, "transformer_blocks." + std::to_string(k)));
    if (linear_)
      lin_out_.visit_parameters(f, nn::join_name(prefix, "proj_out"));
    else
      conv_out_.visit_parameters(f, nn::join_name(prefix, "proj_out"));
  }

  template <class F>
  void for_each_projection(F&& f) {
    for (auto& b : blocks_) b.for_each_projection(f);
  }

 private:
  bool linear_ = false;
  std::int64_t h_ = 0, w_ = 0;
  nn::GroupNorm<T, D> norm_;
  nn::Conv2d<T, D> conv_in_, conv_out_;
  nn::Linear<T, D> lin_in_, lin_out_;
  std::vector<BasicTransformerBlock<T, D, Proj>> blocks_;
};

}  // namespace spo::model
