// SPDX-License-Identifier: MIT
/// @brief Reads diffusers' UNet2DConditionModel config (a pipeline's unet/config.json) into a UNetConfig, field by
/// field: the fields SD 1.x, SD 2.x and SDXL set are mapped, every other field must hold the value they use.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/config.hpp"
#include "spo/io/json.hpp"
#include "spo/model/unet_2d_condition.hpp"

namespace spo::model {

namespace detail::diffusers_unet {

using io::json;

/// The keys of a config object, each read at most once through its accessors; absent keys read as diffusers 0.26.1's
/// default of that __init__ argument. Errors are config_error(<field>, <problem>).
class Fields {
 public:
  explicit Fields(const json& j) : j_(j) {}

  /// The value of `key`, or `fallback` (diffusers' default) when the key is absent.
  const json& get(const std::string& key, const json& fallback) {
    read_.insert(key);
    const auto it = j_.find(key);
    if (it != j_.end()) return *it;
    fallbacks_.push_back(fallback);
    return fallbacks_.back();
  }

  static std::int64_t integer(const json& v, const std::string& key) {
    SPO_CONFIG_CHECK(v.is_number_integer(), key, "expected an integer, got " << v.dump());
    return v.get<std::int64_t>();
  }

  std::int64_t integer(const std::string& key, std::int64_t fallback) { return integer(get(key, fallback), key); }

  bool boolean(const std::string& key, bool fallback) {
    const json& v = get(key, fallback);
    SPO_CONFIG_CHECK(v.is_boolean(), key, "expected true or false, got " << v.dump());
    return v.get<bool>();
  }

  double number(const std::string& key, double fallback) {
    const json& v = get(key, fallback);
    SPO_CONFIG_CHECK(v.is_number(), key, "expected a number, got " << v.dump());
    return v.get<double>();
  }

  std::vector<std::string> strings(const std::string& key, const json& fallback) {
    const json& v = get(key, fallback);
    SPO_CONFIG_CHECK(v.is_array(), key, "expected a list of block type names, got " << v.dump());
    std::vector<std::string> out;
    for (const auto& e : v) {
      SPO_CONFIG_CHECK(e.is_string(), key, "expected a list of block type names, got " << v.dump());
      out.push_back(e.get<std::string>());
    }
    return out;
  }

  /// An int (the same at every level) or a list of `levels` ints.
  std::vector<std::int64_t> per_level(const std::string& key, const json& fallback, std::size_t levels) {
    const json& v = get(key, fallback);
    if (v.is_number_integer()) return std::vector<std::int64_t>(levels, v.get<std::int64_t>());
    SPO_CONFIG_CHECK(v.is_array() && v.size() == levels, key,
                     "expected an integer or a list of " << levels << " integers (one per block), got " << v.dump());
    std::vector<std::int64_t> out;
    for (const auto& e : v) out.push_back(integer(e, key));
    return out;
  }

  /// A field spo does not implement: accepted only at `supported` (the value SD 1.x, 2.x and XL use), which is also
  /// diffusers' default unless `fallback` is given.
  void fixed(const std::string& key, const json& supported, const json& fallback) {
    const json& v = get(key, fallback);
    SPO_CONFIG_CHECK(v == supported, key,
                     "is " << v.dump() << " but only " << supported.dump() << " is supported (the value of SD 1.x, "
                           << "SD 2.x and SDXL)");
  }
  void fixed(const std::string& key, const json& supported) { fixed(key, supported, supported); }

  /// Every key that no accessor read: metadata ("_class_name", "_diffusers_version", ...) aside, an error.
  void reject_unknown() const {
    for (const auto& [key, value] : j_.items()) {
      if (key == "_class_name") {
        SPO_CONFIG_CHECK(value == "UNet2DConditionModel", key,
                         "is " << value.dump() << ", not \"UNet2DConditionModel\"");
        continue;
      }
      if (key.starts_with("_")) continue;
      SPO_CONFIG_CHECK(read_.contains(key), key,
                       "is not a field of diffusers 0.26.1's UNet2DConditionModel that spo knows");
    }
  }

