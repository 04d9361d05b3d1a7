// SPDX-License-Identifier: MIT
/// @brief CLIP's text transformer (transformers' CLIPTextModel and CLIPTextModelWithProjection, Stable Diffusion's
/// text encoders), parameter keys equal to transformers' state-dict keys, and its config read from config.json.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/json.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/attention.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cpu/attention_kernels.hpp"
#include "spo/tensor/layout.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/text_encoder.hpp"

namespace spo::text {

/// The MLP nonlinearity of a CLIP text transformer (config `hidden_act`).
enum class CLIPActivation { quick_gelu, gelu };

/*!
  WHAT THIS REPRESENTS
    The fields of transformers' CLIPTextConfig that set the math of the text transformer (transformers 4.47.1,
    models/clip/configuration_clip.py). SD1.5: vocab 49408, hidden 768, MLP 3072, 12 layers, 12 heads, 77
    positions, quick_gelu; SDXL's second encoder: hidden 1280, MLP 5120, 32 layers, 20 heads, gelu, projection 1280.
    Pooling: eos_token_id == 2 (every SD/SDXL config) pools at argmax(input_ids), any other value at the first
    eos_token_id (transformers modeling_clip.py, CLIPTextTransformer.forward).
!*/
struct CLIPTextConfig {
  std::int64_t vocab_size = 49408;
  std::int64_t hidden_size = 768;
  std::int64_t intermediate_size = 3072;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  std::int64_t max_position_embeddings = 77;
  CLIPActivation hidden_act = CLIPActivation::quick_gelu;
  double layer_norm_eps = 1e-5;
  std::int64_t bos_token_id = 0;
  std::int64_t eos_token_id = 2;
  std::int64_t pad_token_id = 1;
  /// Width of text_projection (CLIPTextModelWithProjection); 0 when config.json has no projection_dim.
  std::int64_t projection_dim = 0;

