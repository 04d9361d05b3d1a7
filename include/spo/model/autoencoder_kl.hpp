// SPDX-License-Identifier: MIT
/// @brief AutoencoderKL (diffusers' SD VAE): encoder to a diagonal Gaussian over latents, decoder back to images,
/// the configured scaling and shift, and tiled encoding and decoding; parameter keys equal to diffusers'.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/hana/adapt_adt.hpp>

#include "spo/core/error.hpp"
#include "spo/model/resnet_block.hpp"
#include "spo/model/spatial_self_attention.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/norm_act_conv.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::model {

/*!
  WHAT THIS REPRESENTS
    A diffusers `vae/config.json` of AutoencoderKL, key for key (the reader refuses any other key, naming it).
    Members default to SD 1.5 / SDXL's VAE. Optional members are keys that older files lack; absent, they take
    diffusers' defaults (the accessors below). `_class_name`, `_diffusers_version` and `_name_or_path` are
    informational; force_upcast is kept for the pipeline (it does not change this model's arithmetic).
    validate() refuses every value that spo does not implement, naming the key.
!*/
struct AutoencoderKLConfig {
  std::optional<std::string> class_name, diffusers_version, name_or_path;
  std::int64_t in_channels = 3;
  std::int64_t out_channels = 3;
  std::vector<std::string> down_block_types = std::vector<std::string>(4, "DownEncoderBlock2D");
  std::vector<std::string> up_block_types = std::vector<std::string>(4, "UpDecoderBlock2D");
  std::vector<std::int64_t> block_out_channels{128, 256, 512, 512};
  std::int64_t layers_per_block = 2;
  std::string act_fn = "silu";
  std::int64_t latent_channels = 4;
  std::int64_t norm_num_groups = 32;
  std::optional<std::int64_t> sample_size;
  std::optional<double> scaling_factor;
  std::optional<double> shift_factor;
  std::optional<std::vector<double>> latents_mean, latents_std;
  std::optional<bool> force_upcast;
  std::optional<bool> use_quant_conv, use_post_quant_conv, mid_block_add_attention;

  double scaling() const { return scaling_factor.value_or(0.18215); }
  double shift() const { return shift_factor.value_or(0.0); }
  bool upcast() const { return force_upcast.value_or(true); }
  std::int64_t sample() const { return sample_size.value_or(32); }
  bool quant_conv() const { return use_quant_conv.value_or(true); }
  bool post_quant_conv() const { return use_post_quant_conv.value_or(true); }
  bool mid_attention() const { return mid_block_add_attention.value_or(true); }
  std::int64_t levels() const { return static_cast<std::int64_t>(block_out_channels.size()); }
  /// Image side / latent side: one 2x downsampling per level but the last.
  std::int64_t downscale() const { return std::int64_t{1} << (levels() - 1); }
};

