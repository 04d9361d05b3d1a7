// SPDX-License-Identifier: MIT
/// @brief The SD-style conditional UNet (diffusers UNet2DConditionModel topology), parameter keys equal to diffusers'.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/hana/adapt_struct.hpp>

#include "spo/model/resnet_block.hpp"
#include "spo/model/transformer_2d.hpp"
#include "spo/nn/timestep_embedding.hpp"

namespace spo::model {

/*!
  WHAT THIS REPRESENTS
    The topology knobs of diffusers' UNet2DConditionModel that spo supports. Level i of the down path is a
    CrossAttnDownBlock2D when attention[i], else a DownBlock2D; the up path mirrors it (up level i is the down level
    L-1-i). The mid block is UNetMidBlock2DCrossAttn. `attention_heads` is diffusers' `attention_head_dim`, which is
    the number of heads (head width = channels / heads).
!*/
struct UNetConfig {
  std::int64_t in_channels = 4;
  std::int64_t out_channels = 4;
  std::vector<std::int64_t> block_out_channels{320, 640, 1280, 1280};
  std::vector<bool> attention{true, true, true, false};
  std::int64_t layers_per_block = 2;
  std::int64_t attention_heads = 8;
  std::int64_t cross_attention_dim = 768;
  std::int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false;

  void validate() const {
    const auto levels = block_out_channels.size();
    SPO_CHECK(levels >= 1, "UNetConfig: block_out_channels is empty");
    SPO_CHECK(attention.size() == levels,
              "UNetConfig: attention has " << attention.size() << " entries for " << levels << " levels");
    SPO_CHECK(in_channels >= 1 && out_channels >= 1 && layers_per_block >= 1 && attention_heads >= 1 &&
                  cross_attention_dim >= 1 && norm_num_groups >= 1 && norm_eps > 0,
              "UNetConfig: channels, layers_per_block, heads, cross_attention_dim, groups and eps must be positive");
    for (auto c : block_out_channels) {
      SPO_CHECK(c % norm_num_groups == 0,
                "UNetConfig: channels " << c << " not divisible by norm_num_groups " << norm_num_groups);
      SPO_CHECK(c % attention_heads == 0,
                "UNetConfig: channels " << c << " not divisible by " << attention_heads << " heads");
    }
  }
  /// Input side lengths must be divisible by this (one 2x downsampling per level but the last).
  std::int64_t size_multiple() const { return std::int64_t{1} << (block_out_channels.size() - 1); }
};

/// Every topology value in range, each error naming its config key ("<key>.<name>"); channel counts divisible by
/// groups and heads. The in/out channels come from the data, not from a config.
inline void validate(const UNetConfig& c, std::string_view key = "unet") {
  const std::string k(key);
  SPO_CONFIG_CHECK(!c.block_out_channels.empty(), k + ".block_out_channels", "must name at least one level, got []");
  SPO_CONFIG_CHECK(c.attention.size() == c.block_out_channels.size(), k + ".attention",
                   "has " << c.attention.size() << " entries for " << c.block_out_channels.size() << " levels");
  SPO_CONFIG_CHECK(c.layers_per_block >= 1, k + ".layers_per_block", "must be >= 1, got " << c.layers_per_block);
  SPO_CONFIG_CHECK(c.attention_heads >= 1, k + ".attention_heads", "must be >= 1, got " << c.attention_heads);
  SPO_CONFIG_CHECK(c.cross_attention_dim >= 1, k + ".cross_attention_dim",
                   "must be >= 1, got " << c.cross_attention_dim);
  SPO_CONFIG_CHECK(c.norm_num_groups >= 1, k + ".norm_num_groups", "must be >= 1, got " << c.norm_num_groups);
  for (std::size_t i = 0; i < c.block_out_channels.size(); ++i) {
    const auto ch = c.block_out_channels[i];
    const std::string level = k + ".block_out_channels[" + std::to_string(i) + "]";
    SPO_CONFIG_CHECK(ch >= 1, level, "must be >= 1, got " << ch);
    SPO_CONFIG_CHECK(ch % c.norm_num_groups == 0, level,
                     ch << " is not divisible by norm_num_groups " << c.norm_num_groups);
    SPO_CONFIG_CHECK(ch % c.attention_heads == 0, level,
                     ch << " is not divisible by attention_heads " << c.attention_heads);
  }
}

template <Scalar T, Device D = cpu>
struct UNetGradients {
  Tensor<T, D> dsample;   // [B, Cin, H, W]
  Tensor<T, D> dcontext;  // [B, M, Dctx]
};

/*!
  WHAT THIS REPRESENTS
    eps_hat (or v_hat, x0_hat) = UNet(sample [B, Cin, H, W], timesteps [B], context [B, M, Dctx]) -> [B, Cout, H, W].
    Proj is the projection policy of every attention (nn::Linear, or nn::LoRA<nn::Linear> for LoRA fine-tuning).
    forward() keeps what backward() needs when nn::grad_enabled(); backward(dy) returns the sample and context
    gradients and adds parameter gradients into trainable parameters.
!*/
template <Scalar T, Device D = cpu, class Proj = nn::Linear<T, D>>
class UNet2DCondition {
 public:
  using scalar_type = T;
  using device_type = D;
  using projection_type = Proj;
  using tensor = Tensor<T, D>;