  std::int64_t head_dim() const { return num_attention_heads > 0 ? hidden_size / num_attention_heads : 0; }
  /// transformers' legacy rule: pool at argmax(input_ids) (the EOS id being the largest), not at the first EOS.
  bool argmax_pooling() const { return eos_token_id == 2; }
};

/// Every value in range, each error naming its field ("<key>.<field>").
inline void validate(const CLIPTextConfig& c, std::string_view key = "text_encoder") {
  const std::string k(key);
  SPO_CONFIG_CHECK(c.vocab_size >= 1, k + ".vocab_size", "must be >= 1, got " << c.vocab_size);
  SPO_CONFIG_CHECK(c.hidden_size >= 1, k + ".hidden_size", "must be >= 1, got " << c.hidden_size);
  SPO_CONFIG_CHECK(c.intermediate_size >= 1, k + ".intermediate_size", "must be >= 1, got " << c.intermediate_size);
  SPO_CONFIG_CHECK(c.num_hidden_layers >= 1, k + ".num_hidden_layers", "must be >= 1, got " << c.num_hidden_layers);
  SPO_CONFIG_CHECK(c.num_attention_heads >= 1, k + ".num_attention_heads",
                   "must be >= 1, got " << c.num_attention_heads);
  SPO_CONFIG_CHECK(c.hidden_size % c.num_attention_heads == 0, k + ".num_attention_heads",
                   c.num_attention_heads << " heads do not divide hidden_size " << c.hidden_size);
  SPO_CONFIG_CHECK(c.max_position_embeddings >= 1, k + ".max_position_embeddings",
                   "must be >= 1, got " << c.max_position_embeddings);
  SPO_CONFIG_CHECK(c.layer_norm_eps > 0, k + ".layer_norm_eps", "must be > 0, got " << c.layer_norm_eps);
  SPO_CONFIG_CHECK(c.projection_dim >= 0, k + ".projection_dim", "must be >= 0, got " << c.projection_dim);
}

/*!
  REQUIRES
    - j is the object of a transformers text-encoder config.json (CLIPTextConfig.save_pretrained); source names it
  ENSURES
    - the math fields (vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
      max_position_embeddings, hidden_act, layer_norm_eps, eos_token_id) are required; bos_token_id, pad_token_id
      and projection_dim are read when present
    - informational fields are accepted and ignored: _name_or_path, architectures, torch_dtype,
      transformers_version, model_type (must be "clip_text_model"), dropout and attention_dropout (inference is
      in eval mode), initializer_factor, initializer_range, _attn_implementation_autoset
    - any other field, a hidden_act other than quick_gelu or gelu, a missing or mistyped field, and an
      out-of-range value throw spo::config_error naming the field (its message names source too)
!*/
inline CLIPTextConfig clip_text_config_from_json(const io::json& j, std::string_view source) {
  const std::string src(source);
  SPO_CONFIG_CHECK(j.is_object(), src, "a CLIP text config must be a JSON object");
  static const std::set<std::string, std::less<>> informational{"_name_or_path",     "architectures",
                                                                "torch_dtype",       "transformers_version",
                                                                "model_type",        "dropout",
                                                                "attention_dropout", "initializer_factor",
                                                                "initializer_range", "_attn_implementation_autoset"};
  static const std::set<std::string, std::less<>> fields{
      "vocab_size",        "hidden_size",         "intermediate_size",
      "num_hidden_layers", "num_attention_heads", "max_position_embeddings",
      "hidden_act",        "layer_norm_eps",      "bos_token_id",
      "eos_token_id",      "pad_token_id",        "projection_dim"};
  for (const auto& [name, value] : j.items()) {
    SPO_CONFIG_CHECK(fields.contains(name) || informational.contains(name), name,
                     "is not implemented by spo's CLIP text encoder (" << src << ")");
  }
  if (j.contains("model_type"))
    SPO_CONFIG_CHECK(j["model_type"] == "clip_text_model", "model_type",
                     j["model_type"].dump() << " is not a CLIP text model (\"clip_text_model\") in " << src);
  auto integer = [&](const char* name, bool required, std::int64_t fallback) -> std::int64_t {
    if (!j.contains(name)) {
      SPO_CONFIG_CHECK(!required, name, "is missing from " << src);
      return fallback;
    }
    SPO_CONFIG_CHECK(j[name].is_number_integer(), name, "must be an integer in " << src << ", got " << j[name].dump());
    return j[name].get<std::int64_t>();
  };
  CLIPTextConfig c;
  c.vocab_size = integer("vocab_size", true, 0);
  c.hidden_size = integer("hidden_size", true, 0);
  c.intermediate_size = integer("intermediate_size", true, 0);
  c.num_hidden_layers = integer("num_hidden_layers", true, 0);
  c.num_attention_heads = integer("num_attention_heads", true, 0);
  c.max_position_embeddings = integer("max_position_embeddings", true, 0);
  c.eos_token_id = integer("eos_token_id", true, 0);
  c.bos_token_id = integer("bos_token_id", false, c.bos_token_id);
  c.pad_token_id = integer("pad_token_id", false, c.pad_token_id);
  c.projection_dim = integer("projection_dim", false, 0);
  SPO_CONFIG_CHECK(j.contains("layer_norm_eps"), "layer_norm_eps", "is missing from " << src);
  SPO_CONFIG_CHECK(j["layer_norm_eps"].is_number(), "layer_norm_eps",
                   "must be a number in " << src << ", got " << j["layer_norm_eps"].dump());
  c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  SPO_CONFIG_CHECK(j.contains("hidden_act"), "hidden_act", "is missing from " << src);
  const io::json& act = j["hidden_act"];
  if (act == "quick_gelu")
    c.hidden_act = CLIPActivation::quick_gelu;
  else if (act == "gelu")
    c.hidden_act = CLIPActivation::gelu;
  else
    SPO_CONFIG_CHECK(false, "hidden_act", act.dump() << " is not implemented (quick_gelu, gelu) in " << src);
  validate(c, "text_encoder");
  return c;
}

/// Reads and checks a transformers text-encoder config.json (see clip_text_config_from_json).
inline CLIPTextConfig load_clip_text_config(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  SPO_EXPECT(in.good(), path.string() << ": cannot open the CLIP text config");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return clip_text_config_from_json(io::parse_json(text, path.string()), path.string());
}

/// The position whose final hidden state a row of token ids pools: argmax(ids) (first maximum) when
/// config.argmax_pooling(), otherwise the first config.eos_token_id (0 when the row has none, as torch's argmax of
/// an all-false mask).
inline std::int64_t clip_pool_index(std::span<const std::int32_t> row, const CLIPTextConfig& config) {
  if (row.empty()) return 0;
  if (config.argmax_pooling()) return std::max_element(row.begin(), row.end()) - row.begin();
  const auto eos = std::find(row.begin(), row.end(), config.eos_token_id);
  return eos == row.end() ? 0 : eos - row.begin();
}

/// transformers' CLIPAttention: nn::Attention with biased q/k/v projections under the keys q_proj, k_proj, v_proj,
/// out_proj, and (in the text transformer) the causal mask.
template <StorageScalar T, Device D = cpu>
using CLIPAttention = nn::Attention<T, D>;

/// CLIPAttention of `width` in `heads` heads, causal as CLIP's text transformer.
template <StorageScalar T, Device D = cpu>
CLIPAttention<T, D> clip_attention(std::int64_t width, std::int64_t heads, bool causal = true) {
  SPO_CHECK(width > 0 && heads > 0 && width % heads == 0,
            "CLIPAttention: width " << width << " is not a positive multiple of " << heads << " heads");
  return CLIPAttention<T, D>(width, heads, width / heads, 0,
                             {.qkv_bias = true, .causal = causal, .keys = nn::clip_attention_keys});
}

/*!
  WHAT THIS REPRESENTS
    transformers' CLIPEncoderLayer (pre-norm):
      h = x + self_attn(layer_norm1(x)),  y = h + mlp.fc2(act(mlp.fc1(layer_norm2(h))))
    act = quick_gelu (x sigmoid(1.702 x)) or the erf GELU, as configured. Keys layer_norm1, self_attn.{q,k,v,out}_proj,
    layer_norm2, mlp.fc1 [I, W], mlp.fc2 [W, I]. Input and output [B, L, W].
!*/
template <StorageScalar T, Device D = cpu>
class CLIPEncoderLayer {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  CLIPEncoderLayer() = default;
  explicit CLIPEncoderLayer(const CLIPTextConfig& c)
      : act_(c.hidden_act),
        layer_norm1_(c.hidden_size, c.layer_norm_eps),
        self_attn_(clip_attention<T, D>(c.hidden_size, c.num_attention_heads)),
        layer_norm2_(c.hidden_size, c.layer_norm_eps),
        fc1_(c.hidden_size, c.intermediate_size),
        fc2_(c.intermediate_size, c.hidden_size) {}