/// Throws spo::config_error naming the key ("<key>.<name>", or "<name>" for an empty key) of the first value spo
/// does not implement or that is out of range.
inline void validate(const AutoencoderKLConfig& c, std::string_view key = "") {
  const auto k = [&](const std::string& name) { return key.empty() ? name : std::string(key) + "." + name; };
  SPO_CONFIG_CHECK(!c.class_name || *c.class_name == "AutoencoderKL", k("_class_name"),
                   "expected \"AutoencoderKL\", got \"" << *c.class_name << "\"");
  SPO_CONFIG_CHECK(c.act_fn == "silu", k("act_fn"), "only \"silu\" is implemented, got \"" << c.act_fn << "\"");
  SPO_CONFIG_CHECK(c.in_channels >= 1, k("in_channels"), "must be >= 1, got " << c.in_channels);
  SPO_CONFIG_CHECK(c.out_channels >= 1, k("out_channels"), "must be >= 1, got " << c.out_channels);
  SPO_CONFIG_CHECK(c.latent_channels >= 1, k("latent_channels"), "must be >= 1, got " << c.latent_channels);
  SPO_CONFIG_CHECK(c.layers_per_block >= 1, k("layers_per_block"), "must be >= 1, got " << c.layers_per_block);
  SPO_CONFIG_CHECK(c.norm_num_groups >= 1, k("norm_num_groups"), "must be >= 1, got " << c.norm_num_groups);
  SPO_CONFIG_CHECK(!c.block_out_channels.empty() && c.block_out_channels.size() <= 16, k("block_out_channels"),
                   "must name 1 to 16 levels, got " << c.block_out_channels.size());
  for (std::size_t i = 0; i < c.block_out_channels.size(); ++i) {
    const auto ch = c.block_out_channels[i];
    SPO_CONFIG_CHECK(ch >= 1 && ch % c.norm_num_groups == 0, k("block_out_channels[" + std::to_string(i) + "]"),
                     ch << " is not a positive multiple of norm_num_groups " << c.norm_num_groups);
  }
  const auto check_types = [&](const std::vector<std::string>& types, const char* name, const char* only) {
    SPO_CONFIG_CHECK(types.size() == c.block_out_channels.size(), k(name),
                     "has " << types.size() << " entries for " << c.block_out_channels.size() << " levels");
    for (std::size_t i = 0; i < types.size(); ++i)
      SPO_CONFIG_CHECK(types[i] == only, k(std::string(name) + "[" + std::to_string(i) + "]"),
                       "only \"" << only << "\" is implemented, got \"" << types[i] << "\"");
  };
  check_types(c.down_block_types, "down_block_types", "DownEncoderBlock2D");
  check_types(c.up_block_types, "up_block_types", "UpDecoderBlock2D");
  SPO_CONFIG_CHECK(c.sample() >= 1, k("sample_size"), "must be >= 1, got " << c.sample());
  SPO_CONFIG_CHECK(std::isfinite(c.scaling()) && c.scaling() != 0, k("scaling_factor"),
                   "must be finite and non-zero, got " << c.scaling());
  SPO_CONFIG_CHECK(std::isfinite(c.shift()), k("shift_factor"), "must be finite, got " << c.shift());
  SPO_CONFIG_CHECK(!c.latents_mean, k("latents_mean"), "per-channel latent statistics are not implemented (null)");
  SPO_CONFIG_CHECK(!c.latents_std, k("latents_std"), "per-channel latent statistics are not implemented (null)");
}

/*!
  WHAT THIS REPRESENTS
    diffusers' DiagonalGaussianDistribution over latents, from the moments [B, 2 Cl, h, w] = (mean, logvar):
      logvar = clamp(logvar, -30, 20), std = exp(0.5 logvar), sample = mean + std * noise, mode = mean.
!*/
template <StorageScalar T, Device D = cpu>
struct DiagonalGaussian {
  Tensor<T, D> mean, logvar, std;  // [B, Cl, h, w] each

  static DiagonalGaussian from_moments(Tensor<T, D> moments) {
    SPO_CHECK(moments.rank() == 4 && moments.size(1) % 2 == 0,
              "DiagonalGaussian: moments shape " << moments.shape() << " is not [B, 2 Cl, h, w]");
    const std::int64_t cl = moments.size(1) / 2;
    auto [mean, logvar] = split_channels(to_host_tensor(std::move(moments)), cl);
    auto stdev = Tensor<T, cpu>::uninitialized(logvar.shape());  // [B, Cl, h, w]
    for (std::int64_t i = 0; i < logvar.numel(); ++i) {
      logvar[i] = std::clamp(logvar[i], T(-30), T(20));
      stdev[i] = std::exp(T(0.5) * logvar[i]);
    }
    return {from_host_tensor(std::move(mean)), from_host_tensor(std::move(logvar)), from_host_tensor(std::move(stdev))};
  }

  /// mean + std * noise for a given standard-normal noise of the mean's shape.
  Tensor<T, D> sample(const Tensor<T, D>& noise) const {
    check_same_shape(noise.shape(), mean.shape(), "DiagonalGaussian::sample (noise vs mean)");
    auto x = to_host_tensor(Tensor<T, D>(noise));  // [B, Cl, h, w]
    const auto m = to_host_tensor(Tensor<T, D>(mean)), s = to_host_tensor(Tensor<T, D>(std));
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = m[i] + s[i] * x[i];
    return from_host_tensor(std::move(x));
  }
  /// A sample with noise drawn from gen (the same numbers on every device).
  Tensor<T, D> sample(Generator& gen) const { return sample(random_normal<T, D>(mean.shape(), gen)); }
  const Tensor<T, D>& mode() const { return mean; }

  static Tensor<T, cpu> to_host_tensor(Tensor<T, D> t) {
    if constexpr (std::same_as<D, cpu>)
      return t;
    else
      return to_host(t);
  }
  static Tensor<T, D> from_host_tensor(Tensor<T, cpu> t) {
    if constexpr (std::same_as<D, cpu>)
      return t;
    else
      return to_device(t);
  }
};

