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
#include "spo/nn/checkpoint.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/norm_act_conv.hpp"
#include "spo/nn/timestep_embedding.hpp"

namespace spo::model {

/*!
  WHAT THIS REPRESENTS
    SDXL's added conditioning (diffusers' addition_embed_type "text_time"): each of the K numbers of `time_ids`
    [B, K] (SDXL: K = 6, original size, crop corner, target size) is embedded by
    Timesteps(addition_time_embed_dim, flip_sin_to_cos, freq_shift) (`add_time_proj`), the pooled text embedding
    `text_embeds` [B, P] is concatenated in front, and TimestepEmbedding(projection_class_embeddings_input_dim,
    4 C0) (`add_embedding`) maps the [B, P + K addition_time_embed_dim] vector onto the time embedding, to which it is
    added. SDXL: 256 and 2816 (= 1280 + 6 x 256).
!*/
struct TextTimeConfig {
  std::int64_t addition_time_embed_dim = 256;
  std::int64_t projection_class_embeddings_input_dim = 2816;
};

/*!
  WHAT THIS REPRESENTS
    The topology knobs of diffusers' UNet2DConditionModel that spo supports. Level i of the down path is a
    CrossAttnDownBlock2D when attention[i], else a DownBlock2D; the up path mirrors it (up level i is the down level
    L-1-i). The mid block is UNetMidBlock2DCrossAttn. `attention_heads` is diffusers' `attention_head_dim`, which is
    the number of heads (head width = channels / heads).
    The optional members are the fields SD 2.x and SDXL set; unset means diffusers' default (SD 1.x's value):
      level_attention_heads         heads per level (`attention_head_dim` as a list, SD 2.x [5, 10, 20, 20]);
                                    replaces attention_heads; the mid block uses the last level's
      transformer_layers_per_block  transformer blocks per attention at each level (SDXL [1, 2, 10]; default 1);
                                    the mid block uses the last level's, up level i the mirrored down level's
      flip_sin_to_cos, freq_shift   the time projections' sinusoid order and frequency shift (default true, 0)
      text_time                     SDXL's added conditioning (TextTimeConfig); forward then takes text_embeds and
                                    time_ids
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
  std::optional<std::vector<std::int64_t>> level_attention_heads{};
  std::optional<std::vector<std::int64_t>> transformer_layers_per_block{};
  std::optional<bool> flip_sin_to_cos{};
  std::optional<double> freq_shift{};
  std::optional<TextTimeConfig> text_time{};

  /// Heads of the attentions at down level i (and its mirrored up level); the mid block uses level L-1.
  std::int64_t heads(std::size_t level) const {
    return level_attention_heads ? (*level_attention_heads)[level] : attention_heads;
  }
  /// Transformer blocks of each attention at down level i (and its mirrored up level); the mid block uses level L-1.
  std::int64_t transformer_layers(std::size_t level) const {
    return transformer_layers_per_block ? (*transformer_layers_per_block)[level] : 1;
  }
  /// Options of a sinusoidal time projection of width dim (time_proj: C0; add_time_proj: addition_time_embed_dim).
  nn::SinusoidalEmbeddingOptions time_proj_options(std::int64_t dim) const {
    return {dim, flip_sin_to_cos.value_or(true), freq_shift.value_or(0.0)};
  }

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
      if (!level_attention_heads)
        SPO_CHECK(c % attention_heads == 0,
                  "UNetConfig: channels " << c << " not divisible by " << attention_heads << " heads");
    }
    validate_extensions("UNetConfig");
  }

  /// The checks of the optional members, each error naming "<key>.<member>".
  void validate_extensions(const std::string& key) const {
    const auto levels = block_out_channels.size();
    if (level_attention_heads) {
      SPO_CONFIG_CHECK(level_attention_heads->size() == levels, key + ".level_attention_heads",
                       "has " << level_attention_heads->size() << " entries for " << levels << " levels");
      for (std::size_t i = 0; i < levels; ++i) {
        const std::string at = key + ".level_attention_heads[" + std::to_string(i) + "]";
        SPO_CONFIG_CHECK(heads(i) >= 1, at, "must be >= 1, got " << heads(i));
        if (attention[i] || i + 1 == levels)
          SPO_CONFIG_CHECK(block_out_channels[i] % heads(i) == 0, at,
                           "channels " << block_out_channels[i] << " are not divisible by " << heads(i) << " heads");
      }
    }
    if (transformer_layers_per_block) {
      SPO_CONFIG_CHECK(transformer_layers_per_block->size() == levels, key + ".transformer_layers_per_block",
                       "has " << transformer_layers_per_block->size() << " entries for " << levels << " levels");
      for (std::size_t i = 0; i < levels; ++i)
        SPO_CONFIG_CHECK(transformer_layers(i) >= 1, key + ".transformer_layers_per_block[" + std::to_string(i) + "]",
                         "must be >= 1, got " << transformer_layers(i));
    }
    const double shift = freq_shift.value_or(0.0);
    SPO_CONFIG_CHECK(block_out_channels.empty() || static_cast<double>(block_out_channels[0] / 2) != shift,
                     key + ".freq_shift", shift << " leaves the time projection no finite frequency");
    if (text_time) {
      const auto& a = *text_time;
      SPO_CONFIG_CHECK(a.addition_time_embed_dim >= 2, key + ".text_time.addition_time_embed_dim",
                       "must be >= 2, got " << a.addition_time_embed_dim);
      SPO_CONFIG_CHECK(
          static_cast<double>(a.addition_time_embed_dim / 2) != shift, key + ".freq_shift",
          shift << " leaves add_time_proj (width " << a.addition_time_embed_dim << ") no finite frequency");
      SPO_CONFIG_CHECK(a.projection_class_embeddings_input_dim > a.addition_time_embed_dim,
                       key + ".text_time.projection_class_embeddings_input_dim",
                       "must exceed addition_time_embed_dim " << a.addition_time_embed_dim << ", got "
                                                              << a.projection_class_embeddings_input_dim);
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
    if (!c.level_attention_heads)
      SPO_CONFIG_CHECK(ch % c.attention_heads == 0, level,
                       ch << " is not divisible by attention_heads " << c.attention_heads);
  }
  c.validate_extensions(k);
}

template <StorageScalar T, Device D = cpu>
struct UNetGradients {
  Tensor<T, D> dsample;                    // [B, Cin, H, W]
  Tensor<T, D> dcontext;                   // [B, M, Dctx]
  Tensor<T, D> dtext_embeds;               // [B, P] (text_time only, else empty)
  Tensor<compute_type_t<T>, D> dtime_ids;  // [B, K] (text_time only, else empty)
};

/// diffusers' added_cond_kwargs of a text_time UNet (SDXL): the pooled text embedding and the size/crop ids (the ids
/// in T's compute type, like the timesteps: sizes such as 1000 are not bfloat16 numbers).
template <StorageScalar T, Device D = cpu>
struct UNetAddedConditions {
  Tensor<T, D> text_embeds;               // [B, P]
  Tensor<compute_type_t<T>, D> time_ids;  // [B, K]
};

/*!
  WHAT THIS REPRESENTS
    eps_hat (or v_hat, x0_hat) = UNet(sample [B, Cin, H, W], timesteps [B], context [B, M, Dctx]) -> [B, Cout, H, W].
    A text_time UNet (SDXL) also takes UNetAddedConditions (text_embeds [B, P], time_ids [B, K]) and only them.
    Proj is the projection policy of every attention (nn::Linear, or nn::LoRA<nn::Linear> for LoRA fine-tuning);
    Checkpoint the activation-checkpointing policy of its resnet and transformer blocks (nn::NoCheckpointing, or
    nn::BlockCheckpointing: each block recomputes its activations in backward, gradients bitwise the same).
    T may be a 16-bit scalar on a device with 16-bit kernels: the timesteps and time ids then stay in T's compute
    type (float) and their sinusoidal projections run in it, rounded to T before the time embedding, as diffusers'
    half-precision UNets compute t_emb in float32 and cast it.
    forward() keeps what backward() needs when nn::grad_enabled(); backward(dy) returns the sample and context
    gradients (and, after a text_time forward, those of text_embeds and time_ids) and adds parameter gradients into
    trainable parameters.
!*/
template <StorageScalar T, Device D = cpu, class Proj = nn::Linear<T, D>, class Checkpoint = nn::NoCheckpointing>
class UNet2DCondition {
 public:
  using scalar_type = T;
  using device_type = D;
  using projection_type = Proj;
  using checkpoint_policy = Checkpoint;
  using tensor = Tensor<T, D>;
  using compute_tensor = Tensor<compute_type_t<T>, D>;  ///< timesteps and time ids
  using resnet_type = typename Checkpoint::template apply<ResnetBlock2D<T, D>>;
  using attention_type = typename Checkpoint::template apply<Transformer2D<T, D, Proj>>;