  void reset_parameters(Generator& gen) {
    self_attn_.reset_parameters(gen);
    fc1_.reset_parameters(gen);
    fc2_.reset_parameters(gen);
  }

  tensor forward(const tensor& x) {
    tensor h = self_attn_.forward(layer_norm1_.forward(x));  // [B, L, W]
    add_inplace(h, x);
    tensor a = fc1_.forward(layer_norm2_.forward(h));  // [B, L, I]
    tensor y =
        fc2_.forward(act_ == CLIPActivation::quick_gelu ? quick_gelu_.forward(a) : gelu_.forward(a));  // [B, L, W]
    add_inplace(y, h);
    return y;
  }

  tensor backward(const tensor& dy) {
    tensor da = fc2_.backward(dy);  // [B, L, I]
    da = act_ == CLIPActivation::quick_gelu ? quick_gelu_.backward(da) : gelu_.backward(da);
    tensor dh = layer_norm2_.backward(fc1_.backward(da));  // [B, L, W]
    add_inplace(dh, dy);
    tensor dx = layer_norm1_.backward(self_attn_.backward(dh));  // [B, L, W]
    add_inplace(dx, dh);
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    layer_norm1_.visit_parameters(f, nn::join_name(prefix, "layer_norm1"));
    self_attn_.visit_parameters(f, nn::join_name(prefix, "self_attn"));
    layer_norm2_.visit_parameters(f, nn::join_name(prefix, "layer_norm2"));
    fc1_.visit_parameters(f, nn::join_name(prefix, "mlp.fc1"));
    fc2_.visit_parameters(f, nn::join_name(prefix, "mlp.fc2"));
  }