/// diffusers' enable_tiling() geometry: tiles of tile_sample_min_size pixels / tile_latent_min_size latents that
/// overlap by tile_overlap_factor, blended linearly over the overlap.
struct VaeTiling {
  std::int64_t tile_sample_min_size = 512;
  std::int64_t tile_latent_min_size = 64;
  double tile_overlap_factor = 0.25;
};

/*!
  WHAT THIS REPRESENTS
    diffusers' AutoencoderKL (models/autoencoders/{autoencoder_kl.py, vae.py}, 0.26):
      Encoder: conv_in; per level i a DownEncoderBlock2D (layers_per_block ResnetBlock2D without time embedding,
               then, but on the last level, Downsample2D: zero-pad (0, 1, 0, 1), conv 3x3 stride 2); the mid block
               (resnet, single-head SpatialSelfAttention, resnet); conv_norm_out, SiLU, conv_out -> 2 Cl moments.
      quant_conv (1x1, 2 Cl -> 2 Cl), the DiagonalGaussian, post_quant_conv (1x1, Cl -> Cl).
      Decoder: conv_in; the mid block; per level (reversed channels) an UpDecoderBlock2D (layers_per_block + 1
               resnets, then, but on the last level, Upsample2D: nearest 2x, conv 3x3); conv_norm_out, SiLU, conv_out.
    Every group norm has eps 1e-6. Keys: encoder.*, quant_conv.*, post_quant_conv.*, decoder.* as diffusers'.
    encode(x) = (mean - shift) scaling (sample(...) for a draw); decode(z) = Decoder(post_quant_conv(z / scaling +
    shift)): the latents the UNet sees. encode_moments / decode_latents are the raw vae.encode / vae.decode.
    With tiling enabled, inputs larger than a tile are processed as diffusers' tiled_encode / tiled_decode.
    The VAE is frozen: every forward runs without gradient caches and there is no backward.
!*/
template <StorageScalar T, Device D = cpu>
class AutoencoderKL {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;
  using host_tensor = Tensor<T, cpu>;
  using gaussian = DiagonalGaussian<T, D>;

  AutoencoderKL() = default;
  explicit AutoencoderKL(const AutoencoderKLConfig& c) : config_(c) {
    validate(c);
    const auto& ch = c.block_out_channels;
    const std::int64_t levels = c.levels(), g = c.norm_num_groups, cl = c.latent_channels;
    encoder_conv_in_ = nn::Conv2d<T, D>(c.in_channels, ch[0], 3, 1, 1);
    std::int64_t out = ch[0];
    for (std::int64_t i = 0; i < levels; ++i) {
      Level level;
      const std::int64_t in = out;
      out = ch[i];
      for (std::int64_t j = 0; j < c.layers_per_block; ++j)
        level.resnets.emplace_back(j == 0 ? in : out, out, 0, g, eps);
      if (i + 1 < levels) level.down.emplace(out, 0);
      encoder_levels_.push_back(std::move(level));
    }
    encoder_mid_ = MidBlock(ch.back(), g, c.mid_attention());
    encoder_norm_out_ = nn::GroupNorm<T, D>(g, ch.back(), eps);
    encoder_conv_out_ = nn::Conv2d<T, D>(ch.back(), 2 * cl, 3, 1, 1);
    if (c.quant_conv()) quant_conv_.emplace(2 * cl, 2 * cl, 1);
    if (c.post_quant_conv()) post_quant_conv_.emplace(cl, cl, 1);
    decoder_conv_in_ = nn::Conv2d<T, D>(cl, ch.back(), 3, 1, 1);
    decoder_mid_ = MidBlock(ch.back(), g, c.mid_attention());
    out = ch.back();
    for (std::int64_t i = 0; i < levels; ++i) {
      Level level;
      const std::int64_t in = out;
      out = ch[static_cast<std::size_t>(levels - 1 - i)];
      for (std::int64_t j = 0; j <= c.layers_per_block; ++j)
        level.resnets.emplace_back(j == 0 ? in : out, out, 0, g, eps);
      if (i + 1 < levels) level.up.emplace(out);
      decoder_levels_.push_back(std::move(level));
    }
    decoder_norm_out_ = nn::GroupNorm<T, D>(g, ch[0], eps);
    decoder_conv_out_ = nn::Conv2d<T, D>(ch[0], c.out_channels, 3, 1, 1);
    const std::int64_t sample = c.sample();
    tiling_ = VaeTiling{sample, sample / c.downscale(), 0.25};
  }

