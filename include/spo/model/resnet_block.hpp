// SPDX-License-Identifier: MIT
/// @brief ResnetBlock2D with time-embedding injection, and the Downsample2D / Upsample2D stages of an SD UNet.
#pragma once

#include <optional>
#include <string_view>

#include "spo/nn/activation.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/norm_act_conv.hpp"
#include "spo/nn/upsample.hpp"
#include "spo/nn/upsample_conv.hpp"
#include "spo/tensor/layout.hpp"

namespace spo::model {

/// Gradients of a block with a second input (time embedding or text context).
template <StorageScalar T, Device D = cpu>
struct BlockGradients {
  Tensor<T, D> dx;
  Tensor<T, D> dcond;
};

/*!
  WHAT THIS REPRESENTS
    diffusers' ResnetBlock2D (time_embedding_norm="default", output_scale_factor=1, no up/down sampling):
      h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb))[:, :, None, None]
      y = shortcut(x) + conv2(silu(norm2(h)))          shortcut = conv_shortcut (1x1) iff in != out
    x [B, Cin, H, W], temb [B, Ct] -> y [B, Cout, H, W]. With temb_channels == 0 (diffusers' temb_channels=None,
    as in the VAE) there is no time_emb_proj and no temb term: forward(x), and backward's dcond is empty.
!*/
template <StorageScalar T, Device D = cpu>
class ResnetBlock2D {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  ResnetBlock2D() = default;
  ResnetBlock2D(std::int64_t in, std::int64_t out, std::int64_t temb_channels, std::int64_t groups, double eps)
      : norm1_(groups, in, eps), conv1_(in, out, 3, 1, 1), norm2_(groups, out, eps), conv2_(out, out, 3, 1, 1) {
    SPO_CHECK(temb_channels >= 0, "ResnetBlock2D: temb_channels " << temb_channels << " is negative");
    if (temb_channels > 0) time_emb_proj_.emplace(temb_channels, out);
    if (in != out) conv_shortcut_.emplace(in, out, 1, 1, 0);
  }

  std::int64_t in_channels() const { return conv1_.in_channels(); }
  std::int64_t out_channels() const { return conv1_.out_channels(); }

  void reset_parameters(Generator& gen) {
    conv1_.reset_parameters(gen);
    if (time_emb_proj_) time_emb_proj_->reset_parameters(gen);
    conv2_.reset_parameters(gen);
    if (conv_shortcut_) conv_shortcut_->reset_parameters(gen);
  }

  tensor forward(const tensor& x, const tensor& temb) {
    SPO_CHECK(time_emb_proj_, "ResnetBlock2D: a time embedding passed to a block without time_emb_proj");
    return forward_impl(x, &temb);
  }

  /// The block without a time embedding (constructed with temb_channels == 0).
  tensor forward(const tensor& x) {
    SPO_CHECK(!time_emb_proj_, "ResnetBlock2D: forward without the time embedding its time_emb_proj needs");
    return forward_impl(x, nullptr);
  }

  BlockGradients<T, D> backward(const tensor& dy) {
    auto dh = norm2_.backward(act2_.backward(conv2_.backward(dy)));  // [B, Cout, H, W]
    tensor dtemb;
    if (time_emb_proj_) dtemb = act_t_.backward(time_emb_proj_->backward(sum_spatial(dh)));  // [B, Ct]
    auto dx = norm1_.backward(act1_.backward(conv1_.backward(dh)));                          // [B, Cin, H, W]
    add_inplace(dx, conv_shortcut_ ? conv_shortcut_->backward(dy) : dy);
    return {std::move(dx), std::move(dtemb)};
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    norm1_.visit_parameters(f, nn::join_name(prefix, "norm1"));
    conv1_.visit_parameters(f, nn::join_name(prefix, "conv1"));
    if (time_emb_proj_) time_emb_proj_->visit_parameters(f, nn::join_name(prefix, "time_emb_proj"));
    norm2_.visit_parameters(f, nn::join_name(prefix, "norm2"));
    conv2_.visit_parameters(f, nn::join_name(prefix, "conv2"));
    if (conv_shortcut_) conv_shortcut_->visit_parameters(f, nn::join_name(prefix, "conv_shortcut"));
  }

 private:
  tensor forward_impl(const tensor& x, const tensor* temb) {
    auto h = nn::norm_act_conv(norm1_, act1_, conv1_, x);                           // [B, Cout, H, W]
    if (temb) add_channel_bias(h, time_emb_proj_->forward(act_t_.forward(*temb)));  // + [B, Cout]
    auto y = nn::norm_act_conv(norm2_, act2_, conv2_, h);                           // [B, Cout, H, W]
    h = tensor();
    add_inplace(y, conv_shortcut_ ? conv_shortcut_->forward(x) : x);
    return y;
  }

  nn::GroupNorm<T, D> norm1_;
  nn::SiLU<T, D> act1_;
  nn::Conv2d<T, D> conv1_;
  nn::SiLU<T, D> act_t_;
  std::optional<nn::Linear<T, D>> time_emb_proj_;
  nn::GroupNorm<T, D> norm2_;
  nn::SiLU<T, D> act2_;
  nn::Conv2d<T, D> conv2_;
  std::optional<nn::Conv2d<T, D>> conv_shortcut_;
};

/// diffusers' Downsample2D(use_conv=True, padding=p): conv 3x3 stride 2 with padding p; p = 0 (the VAE's
/// DownEncoderBlock2D) first pads one zero row and column at the end (F.pad(x, (0, 1, 0, 1))). Key `conv`.
template <StorageScalar T, Device D = cpu>
class Downsample2D {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  Downsample2D() = default;
  explicit Downsample2D(std::int64_t channels, std::int64_t padding = 1)
      : conv_(channels, channels,
              nn::Conv2dOptions{.kernel = {3, 3},
                                .stride = {2, 2},
                                .padding = {padding, padding},
                                .padding_end = {padding == 0 ? 1 : 0, padding == 0 ? 1 : 0}}) {}
  void reset_parameters(Generator& gen) { conv_.reset_parameters(gen); }
  tensor forward(const tensor& x) { return conv_.forward(x); }  // [B, C, H/2, W/2]
  tensor backward(const tensor& dy) { return conv_.backward(dy); }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    conv_.visit_parameters(f, nn::join_name(prefix, "conv"));
  }

 private:
  nn::Conv2d<T, D> conv_;
};

/// diffusers' Upsample2D(use_conv=True): nearest 2x, then conv 3x3. Key `conv`.
template <StorageScalar T, Device D = cpu>
class Upsample2D {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  Upsample2D() = default;
  explicit Upsample2D(std::int64_t channels) : conv_(channels, channels, 3, 1, 1) {}
  void reset_parameters(Generator& gen) { conv_.reset_parameters(gen); }
  tensor forward(const tensor& x) { return nn::upsample_conv(up_, conv_, x); }  // [B, C, 2H, 2W]
  tensor backward(const tensor& dy) { return up_.backward(conv_.backward(dy)); }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    conv_.visit_parameters(f, nn::join_name(prefix, "conv"));
  }

 private:
  nn::Upsample2x<T, D> up_;
  nn::Conv2d<T, D> conv_;
};

}  // namespace spo::model