 private:
  CLIPActivation act_ = CLIPActivation::quick_gelu;
  nn::LayerNorm<T, D> layer_norm1_;
  CLIPAttention<T, D> self_attn_;
  nn::LayerNorm<T, D> layer_norm2_;
  nn::Linear<T, D> fc1_, fc2_;
  nn::QuickGELU<T, D> quick_gelu_;
  nn::GELU<T, D> gelu_;
};

/// What a CLIP text encoder returns for B rows of L token ids.
template <StorageScalar T, Device D = cpu>
struct CLIPTextOutput {
  Tensor<T, D> last_hidden_state;           // [B, L, W] final_layer_norm of the last layer's output
  std::vector<Tensor<T, D>> hidden_states;  // N + 1 of [B, L, W] when requested: embeddings, then each layer's output
  Tensor<T, D> pooled;                      // [B, W] last_hidden_state at pool_index
  Tensor<T, D> text_embeds;                 // [B, P] text_projection(pooled); CLIPTextModelWithProjection only
  std::vector<std::int64_t> pool_index;     // [B] see clip_pool_index

  /// hidden_states[-2]: the penultimate layer's output, without the final layer norm (SDXL's conditioning).
  const Tensor<T, D>& penultimate_hidden_state() const {
    SPO_CHECK(hidden_states.size() >= 2,
              "CLIPTextOutput: the penultimate hidden state needs hidden states (forward "
              "with hidden_states = true), got "
                  << hidden_states.size());
    return hidden_states[hidden_states.size() - 2];
  }
};

/*!
  WHAT THIS REPRESENTS
    transformers' CLIPTextTransformer (the `text_model` of both encoders), forward only (SD's encoders are frozen):
      h_0 = token_embedding[ids] + position_embedding[0..L)                // [B, L, W]
      h_i = layer_i(h_{i-1}), i = 1..N, with the causal mask
      last_hidden_state = final_layer_norm(h_N), pooled[b] = last_hidden_state[b, pool_index(ids[b])]
    Keys embeddings.token_embedding.weight [V, W], embeddings.position_embedding.weight [P, W],
    encoder.layers.{i}.*, final_layer_norm.{weight,bias}. Token ids stay on the host; the hidden states live on D.
!*/
template <StorageScalar T, Device D = cpu>
class CLIPTextTransformer {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  CLIPTextTransformer() = default;
  explicit CLIPTextTransformer(const CLIPTextConfig& c)
      : config_(c),
        token_(Shape{c.vocab_size, c.hidden_size}),
        position_(Shape{c.max_position_embeddings, c.hidden_size}),
        final_layer_norm_(c.hidden_size, c.layer_norm_eps) {
    validate(c);
    layers_.reserve(static_cast<std::size_t>(c.num_hidden_layers));
    for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers_.emplace_back(c);
  }

  /// ids: B rows of L token ids, row-major ([B * L]), 1 <= L <= max_position_embeddings.
  CLIPTextOutput<T, D> forward(std::span<const std::int32_t> ids, std::int64_t batch, bool hidden_states = false) {
    nn::no_grad_guard no_grad;
    const std::int64_t n = static_cast<std::int64_t>(ids.size());
    SPO_CHECK(batch >= 1 && n % batch == 0 && n / batch >= 1 && n / batch <= config_.max_position_embeddings,
              "CLIP text encoder: " << n << " token ids for " << batch << " rows; each row needs 1 to "
                                    << config_.max_position_embeddings << " ids (max_position_embeddings)");
    const std::int64_t length = n / batch, width = config_.hidden_size;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t id = ids[static_cast<std::size_t>(i)];
      SPO_CHECK(id >= 0 && id < config_.vocab_size, "CLIP text encoder: token id "
                                                        << id << " (row " << i / length << ", position " << i % length
                                                        << ") outside the vocabulary of " << config_.vocab_size);
    }
    CLIPTextOutput<T, D> out;
    tensor h;  // [B, L, W]
    if (length == config_.max_position_embeddings) {
      h = embedding_lookup(token_.value, position_.value, ids, batch);
    } else {
      auto positions = tensor::uninitialized(Shape{length, width});  // [L, W] the first L positions
      copy_elements<D>(position_.value.data(), length * width, positions.data());
      h = embedding_lookup(token_.value, positions, ids, batch);
    }
    for (auto& layer : layers_) {
      tensor next = layer.forward(h);  // [B, L, W]
      if (hidden_states) out.hidden_states.push_back(std::move(h));
      h = std::move(next);
    }
    out.last_hidden_state = final_layer_norm_.forward(h);  // [B, L, W]
    if (hidden_states) out.hidden_states.push_back(std::move(h));
    out.pooled = tensor::uninitialized(Shape{batch, width});  // [B, W]
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t at =
          clip_pool_index(ids.subspan(static_cast<std::size_t>(b * length), static_cast<std::size_t>(length)), config_);
      out.pool_index.push_back(at);
      copy_elements<D>(out.last_hidden_state.data() + (b * length + at) * width, width, out.pooled.data() + b * width);
    }
    return out;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(nn::join_name(prefix, "embeddings.token_embedding.weight"), token_);
    f(nn::join_name(prefix, "embeddings.position_embedding.weight"), position_);
    for (std::size_t i = 0; i < layers_.size(); ++i)
      layers_[i].visit_parameters(f, nn::join_name(prefix, "encoder.layers." + std::to_string(i)));
    final_layer_norm_.visit_parameters(f, nn::join_name(prefix, "final_layer_norm"));
  }

  const CLIPTextConfig& config() const { return config_; }

 private:
  CLIPTextConfig config_;
  nn::Parameter<T, D> token_, position_;
  std::vector<CLIPEncoderLayer<T, D>> layers_;
  nn::LayerNorm<T, D> final_layer_norm_;
};