  const AutoencoderKLConfig& config() const { return config_; }
  double scaling_factor() const { return config_.scaling(); }
  double shift_factor() const { return config_.shift(); }
  /// diffusers' force_upcast: a pipeline in half precision should run this VAE in float32.
  bool force_upcast() const { return config_.upcast(); }

  /// diffusers' enable_tiling(); the default geometry comes from the config (sample_size and its latent size).
  void enable_tiling() { use_tiling_ = true; }
  void enable_tiling(const VaeTiling& t) {
    SPO_CHECK(t.tile_sample_min_size >= 1 && t.tile_latent_min_size >= 1 && t.tile_overlap_factor >= 0 &&
                  t.tile_overlap_factor < 1,
              "AutoencoderKL::enable_tiling: tile sizes " << t.tile_sample_min_size << " / " << t.tile_latent_min_size
                                                          << " and overlap " << t.tile_overlap_factor
                                                          << " are not positive sizes with an overlap in [0, 1)");
    SPO_CHECK(static_cast<std::int64_t>(t.tile_latent_min_size * (1 - t.tile_overlap_factor)) >= 1 &&
                  static_cast<std::int64_t>(t.tile_sample_min_size * (1 - t.tile_overlap_factor)) >= 1,
              "AutoencoderKL::enable_tiling: tiles of " << t.tile_sample_min_size << " / " << t.tile_latent_min_size
                                                        << " with overlap " << t.tile_overlap_factor
                                                        << " advance by less than one element");
    tiling_ = t;
    use_tiling_ = true;
  }
  void disable_tiling() { use_tiling_ = false; }
  bool tiling_enabled() const { return use_tiling_; }
  const VaeTiling& tiling() const { return tiling_; }

  /// torch's default initialisation for every convolution and linear layer (norms start at identity).
  void reset_parameters(Generator& gen) {
    visit_layers([&](auto& layer) { layer.reset_parameters(gen); });
  }

  /// The posterior of images x [B, Cin, H, W] (diffusers' vae.encode(x).latent_dist).
  gaussian encode_distribution(const tensor& x) {
    SPO_CHECK(x.rank() == 4 && x.size(1) == config_.in_channels && x.size(0) >= 1,
              "AutoencoderKL::encode: image shape " << x.shape() << " is not [B, " << config_.in_channels << ", H, W]");
    nn::no_grad_guard no_grad;
    const auto& t = tiling_;
    if (use_tiling_ && (x.size(2) > t.tile_sample_min_size || x.size(3) > t.tile_sample_min_size)) {
      const auto overlap = static_cast<std::int64_t>(t.tile_sample_min_size * (1 - t.tile_overlap_factor));
      const auto blend = static_cast<std::int64_t>(t.tile_latent_min_size * t.tile_overlap_factor);
      return gaussian::from_moments(gaussian::from_host_tensor(
          tiled(gaussian::to_host_tensor(tensor(x)), t.tile_sample_min_size, overlap, blend,
                t.tile_latent_min_size - blend, [&](tensor tile) { return encode_moments(tile); })));
    }
    return gaussian::from_moments(encode_moments(x));
  }

  /// (mean - shift) * scaling: the deterministic latents of images x.
  tensor encode(const tensor& x) { return to_latents(encode_distribution(x).mean); }
  /// (mean + std * noise - shift) * scaling for a given standard-normal noise [B, Cl, H/f, W/f].
  tensor encode(const tensor& x, const tensor& noise) { return to_latents(encode_distribution(x).sample(noise)); }
  /// (sample - shift) * scaling with noise drawn from gen.
  tensor encode(const tensor& x, Generator& gen) { return to_latents(encode_distribution(x).sample(gen)); }

  /// Images of latents z [B, Cl, h, w] as the UNet sees them: decode_latents(z / scaling + shift).
  tensor decode(const tensor& z) {
    check_latents(z);
    auto h = to_host_copy(z);  // [B, Cl, h, w]
    const C scale = static_cast<C>(config_.scaling()), shift = static_cast<C>(config_.shift());
    for (std::int64_t i = 0; i < h.numel(); ++i) h[i] = static_cast<T>(static_cast<C>(h[i]) / scale + shift);
    return decode_latents(gaussian::from_host_tensor(std::move(h)));
  }