 private:
  const json& j_;
  std::set<std::string> read_;
  std::deque<json> fallbacks_;  // a deque: references to earlier fallbacks stay valid
};

}  // namespace detail::diffusers_unet

/*!
  WHAT THIS REPRESENTS
    diffusers 0.26.1's UNet2DConditionModel config as a UNetConfig. An absent field has diffusers' default.
  ENSURES
    - mapped: in_channels, out_channels, block_out_channels, down_block_types (CrossAttnDownBlock2D -> attention,
      DownBlock2D -> none), layers_per_block (an int, or a list of equal ints), norm_num_groups, norm_eps,
      cross_attention_dim (an int, or a list of equal ints), attention_head_dim (the head COUNT: an int, or one per
      level -> level_attention_heads), transformer_layers_per_block (an int or one per level), use_linear_projection,
      flip_sin_to_cos, freq_shift, and addition_embed_type "text_time" with addition_time_embed_dim and
      projection_class_embeddings_input_dim (-> text_time).
    - accepted at any value: sample_size (the latent size the model was trained at; not a topology knob) and
      upcast_attention (softmax in float32: spo's float and double attentions already are).
    - up_block_types must mirror down_block_types (CrossAttnUpBlock2D at up level i iff CrossAttnDownBlock2D at
      down level L-1-i), else a config_error naming up_block_types.
    - every other field of UNet2DConditionModel.__init__ must hold the value SD 1.x/2.x/XL use (e.g.
      mid_block_type "UNetMidBlock2DCrossAttn", act_fn "silu", num_attention_heads null, class_embed_type null,
      conv_in_kernel 3, resnet_time_scale_shift "default", ...); another value is a config_error naming the field.
      A key that is not a field (metadata "_..." aside) is a config_error naming it; "_class_name", when present,
      must be "UNet2DConditionModel".
    - the result passes validate(result, "unet").
!*/
inline UNetConfig unet_config_from_diffusers(const io::json& j) {
  using detail::diffusers_unet::Fields;
  using io::json;
  SPO_CONFIG_CHECK(j.is_object(), "unet", "expected a config object, got " << j.dump());
  Fields f(j);
  UNetConfig c;
  c.in_channels = f.integer("in_channels", 4);
  c.out_channels = f.integer("out_channels", 4);
  const auto down =
      f.strings("down_block_types",
                json::array({"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}));
  const auto up = f.strings(
      "up_block_types", json::array({"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}));
  const std::size_t levels = down.size();
  SPO_CONFIG_CHECK(levels >= 1, "down_block_types", "must name at least one block");
  c.attention.clear();
  for (const auto& t : down) {
    SPO_CONFIG_CHECK(t == "CrossAttnDownBlock2D" || t == "DownBlock2D", "down_block_types",
                     "\"" << t << "\" is not supported (CrossAttnDownBlock2D or DownBlock2D)");
    c.attention.push_back(t == "CrossAttnDownBlock2D");
  }
  SPO_CONFIG_CHECK(up.size() == levels, "up_block_types",
                   "has " << up.size() << " blocks for " << levels << " down_block_types");
  for (std::size_t i = 0; i < levels; ++i) {
    const bool cross = c.attention[levels - 1 - i];
    const std::string expected = cross ? "CrossAttnUpBlock2D" : "UpBlock2D";
    SPO_CONFIG_CHECK(up[i] == expected, "up_block_types",
                     "[" << i << "] is \"" << up[i] << "\" but must mirror down_block_types[" << levels - 1 - i
                         << "] (\"" << down[levels - 1 - i] << "\"): \"" << expected << "\"");
  }
  const json default_channels = json::array({320, 640, 1280, 1280});
  const json& channels = f.get("block_out_channels", default_channels);
  SPO_CONFIG_CHECK(channels.is_array() && channels.size() == levels, "block_out_channels",
                   "expected a list of " << levels << " integers (one per down block), got " << channels.dump());
  c.block_out_channels = f.per_level("block_out_channels", default_channels, levels);

  auto same_everywhere = [&](const std::string& key, const json& fallback) {
    const auto v = f.per_level(key, fallback, levels);
    SPO_CONFIG_CHECK(
        std::all_of(v.begin(), v.end(), [&](std::int64_t x) { return x == v[0]; }), key,
        "differs between levels (" << f.get(key, fallback).dump() << "); spo supports one value for every level");
    return v[0];
  };
  c.layers_per_block = same_everywhere("layers_per_block", 2);
  c.cross_attention_dim = same_everywhere("cross_attention_dim", 1280);

  const json& heads = f.get("attention_head_dim", 8);
  if (heads.is_number_integer()) {
    c.attention_heads = heads.get<std::int64_t>();
  } else {
    c.level_attention_heads = f.per_level("attention_head_dim", 8, levels);
    c.attention_heads = c.level_attention_heads->back();
  }
  f.fixed("num_attention_heads", nullptr);  // diffusers 0.26.1 refuses it too ("attention_head_dim" is the count)

  const json& layers = f.get("transformer_layers_per_block", 1);
  SPO_CONFIG_CHECK(
      layers.is_number_integer() ||
          (layers.is_array() && std::none_of(layers.begin(), layers.end(), [](const json& e) { return e.is_array(); })),
      "transformer_layers_per_block", "nested lists (asymmetric UNets) are not supported, got " << layers.dump());
  const auto per_level_layers = f.per_level("transformer_layers_per_block", 1, levels);
  if (std::any_of(per_level_layers.begin(), per_level_layers.end(), [](std::int64_t x) { return x != 1; }))
    c.transformer_layers_per_block = per_level_layers;
  f.fixed("reverse_transformer_layers_per_block", nullptr);

  c.norm_num_groups = f.integer("norm_num_groups", 32);
  c.norm_eps = f.number("norm_eps", 1e-5);
  c.use_linear_projection = f.boolean("use_linear_projection", false);
  if (!f.boolean("flip_sin_to_cos", true)) c.flip_sin_to_cos = false;
  if (const double shift = f.number("freq_shift", 0); shift != 0) c.freq_shift = shift;

  const json& addition = f.get("addition_embed_type", nullptr);
  SPO_CONFIG_CHECK(addition.is_null() || addition == "text_time", "addition_embed_type",
                   "is " << addition.dump() << " but only null and \"text_time\" (SDXL) are supported");
  if (addition == "text_time") {
    const json& dim = f.get("addition_time_embed_dim", nullptr);
    const json& in = f.get("projection_class_embeddings_input_dim", nullptr);
    c.text_time = TextTimeConfig{Fields::integer(dim, "addition_time_embed_dim"),
                                 Fields::integer(in, "projection_class_embeddings_input_dim")};
  } else {
    f.fixed("addition_time_embed_dim", nullptr);
    f.fixed("projection_class_embeddings_input_dim", nullptr);
  }
  f.fixed("addition_embed_type_num_heads", 64);

  f.get("sample_size", nullptr);
  f.boolean("upcast_attention", false);

  f.fixed("center_input_sample", false);
  f.fixed("mid_block_type", "UNetMidBlock2DCrossAttn");
  const json& only_cross = f.get("only_cross_attention", false);
  SPO_CONFIG_CHECK(only_cross == false ||
                       (only_cross.is_array() && only_cross.size() == levels &&
                        std::all_of(only_cross.begin(), only_cross.end(), [](const json& e) { return e == false; })),
                   "only_cross_attention", "is " << only_cross.dump() << " but only false is supported");
  const json& mid_only_cross = f.get("mid_block_only_cross_attention", nullptr);
  SPO_CONFIG_CHECK(mid_only_cross.is_null() || mid_only_cross == false, "mid_block_only_cross_attention",
                   "is " << mid_only_cross.dump() << " but only null and false are supported");
  f.fixed("downsample_padding", 1);
  f.fixed("mid_block_scale_factor", 1);
  f.fixed("dropout", 0.0);
  f.fixed("act_fn", "silu");
  f.fixed("encoder_hid_dim", nullptr);
  f.fixed("encoder_hid_dim_type", nullptr);
  f.fixed("dual_cross_attention", false);
  f.fixed("class_embed_type", nullptr);
  f.fixed("num_class_embeds", nullptr);
  f.fixed("class_embeddings_concat", false);
  f.fixed("resnet_time_scale_shift", "default");
  f.fixed("resnet_skip_time_act", false);
  f.fixed("resnet_out_scale_factor", 1.0);
  f.fixed("time_embedding_type", "positional");
  f.fixed("time_embedding_dim", nullptr);
  f.fixed("time_embedding_act_fn", nullptr);
  f.fixed("timestep_post_act", nullptr);
  f.fixed("time_cond_proj_dim", nullptr);
  f.fixed("conv_in_kernel", 3);
  f.fixed("conv_out_kernel", 3);
  f.fixed("attention_type", "default");
  f.fixed("cross_attention_norm", nullptr);
  f.reject_unknown();

  SPO_CONFIG_CHECK(c.in_channels >= 1, "in_channels", "must be >= 1, got " << c.in_channels);
  SPO_CONFIG_CHECK(c.out_channels >= 1, "out_channels", "must be >= 1, got " << c.out_channels);
  SPO_CONFIG_CHECK(c.norm_eps > 0, "norm_eps", "must be > 0, got " << c.norm_eps);
  validate(c, "unet");
  return c;
}

/// unet_config_from_diffusers of the file `path` (a pipeline's unet/config.json); errors are spo::input_error
/// "<path>: <field>: <problem>".
inline UNetConfig load_diffusers_unet_config(const std::filesystem::path& path) {
  const auto j = io::parse_json(io::read_file_text(path), path.string());
  return io::in_config_file(path, [&] { return unet_config_from_diffusers(j); });
}

}  // namespace spo::model