/*!
  WHAT THIS REPRESENTS
    transformers' CLIPTextModel (SD1.5's text_encoder, SDXL's text_encoder): the text transformer under
    `text_model.`. SD1.5 conditions on last_hidden_state; SDXL on the penultimate hidden state.
!*/
template <StorageScalar T, Device D = cpu>
class CLIPTextModel {
 public:
  using scalar_type = T;
  using device_type = D;

  CLIPTextModel() = default;
  explicit CLIPTextModel(const CLIPTextConfig& c) : text_model_(c) {}

  /// See CLIPTextTransformer::forward; text_embeds stays empty.
  CLIPTextOutput<T, D> forward(std::span<const std::int32_t> ids, std::int64_t batch, bool hidden_states = false) {
    return text_model_.forward(ids, batch, hidden_states);
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    text_model_.visit_parameters(f, nn::join_name(prefix, "text_model"));
  }

  const CLIPTextConfig& config() const { return text_model_.config(); }
  CLIPTextTransformer<T, D>& text_model() { return text_model_; }

 private:
  CLIPTextTransformer<T, D> text_model_;
};

/*!
  WHAT THIS REPRESENTS
    transformers' CLIPTextModelWithProjection (SDXL's text_encoder_2): CLIPTextModel plus
      text_embeds = text_projection(pooled)  // [B, P], no bias
    Keys `text_model.*` and `text_projection.weight` [P, W]; needs config.projection_dim >= 1.
!*/
template <StorageScalar T, Device D = cpu>
class CLIPTextModelWithProjection {
 public:
  using scalar_type = T;
  using device_type = D;

  CLIPTextModelWithProjection() = default;
  explicit CLIPTextModelWithProjection(const CLIPTextConfig& c)
      : text_model_(c), text_projection_(c.hidden_size, c.projection_dim, false) {
    SPO_CONFIG_CHECK(c.projection_dim >= 1, "text_encoder.projection_dim",
                     "CLIPTextModelWithProjection needs projection_dim >= 1, got " << c.projection_dim);
  }

  /// See CLIPTextTransformer::forward; also text_embeds [B, projection_dim].
  CLIPTextOutput<T, D> forward(std::span<const std::int32_t> ids, std::int64_t batch, bool hidden_states = false) {
    auto out = text_model_.forward(ids, batch, hidden_states);
    nn::no_grad_guard no_grad;
    out.text_embeds = text_projection_.forward(out.pooled);  // [B, P]
    return out;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    text_model_.visit_parameters(f, nn::join_name(prefix, "text_model"));
    text_projection_.visit_parameters(f, nn::join_name(prefix, "text_projection"));
  }

  const CLIPTextConfig& config() const { return text_model_.config(); }
  CLIPTextTransformer<T, D>& text_model() { return text_model_; }

 private:
  CLIPTextTransformer<T, D> text_model_;
  nn::Linear<T, D> text_projection_;
};

}  // namespace spo::text