  /// diffusers' vae.decode(z).sample: the decoder of post_quant_conv(z), tiled when enabled and z exceeds a tile.
  tensor decode_latents(const tensor& z) {
    check_latents(z);
    nn::no_grad_guard no_grad;
    const auto& t = tiling_;
    if (use_tiling_ && (z.size(2) > t.tile_latent_min_size || z.size(3) > t.tile_latent_min_size)) {
      const auto overlap = static_cast<std::int64_t>(t.tile_latent_min_size * (1 - t.tile_overlap_factor));
      const auto blend = static_cast<std::int64_t>(t.tile_sample_min_size * t.tile_overlap_factor);
      return gaussian::from_host_tensor(tiled(to_host_copy(z), t.tile_latent_min_size, overlap, blend,
                                              t.tile_sample_min_size - blend,
                                              [&](tensor tile) { return run_decoder(std::move(tile)); }));
    }
    return run_decoder(z);
  }

  /// quant_conv(Encoder(x)): the moments [B, 2 Cl, H/f, W/f] (diffusers' untiled encode before the Gaussian).
  tensor encode_moments(const tensor& x) {
    nn::no_grad_guard no_grad;
    tensor h = encoder_conv_in_.forward(x);  // [B, C0, H, W]
    for (auto& level : encoder_levels_) {
      for (auto& r : level.resnets) h = r.forward(h);  // [B, Ci, h, w]
      if (level.down) h = level.down->forward(h);      // [B, Ci, h/2, w/2]
    }
    h = encoder_mid_.forward(std::move(h));                                        // [B, Cm, h, w]
    h = nn::norm_act_conv(encoder_norm_out_, encoder_act_, encoder_conv_out_, h);  // [B, 2 Cl, h, w]
    return quant_conv_ ? quant_conv_->forward(h) : h;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix = {}) {
    const auto key = [&](const std::string& name) { return nn::join_name(prefix, name); };
    encoder_conv_in_.visit_parameters(f, key("encoder.conv_in"));
    for (std::size_t i = 0; i < encoder_levels_.size(); ++i) {
      const std::string p = "encoder.down_blocks." + std::to_string(i);
      auto& level = encoder_levels_[i];
      for (std::size_t j = 0; j < level.resnets.size(); ++j)
        level.resnets[j].visit_parameters(f, key(p + ".resnets." + std::to_string(j)));
      if (level.down) level.down->visit_parameters(f, key(p + ".downsamplers.0"));
    }
    encoder_mid_.visit_parameters(f, key("encoder.mid_block"));
    encoder_norm_out_.visit_parameters(f, key("encoder.conv_norm_out"));
    encoder_conv_out_.visit_parameters(f, key("encoder.conv_out"));
    if (quant_conv_) quant_conv_->visit_parameters(f, key("quant_conv"));
    if (post_quant_conv_) post_quant_conv_->visit_parameters(f, key("post_quant_conv"));
    decoder_conv_in_.visit_parameters(f, key("decoder.conv_in"));
    decoder_mid_.visit_parameters(f, key("decoder.mid_block"));
    for (std::size_t i = 0; i < decoder_levels_.size(); ++i) {
      const std::string p = "decoder.up_blocks." + std::to_string(i);
      auto& level = decoder_levels_[i];
      for (std::size_t j = 0; j < level.resnets.size(); ++j)
        level.resnets[j].visit_parameters(f, key(p + ".resnets." + std::to_string(j)));
      if (level.up) level.up->visit_parameters(f, key(p + ".upsamplers.0"));
    }
    decoder_norm_out_.visit_parameters(f, key("decoder.conv_norm_out"));
    decoder_conv_out_.visit_parameters(f, key("decoder.conv_out"));
  }

 private:
  static constexpr double eps = 1e-6;

  /// UNetMidBlock2D without time embedding: resnets.0, attentions.0 (when configured), resnets.1.
  struct MidBlock {
    ResnetBlock2D<T, D> resnet0, resnet1;
    std::optional<SpatialSelfAttention<T, D>> attention;