  UNet2DCondition() = default;
  explicit UNet2DCondition(const UNetConfig& c) : config_(c) {
    c.validate();
    const auto& ch = c.block_out_channels;
    const std::int64_t levels = static_cast<std::int64_t>(ch.size()), c0 = ch[0], temb = 4 * c0;
    const auto g = c.norm_num_groups;
    conv_in_ = nn::Conv2d<T, D>(c.in_channels, c0, 3, 1, 1);
    time_proj_ = nn::Timesteps<T, D>(nn::SinusoidalEmbeddingOptions::cos_first(c0, 0.0));
    time_embedding_ = nn::TimestepEmbedding<T, D>(c0, temb);
    std::vector<std::int64_t> skip_channels{c0};
    std::int64_t out = c0;
    for (std::int64_t i = 0; i < levels; ++i) {
      DownBlock b;
      const std::int64_t in = out;
      out = ch[i];
      for (std::int64_t j = 0; j < c.layers_per_block; ++j) {
        b.resnets.emplace_back(j == 0 ? in : out, out, temb, g, c.norm_eps);
        if (c.attention[i])
          b.attentions.emplace_back(out, c.attention_heads, c.cross_attention_dim, g, c.use_linear_projection);
        skip_channels.push_back(out);
      }
      if (i + 1 < levels) {
        b.down.emplace(out);
        skip_channels.push_back(out);
      }
      down_.push_back(std::move(b));
    }
    const std::int64_t cm = ch.back();
    mid_resnet0_ = ResnetBlock2D<T, D>(cm, cm, temb, g, c.norm_eps);
    mid_attention_ =
        Transformer2D<T, D, Proj>(cm, c.attention_heads, c.cross_attention_dim, g, c.use_linear_projection);
    mid_resnet1_ = ResnetBlock2D<T, D>(cm, cm, temb, g, c.norm_eps);
    std::int64_t prev = cm;
    for (std::int64_t i = 0; i < levels; ++i) {
      const std::int64_t level = levels - 1 - i;
      UpBlock b;
      out = ch[level];
      for (std::int64_t j = 0; j <= c.layers_per_block; ++j) {
        const std::int64_t skip = skip_channels.back();
        skip_channels.pop_back();
        const std::int64_t in = j == 0 ? prev : out;
        b.resnets.emplace_back(in + skip, out, temb, g, c.norm_eps);
        b.hidden_channels.push_back(in);
        if (c.attention[level])
          b.attentions.emplace_back(out, c.attention_heads, c.cross_attention_dim, g, c.use_linear_projection);
      }
      if (i + 1 < levels) b.up.emplace(out);
      prev = out;
      up_.push_back(std::move(b));
    }
    conv_norm_out_ = nn::GroupNorm<T, D>(g, c0, c.norm_eps);
    conv_out_ = nn::Conv2d<T, D>(c0, c.out_channels, 3, 1, 1);
  }

  const UNetConfig& config() const { return config_; }

  /// torch's default initialisation for every convolution and linear layer (norms start at identity).
  void reset_parameters(Generator& gen) {
    conv_in_.reset_parameters(gen);
    time_embedding_.reset_parameters(gen);
    auto reset_block = [&](auto& b, auto& sampler) {
      for (auto& r : b.resnets) r.reset_parameters(gen);
      for (auto& a : b.attentions) a.reset_parameters(gen);
      if (sampler) sampler->reset_parameters(gen);
    };
    for (auto& b : down_) reset_block(b, b.down);
    mid_resnet0_.reset_parameters(gen);
    mid_attention_.reset_parameters(gen);
    mid_resnet1_.reset_parameters(gen);
    for (auto& b : up_) reset_block(b, b.up);
    conv_out_.reset_parameters(gen);
  }