  UNet2DCondition() = default;
  explicit UNet2DCondition(const UNetConfig& c) : config_(c) {
    c.validate();
    const auto& ch = c.block_out_channels;
    const std::int64_t levels = static_cast<std::int64_t>(ch.size()), c0 = ch[0], temb = 4 * c0;
    const auto g = c.norm_num_groups;
    conv_in_ = nn::Conv2d<T, D>(c.in_channels, c0, 3, 1, 1);
    time_proj_ = nn::Timesteps<compute_type_t<T>, D>(c.time_proj_options(c0));
    time_embedding_ = nn::TimestepEmbedding<T, D>(c0, temb);
    if (c.text_time) {
      add_time_proj_ = nn::Timesteps<compute_type_t<T>, D>(c.time_proj_options(c.text_time->addition_time_embed_dim));
      add_embedding_.emplace(c.text_time->projection_class_embeddings_input_dim, temb);
    }
    std::vector<std::int64_t> skip_channels{c0};
    std::int64_t out = c0;
    for (std::int64_t i = 0; i < levels; ++i) {
      DownBlock b;
      const std::int64_t in = out;
      out = ch[i];
      for (std::int64_t j = 0; j < c.layers_per_block; ++j) {
        b.resnets.emplace_back(j == 0 ? in : out, out, temb, g, c.norm_eps);
        if (c.attention[i])
          b.attentions.emplace_back(out, c.heads(i), c.cross_attention_dim, g, c.use_linear_projection,
                                    c.transformer_layers(i));
        skip_channels.push_back(out);
      }
      if (i + 1 < levels) {
        b.down.emplace(out);
        skip_channels.push_back(out);
      }
      down_.push_back(std::move(b));
    }
    const std::int64_t cm = ch.back();
    mid_resnet0_ = resnet_type(cm, cm, temb, g, c.norm_eps);
    mid_attention_ = attention_type(cm, c.heads(levels - 1), c.cross_attention_dim, g, c.use_linear_projection,
                                    c.transformer_layers(levels - 1));
    mid_resnet1_ = resnet_type(cm, cm, temb, g, c.norm_eps);
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
          b.attentions.emplace_back(out, c.heads(level), c.cross_attention_dim, g, c.use_linear_projection,
                                    c.transformer_layers(level));
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
    if (add_embedding_) add_embedding_->reset_parameters(gen);
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

  tensor forward(const tensor& sample, const compute_tensor& timesteps, const tensor& context) {
    SPO_CHECK(!config_.text_time,
              "UNet2DCondition: a text_time UNet needs the added conditions (text_embeds [B, P], time_ids [B, K])");
    return forward_impl(sample, timesteps, context, nullptr);
  }

  /// The forward of a text_time UNet (SDXL): temb += add_embedding(cat(text_embeds, add_time_proj(time_ids))).
  tensor forward(const tensor& sample, const compute_tensor& timesteps, const tensor& context,
                 const UNetAddedConditions<T, D>& added) {
    SPO_CHECK(config_.text_time, "UNet2DCondition: added conditions given to a UNet without text_time");
    const auto& a = *config_.text_time;
    const auto& te = added.text_embeds;
    const auto& ids = added.time_ids;
    SPO_CHECK(te.rank() == 2 && te.size(0) == sample.size(0) && ids.rank() == 2 && ids.size(0) == sample.size(0) &&
                  te.size(1) + ids.size(1) * a.addition_time_embed_dim == a.projection_class_embeddings_input_dim,
              "UNet2DCondition: text_embeds shape " << te.shape() << " and time_ids shape " << ids.shape()
                                                    << " are not [B, P] and [B, K] with B = " << sample.size(0)
                                                    << " and P + K * " << a.addition_time_embed_dim << " = "
                                                    << a.projection_class_embeddings_input_dim);
    return forward_impl(sample, timesteps, context, &added);
  }

  UNetGradients<T, D> backward(const tensor& dy) {
    SPO_CHECK(has_forward_, "UNet2DCondition::backward without a forward in grad mode");
    const nn::NetworkScope metered("unet", nn::Pass::backward, dy.size(0));
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
    UNetGradients<T, D> grads{std::move(dsample), std::move(dcontext), {}, {}};
    if (has_added_) {
      has_added_ = false;
      const std::int64_t b = time_ids_shape_[0], k = time_ids_shape_[1];
      auto dadd = add_embedding_->backward(dtemb);  // [B, P + K dim]
      auto [dtext, dtime] = split_channels(dadd, text_embeds_shape_[1]);
      dtime.reshape(Shape{b * k, config_.text_time->addition_time_embed_dim});                       // [B K, dim]
      grads.dtext_embeds = std::move(dtext);                                                         // [B, P]
      grads.dtime_ids = add_time_proj_.backward(to_compute(std::move(dtime))).reshape(Shape{b, k});  // [B, K]
    }
    return grads;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix = {}) {
    conv_in_.visit_parameters(f, nn::join_name(prefix, "conv_in"));
    time_embedding_.visit_parameters(f, nn::join_name(prefix, "time_embedding"));
    if (add_embedding_) add_embedding_->visit_parameters(f, nn::join_name(prefix, "add_embedding"));
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
  /// The forward of both public overloads; `added` is null without text_time.
  /// t rounded to T (nothing to do when T is its own compute type).
  static tensor to_layer(compute_tensor t) {
    if constexpr (std::same_as<T, compute_type_t<T>>)
      return t;
    else
      return cast<T>(t);
  }
  /// t widened to the compute type.
  static compute_tensor to_compute(tensor t) {
    if constexpr (std::same_as<T, compute_type_t<T>>)
      return t;
    else
      return cast<compute_type_t<T>>(t);
  }

  tensor forward_impl(const tensor& sample, const compute_tensor& timesteps, const tensor& context,
                      const UNetAddedConditions<T, D>* added) {
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
    const nn::NetworkScope metered("unet", nn::Pass::forward, sample.size(0));
    const bool keep = nn::grad_enabled();
    context_shape_ = context.shape();
    auto temb = time_embedding_.forward(to_layer(time_proj_.forward(timesteps)));  // [B, 4 C0]
    if (added) {
      const std::int64_t b = added->time_ids.size(0), k = added->time_ids.size(1);
      const std::int64_t dim = config_.text_time->addition_time_embed_dim;
      text_embeds_shape_ = added->text_embeds.shape();
      time_ids_shape_ = added->time_ids.shape();
      compute_tensor ids = added->time_ids;
      ids.reshape(Shape{b * k});                                                             // [B K]
      auto time_embeds = to_layer(add_time_proj_.forward(ids)).reshape(Shape{b, k * dim});   // [B, K dim]
      auto aug = add_embedding_->forward(concat_channels(added->text_embeds, time_embeds));  // [B, 4 C0]
      add_inplace(temb, aug);
    }
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
    auto y = nn::norm_act_conv(conv_norm_out_, conv_act_, conv_out_, h);  // [B, Cout, H, W]
    has_forward_ = keep;
    has_added_ = keep && added;
    return y;
  }

  struct DownBlock {
    std::vector<resnet_type> resnets;
    std::vector<attention_type> attentions;
    std::optional<Downsample2D<T, D>> down;
  };
  struct UpBlock {
    std::vector<resnet_type> resnets;
    std::vector<attention_type> attentions;
    std::vector<std::int64_t> hidden_channels;  // channels of h before each skip concatenation
    std::optional<Upsample2D<T, D>> up;
  };

  UNetConfig config_;
  nn::Conv2d<T, D> conv_in_;
  nn::Timesteps<compute_type_t<T>, D> time_proj_;
  nn::TimestepEmbedding<T, D> time_embedding_;
  nn::Timesteps<compute_type_t<T>, D> add_time_proj_;
  std::optional<nn::TimestepEmbedding<T, D>> add_embedding_;
  std::vector<DownBlock> down_;
  resnet_type mid_resnet0_, mid_resnet1_;
  attention_type mid_attention_;
  std::vector<UpBlock> up_;
  nn::GroupNorm<T, D> conv_norm_out_;
  nn::SiLU<T, D> conv_act_;
  nn::Conv2d<T, D> conv_out_;
  Shape temb_shape_, context_shape_, text_embeds_shape_, time_ids_shape_;
  bool has_forward_ = false, has_added_ = false;
};

}  // namespace spo::model

/// A config's "unet" section is the UNetConfig itself: these keys, each required (in/out channels and norm_eps are
/// not config keys: the data sets the channels).
/// The optional members may be absent (diffusers' defaults, see UNetConfig).
BOOST_HANA_ADAPT_STRUCT(spo::model::TextTimeConfig, addition_time_embed_dim, projection_class_embeddings_input_dim);
BOOST_HANA_ADAPT_STRUCT(spo::model::UNetConfig, block_out_channels, attention, layers_per_block, attention_heads,
                        cross_attention_dim, norm_num_groups, use_linear_projection, level_attention_heads,
                        transformer_layers_per_block, flip_sin_to_cos, freq_shift, text_time);