    MidBlock() = default;
    MidBlock(std::int64_t channels, std::int64_t groups, bool with_attention)
        : resnet0(channels, channels, 0, groups, eps), resnet1(channels, channels, 0, groups, eps) {
      if (with_attention) attention.emplace(channels, 1, groups, eps);
    }
    tensor forward(tensor h) {
      h = resnet0.forward(h);                    // [B, C, h, w]
      if (attention) h = attention->forward(h);  // [B, C, h, w]
      return resnet1.forward(h);                 // [B, C, h, w]
    }
    template <class F>
    void visit_parameters(F&& f, const std::string& prefix) {
      if (attention) attention->visit_parameters(f, prefix + ".attentions.0");
      resnet0.visit_parameters(f, prefix + ".resnets.0");
      resnet1.visit_parameters(f, prefix + ".resnets.1");
    }
  };

  struct Level {
    std::vector<ResnetBlock2D<T, D>> resnets;
    std::optional<Downsample2D<T, D>> down;
    std::optional<Upsample2D<T, D>> up;
  };

  template <class F>
  void visit_layers(F&& f) {
    const auto mid = [&](MidBlock& m) {
      f(m.resnet0);
      if (m.attention) f(*m.attention);
      f(m.resnet1);
    };
    f(encoder_conv_in_);
    for (auto& level : encoder_levels_) {
      for (auto& r : level.resnets) f(r);
      if (level.down) f(*level.down);
    }
    mid(encoder_mid_);
    f(encoder_conv_out_);
    if (quant_conv_) f(*quant_conv_);
    if (post_quant_conv_) f(*post_quant_conv_);
    f(decoder_conv_in_);
    mid(decoder_mid_);
    for (auto& level : decoder_levels_) {
      for (auto& r : level.resnets) f(r);
      if (level.up) f(*level.up);
    }
    f(decoder_conv_out_);
  }

  void check_latents(const tensor& z) const {
    SPO_CHECK(
        z.rank() == 4 && z.size(1) == config_.latent_channels && z.size(0) >= 1,
        "AutoencoderKL::decode: latents shape " << z.shape() << " is not [B, " << config_.latent_channels << ", h, w]");
  }

  static host_tensor to_host_copy(const tensor& z) { return gaussian::to_host_tensor(tensor(z)); }

  tensor to_latents(const tensor& z) const {
    auto h = to_host_copy(z);  // [B, Cl, h, w]
    const T scale = static_cast<T>(config_.scaling()), shift = static_cast<T>(config_.shift());
    for (std::int64_t i = 0; i < h.numel(); ++i) h[i] = (h[i] - shift) * scale;
    return gaussian::from_host_tensor(std::move(h));
  }

  tensor run_decoder(tensor z) {
    tensor h = post_quant_conv_ ? post_quant_conv_->forward(z) : std::move(z);  // [B, Cl, h, w]
    h = decoder_conv_in_.forward(h);                                            // [B, Cm, h, w]
    h = decoder_mid_.forward(std::move(h));
    for (std::size_t i = 0; i < decoder_levels_.size(); ++i) {
      auto& level = decoder_levels_[i];
      for (auto& r : level.resnets) h = r.forward(h);  // [B, Ci, h, w]
      if (level.up) h = level.up->forward(h);          // [B, Ci, 2h, 2w]
      // Each level's tensors are larger than the last one's: the free blocks smaller than the next level's smallest
      // tensor can never be reused, so they go back (a 512x512 SD decode: 7.4 -> 5.x GB), the others stay pooled.
      if (i + 1 < decoder_levels_.size())
        caching_allocator<D>::instance().release_below(smallest_tensor_bytes(decoder_levels_[i + 1], h));
    }
    return nn::norm_act_conv(decoder_norm_out_, decoder_act_, decoder_conv_out_, h);  // [B, Cout, H, W]
  }

  /// The bytes of the smallest activation of `level` run on h [B, C, H, W]: B H W times its fewest channels.
  static std::size_t smallest_tensor_bytes(const Level& level, const tensor& h) {
    std::int64_t channels = h.size(1);
    for (const auto& r : level.resnets) channels = std::min({channels, r.in_channels(), r.out_channels()});
    return static_cast<std::size_t>(h.numel() / h.size(1) * channels) * sizeof(T);
  }