  tensor forward(const tensor& sample, const tensor& timesteps, const tensor& context) {
    SPO_CHECK(sample.rank() == 4 && sample.size(1) == config_.in_channels &&
                  sample.size(2) % config_.size_multiple() == 0 && sample.size(3) % config_.size_multiple() == 0,
              "UNet2DCondition: sample shape " << sample.shape() << " is not [B, " << config_.in_channels
                                               << ", H, W] with H, W multiples of " << config_.size_multiple());
    SPO_CHECK(timesteps.rank() == 1 && timesteps.size(0) == sample.size(0),
              "UNet2DCondition: timesteps shape " << timesteps.shape() << " for sample shape " << sample.shape());
    SPO_CHECK(
        context.rank() == 3 && context.size(0) == sample.size(0) && context.size(2) == config_.cross_attention_dim,
        "UNet2DCondition: context shape " << context.shape() << " is not [" << sample.size(0) << ", M, "
                                          << config_.cross_attention_dim << "]");
    const bool keep = nn::grad_enabled();
    context_shape_ = context.shape();
    auto temb = time_embedding_.forward(time_proj_.forward(timesteps));  // [B, 4 C0]
    temb_shape_ = temb.shape();
    auto h = conv_in_.forward(sample);  // [B, C0, H, W]
    std::vector<tensor> skips;
    skips.push_back(h);
    for (auto& b : down_) {
      for (std::size_t j = 0; j < b.resnets.size(); ++j) {
        h = b.resnets[j].forward(h, temb);  // [B, Ci, h, w]
        if (!b.attentions.empty()) h = b.attentions[j].forward(h, context);
        skips.push_back(h);
      }
      if (b.down) {
        h = b.down->forward(h);  // [B, Ci, h/2, w/2]
        skips.push_back(h);
      }
    }
    h = mid_resnet0_.forward(h, temb);
    h = mid_attention_.forward(h, context);
    h = mid_resnet1_.forward(h, temb);  // [B, Cmid, h, w]
    for (auto& b : up_) {
      for (std::size_t j = 0; j < b.resnets.size(); ++j) {
        h = concat_channels(h, skips.back());  // [B, Cin + Cskip, h, w]
        skips.pop_back();
        h = b.resnets[j].forward(h, temb);
        if (!b.attentions.empty()) h = b.attentions[j].forward(h, context);
      }
      if (b.up) h = b.up->forward(h);  // [B, C, 2h, 2w]
    }
    auto y = conv_out_.forward(conv_act_.forward(conv_norm_out_.forward(h)));  // [B, Cout, H, W]
    has_forward_ = keep;
    return y;
  }

  UNetGradients<T, D> backward(const tensor& dy) {
    SPO_CHECK(has_forward_, "UNet2DCondition::backward without a forward in grad mode");
    has_forward_ = false;
    tensor dtemb(temb_shape_), dcontext(context_shape_);
    auto dh = conv_norm_out_.backward(conv_act_.backward(conv_out_.backward(dy)));  // [B, C0, H, W]
    std::vector<tensor> dskips;                                                     // in pop order: the last skip first
    for (auto it = up_.rbegin(); it != up_.rend(); ++it) {
      auto& b = *it;
      if (b.up) dh = b.up->backward(dh);
      for (std::size_t j = b.resnets.size(); j-- > 0;) {
        if (!b.attentions.empty()) {
          auto g = b.attentions[j].backward(dh);
          dh = std::move(g.dx);
          add_inplace(dcontext, g.dcond);
        }
        auto g = b.resnets[j].backward(dh);
        add_inplace(dtemb, g.dcond);
        auto [dhidden, dskip] = split_channels(g.dx, b.hidden_channels[j]);
        dh = std::move(dhidden);
        dskips.push_back(std::move(dskip));
      }
    }
    // dskips now lists skip gradients from the first skip (conv_in output) to the last.
    {
      auto g1 = mid_resnet1_.backward(dh);
      add_inplace(dtemb, g1.dcond);
      auto ga = mid_attention_.backward(g1.dx);
      add_inplace(dcontext, ga.dcond);
      auto g0 = mid_resnet0_.backward(ga.dx);
      add_inplace(dtemb, g0.dcond);
      dh = std::move(g0.dx);
    }
    std::size_t k = dskips.size();
    for (auto it = down_.rbegin(); it != down_.rend(); ++it) {
      auto& b = *it;
      if (b.down) {
        add_inplace(dh, dskips[--k]);
        dh = b.down->backward(dh);
      }
      for (std::size_t j = b.resnets.size(); j-- > 0;) {
        add_inplace(dh, dskips[--k]);
        if (!b.attentions.empty()) {
          auto g = b.attentions[j].backward(dh);
          dh = std::move(g.dx);
          add_inplace(dcontext, g.dcond);
        }
        auto g = b.resnets[j].backward(dh);
        add_inplace(dtemb, g.dcond);
        dh = std::move(g.dx);
      }
    }
    add_inplace(dh, dskips[--k]);
    auto dsample = conv_in_.backward(dh);  // [B, Cin, H, W]
    time_embedding_.backward(dtemb);
    return {std::move(dsample), std::move(dcontext)};
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix = {}) {
    conv_in_.visit_parameters(f, nn::join_name(prefix, "conv_in"));
    time_embedding_.visit_parameters(f, nn::join_name(prefix, "time_embedding"));
    // A down or up block: attentions.j, resnets.j, then its sampler ("downsamplers.0" / "upsamplers.0").
    auto visit_block = [&](auto& b, const std::string& p, auto& sampler, const char* sampler_key) {
      for (std::size_t j = 0; j < b.attentions.size(); ++j)
        b.attentions[j].visit_parameters(f, p + ".attentions." + std::to_string(j));
      for (std::size_t j = 0; j < b.resnets.size(); ++j)
        b.resnets[j].visit_parameters(f, p + ".resnets." + std::to_string(j));
      if (sampler) sampler->visit_parameters(f, p + sampler_key);
    };
    for (std::size_t i = 0; i < down_.size(); ++i)
      visit_block(down_[i], nn::join_name(prefix, "down_blocks." + std::to_string(i)), down_[i].down,
                  ".downsamplers.0");
    mid_attention_.visit_parameters(f, nn::join_name(prefix, "mid_block.attentions.0"));
    mid_resnet0_.visit_parameters(f, nn::join_name(prefix, "mid_block.resnets.0"));
    mid_resnet1_.visit_parameters(f, nn::join_name(prefix, "mid_block.resnets.1"));
    for (std::size_t i = 0; i < up_.size(); ++i)
      visit_block(up_[i], nn::join_name(prefix, "up_blocks." + std::to_string(i)), up_[i].up, ".upsamplers.0");
    conv_norm_out_.visit_parameters(f, nn::join_name(prefix, "conv_norm_out"));
    conv_out_.visit_parameters(f, nn::join_name(prefix, "conv_out"));
  }