  /// x[:, :, y0 : y0 + h, x0 : x0 + w] of a host tensor.
  static host_tensor crop(const host_tensor& x, std::int64_t y0, std::int64_t x0, std::int64_t h, std::int64_t w) {
    const std::int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
    auto out = host_tensor::uninitialized(Shape{x.size(0), x.size(1), h, w});  // [B, C, h, w]
    for (std::int64_t p = 0; p < planes; ++p)
      for (std::int64_t i = 0; i < h; ++i)
        std::copy_n(x.data() + (p * H + y0 + i) * W + x0, w, out.data() + (p * h + i) * w);
    return out;
  }

  /*!
    diffusers' tiled_encode / tiled_decode on a host input [B, C, H, W]: tiles of `tile` elements start every
    `overlap` elements; run(tile on D) gives the tile's output. Tiles are visited row by row; each output tile is
    blended in place with the (already blended) tile above over its first `blend` rows, then with the tile to its
    left over its first `blend` columns (b = a (1 - y / e) + b (y / e) with e = min(blend, both extents)), and its
    first `limit` rows and columns are kept. Only the previous row of output tiles is held.
  !*/
  template <class Run>
  host_tensor tiled(const host_tensor& x, std::int64_t tile, std::int64_t overlap, std::int64_t blend,
                    std::int64_t limit, Run&& run) {
    std::vector<host_tensor> above, current;
    std::vector<std::vector<host_tensor>> kept;  // cropped tiles per row
    for (std::int64_t i = 0; i < x.size(2); i += overlap) {
      current.clear();
      kept.emplace_back();
      for (std::int64_t j = 0, col = 0; j < x.size(3); j += overlap, ++col) {
        const std::int64_t th = std::min(tile, x.size(2) - i), tw = std::min(tile, x.size(3) - j);
        host_tensor b = gaussian::to_host_tensor(run(gaussian::from_host_tensor(crop(x, i, j, th, tw))));
        if (!above.empty()) blend_rows(above[static_cast<std::size_t>(col)], b, blend);
        if (!current.empty()) blend_columns(current.back(), b, blend);
        kept.back().push_back(crop(b, 0, 0, std::min(limit, b.size(2)), std::min(limit, b.size(3))));
        current.push_back(std::move(b));
      }
      above.swap(current);
    }
    above.clear();
    std::int64_t out_h = 0, out_w = 0;
    for (const auto& row : kept) out_h += row.front().size(2);
    for (const auto& t : kept.front()) out_w += t.size(3);
    const auto& first = kept.front().front();
    auto out = host_tensor::uninitialized(Shape{first.size(0), first.size(1), out_h, out_w});  // [B, C, H', W']
    const std::int64_t planes = first.size(0) * first.size(1);
    std::int64_t y0 = 0;
    for (const auto& row : kept) {
      std::int64_t x0 = 0;
      for (const auto& t : row) {
        for (std::int64_t p = 0; p < planes; ++p)
          for (std::int64_t r = 0; r < t.size(2); ++r)
            std::copy_n(t.data() + (p * t.size(2) + r) * t.size(3), t.size(3),
                        out.data() + (p * out_h + y0 + r) * out_w + x0);
        x0 += t.size(3);
      }
      y0 += row.front().size(2);
    }
    return out;
  }

  /// Host arithmetic of a 16-bit VAE in float, one rounding per element.
  using C = compute_type_t<T>;

  /// diffusers' blend_v: b[:, :, y] = a[:, :, -e + y] (1 - y / e) + b[:, :, y] (y / e) for y < e.
  static void blend_rows(const host_tensor& a, host_tensor& b, std::int64_t extent) {
    const std::int64_t e = std::min({a.size(2), b.size(2), extent}), planes = b.size(0) * b.size(1);
    const std::int64_t ha = a.size(2), hb = b.size(2), w = b.size(3);
    SPO_CHECK(a.size(3) == w, "AutoencoderKL tiling: tile widths " << a.size(3) << " and " << w << " differ");
    for (std::int64_t y = 0; y < e; ++y) {
      const double wb = static_cast<double>(y) / static_cast<double>(e);
      const C ta = static_cast<C>(1 - wb), tb = static_cast<C>(wb);
      for (std::int64_t p = 0; p < planes; ++p) {
        const T* pa = a.data() + (p * ha + ha - e + y) * w;
        T* pb = b.data() + (p * hb + y) * w;
        for (std::int64_t k = 0; k < w; ++k)
          pb[k] = static_cast<T>(static_cast<C>(pa[k]) * ta + static_cast<C>(pb[k]) * tb);
      }
    }
  }