  /// Calls f(projection) for to_q, to_k, to_v and to_out.0 of every attention, down, mid and up.
  template <class F>
  void for_each_attention_projection(F&& f) {
    for (auto& b : down_)
      for (auto& a : b.attentions) a.for_each_projection(f);
    mid_attention_.for_each_projection(f);
    for (auto& b : up_)
      for (auto& a : b.attentions) a.for_each_projection(f);
  }

  /// Freezes every parameter and attaches rank-r LoRA adapters to all attention projections; only they train.
  void attach_lora(std::int64_t rank, double alpha, Generator& gen) requires requires(Proj& p) {
    p.attach(rank, alpha, gen);
  }
  {
    visit_parameters([](std::string_view, auto& p) { p.set_trainable(false); });
    for_each_attention_projection([&](Proj& p) { p.attach(rank, alpha, gen); });
  }

 private:
  struct DownBlock {
    std::vector<ResnetBlock2D<T, D>> resnets;
    std::vector<Transformer2D<T, D, Proj>> attentions;
    std::optional<Downsample2D<T, D>> down;
  };
  struct UpBlock {
    std::vector<ResnetBlock2D<T, D>> resnets;
    std::vector<Transformer2D<T, D, Proj>> attentions;
    std::vector<std::int64_t> hidden_channels;  // channels of h before each skip concatenation
    std::optional<Upsample2D<T, D>> up;
  };

  UNetConfig config_;
  nn::Conv2d<T, D> conv_in_;
  nn::Timesteps<T, D> time_proj_;
  nn::TimestepEmbedding<T, D> time_embedding_;
  std::vector<DownBlock> down_;
  ResnetBlock2D<T, D> mid_resnet0_, mid_resnet1_;
  Transformer2D<T, D, Proj> mid_attention_;
  std::vector<UpBlock> up_;
  nn::GroupNorm<T, D> conv_norm_out_;
  nn::SiLU<T, D> conv_act_;
  nn::Conv2d<T, D> conv_out_;
  Shape temb_shape_, context_shape_;
  bool has_forward_ = false;
};

}  // namespace spo::model

/// A config's "unet" section is the UNetConfig itself: these keys, each required (in/out channels and norm_eps are
/// not config keys: the data sets the channels).
BOOST_HANA_ADAPT_STRUCT(spo::model::UNetConfig, block_out_channels, attention, layers_per_block, attention_heads,
                        cross_attention_dim, norm_num_groups, use_linear_projection);