  /// diffusers' blend_h: b[..., x] = a[..., -e + x] (1 - x / e) + b[..., x] (x / e) for x < e.
  static void blend_columns(const host_tensor& a, host_tensor& b, std::int64_t extent) {
    const std::int64_t e = std::min({a.size(3), b.size(3), extent}), planes = b.size(0) * b.size(1);
    const std::int64_t wa = a.size(3), wb = b.size(3), h = b.size(2);
    SPO_CHECK(a.size(2) == h, "AutoencoderKL tiling: tile heights " << a.size(2) << " and " << h << " differ");
    for (std::int64_t x = 0; x < e; ++x) {
      const double fb = static_cast<double>(x) / static_cast<double>(e);
      const C ta = static_cast<C>(1 - fb), tb = static_cast<C>(fb);
      for (std::int64_t p = 0; p < planes; ++p)
        for (std::int64_t r = 0; r < h; ++r) {
          T& vb = b.data()[(p * h + r) * wb + x];
          vb = static_cast<T>(static_cast<C>(a.data()[(p * h + r) * wa + wa - e + x]) * ta + static_cast<C>(vb) * tb);
        }
    }
  }

  AutoencoderKLConfig config_;
  nn::Conv2d<T, D> encoder_conv_in_;
  std::vector<Level> encoder_levels_;
  MidBlock encoder_mid_;
  nn::GroupNorm<T, D> encoder_norm_out_;
  nn::SiLU<T, D> encoder_act_;
  nn::Conv2d<T, D> encoder_conv_out_;
  std::optional<nn::Conv2d<T, D>> quant_conv_, post_quant_conv_;
  nn::Conv2d<T, D> decoder_conv_in_;
  MidBlock decoder_mid_;
  std::vector<Level> decoder_levels_;
  nn::GroupNorm<T, D> decoder_norm_out_;
  nn::SiLU<T, D> decoder_act_;
  nn::Conv2d<T, D> decoder_conv_out_;
  VaeTiling tiling_;
  bool use_tiling_ = false;
};

}  // namespace spo::model

/// A diffusers vae/config.json is an AutoencoderKLConfig, key for key (the leading-underscore keys map to
/// class_name, diffusers_version and name_or_path).
BOOST_HANA_ADAPT_ADT(spo::model::AutoencoderKLConfig,
                     (
                         _class_name, [](auto& c) -> auto& { return c.class_name; }),
                     (
                         _diffusers_version, [](auto& c) -> auto& { return c.diffusers_version; }),
                     (
                         _name_or_path, [](auto& c) -> auto& { return c.name_or_path; }),
                     (
                         in_channels, [](auto& c) -> auto& { return c.in_channels; }),
                     (
                         out_channels, [](auto& c) -> auto& { return c.out_channels; }),
                     (
                         down_block_types, [](auto& c) -> auto& { return c.down_block_types; }),
                     (
                         up_block_types, [](auto& c) -> auto& { return c.up_block_types; }),
                     (
                         block_out_channels, [](auto& c) -> auto& { return c.block_out_channels; }),
                     (
                         layers_per_block, [](auto& c) -> auto& { return c.layers_per_block; }),
                     (
                         act_fn, [](auto& c) -> auto& { return c.act_fn; }),
                     (
                         latent_channels, [](auto& c) -> auto& { return c.latent_channels; }),
                     (
                         norm_num_groups, [](auto& c) -> auto& { return c.norm_num_groups; }),
                     (
                         sample_size, [](auto& c) -> auto& { return c.sample_size; }),
                     (
                         scaling_factor, [](auto& c) -> auto& { return c.scaling_factor; }),
                     (
                         shift_factor, [](auto& c) -> auto& { return c.shift_factor; }),
                     (
                         latents_mean, [](auto& c) -> auto& { return c.latents_mean; }),
                     (
                         latents_std, [](auto& c) -> auto& { return c.latents_std; }),
                     (
                         force_upcast, [](auto& c) -> auto& { return c.force_upcast; }),
                     (
                         use_quant_conv, [](auto& c) -> auto& { return c.use_quant_conv; }),
                     (
                         use_post_quant_conv, [](auto& c) -> auto& { return c.use_post_quant_conv; }),
                     (
                         mid_block_add_attention, [](auto& c) -> auto& { return c.mid_block_add_attention; }));
