// SPDX-License-Identifier: MIT
/// @brief A Stable Diffusion checkpoint as ONE safetensors file in the original (ldm / sgm) layout
/// (`v1-5-pruned-emaonly.safetensors`, `sd_xl_base_1.0.safetensors`): its family detected from its keys, and each
/// component served as a TensorStore under diffusers / transformers names, the bytes as stored.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/mapped_safetensors.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/tensor_store.hpp"

#define SPO_IO_DETAIL_ORIGINAL_UNET_NAMES_ALLOWED
#include "spo/io/detail/original_unet_names.hpp"
#undef SPO_IO_DETAIL_ORIGINAL_UNET_NAMES_ALLOWED

namespace spo::io {

/// What a single-file checkpoint is, read from the prefixes of its text encoders' keys:
///   sd1   cond_stage_model.transformer.text_model.*   CLIP ViT-L/14 (transformers layout)
///   sd2   cond_stage_model.model.*                    OpenCLIP ViT-H/14
///   sdxl  conditioner.embedders.0.transformer.text_model.* (CLIP ViT-L) + conditioner.embedders.1.model.* (OpenCLIP
///         ViT-bigG/14): the SDXL base model
/// Whether a model predicts epsilon or v (SD2.x 768-v, v-prediction fine-tunes) is not in its keys: the scheduler's
/// prediction_type must come from the user or a config.
enum class CheckpointFamily { sd1, sd2, sdxl };

inline std::string_view family_name(CheckpointFamily f) {
  switch (f) {
    case CheckpointFamily::sd1:
      return "SD1.x";
    case CheckpointFamily::sd2:
      return "SD2.x";
    case CheckpointFamily::sdxl:
      return "SDXL base";
  }
  return "?";
}

/*!
  WHAT THIS REPRESENTS
    One component (unet, vae, text_encoder, text_encoder_2) of a single-file checkpoint under its diffusers /
    transformers names: a TensorStore whose tensors are the file's bytes, renamed (most), given a new shape over the
    same bytes (the VAE attention's 1x1 convolutions as linear weights), sliced (OpenCLIP's packed q/k/v projection)
    or, for OpenCLIP's text_projection [w, p] only, transposed into a tensor the component owns ([p, w]).
  ENSURES
    - bytes(name) stays valid while the component lives (it shares the mapped file)
    - source is "<file> (<component>)"; an absent name is an spo::input_error naming it
!*/
class SingleFileComponent {
 public:
  std::string source;

  bool contains(std::string_view name) const { return entries_.find(name) != entries_.end(); }
  std::size_t size() const { return entries_.size(); }
  std::vector<std::string> names() const { return detail::keys_of(entries_); }
  TensorBytes bytes(std::string_view name) const {
    const Entry& e = entry(name);
    return {e.dtype, e.shape, e.transposed ? std::span<const std::byte>(e.owned) : e.data};
  }
  /// The key in the file that `name` is served from.
  const std::string& original_name(std::string_view name) const { return entry(name).original; }
  /// Gives the pages of the file tensor behind `name` back to the kernel (see MappedSafetensors::release).
  void release(std::string_view name) const {
    const Entry& e = entry(name);
    if (!e.transposed) file_->release(e.original);
  }

 private:
  friend class SingleFileCheckpoint;

  struct Entry {
    std::string original;
    Dtype dtype = Dtype::f32;
    std::vector<std::int64_t> shape;
    std::span<const std::byte> data;  // into the mapping, unless transposed
    bool transposed = false;
    std::vector<std::byte> owned;
  };

  const Entry& entry(std::string_view name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw input_error(source + ": no tensor named \"" + std::string(name) + "\"");
    return it->second;
  }

  Entry& add(const std::string& name, const std::string& original) {
    const auto [it, fresh] = entries_.emplace(name, Entry{});
    if (!fresh)
      throw input_error(source + ": tensors \"" + it->second.original + "\" and \"" + original + "\" both map to \"" +
                        name + "\"");
    const TensorBytes t = file_->bytes(original);
    Entry& e = it->second;
    e.original = original;
    e.dtype = t.dtype;
    e.shape.assign(t.shape.begin(), t.shape.end());
    e.data = t.data;
    return e;
  }
  void serve(const std::string& name, const std::string& original) { add(name, original); }
  /// The same bytes under another shape with as many elements.
  void serve_reshaped(const std::string& name, const std::string& original, std::vector<std::int64_t> shape) {
    Entry& e = add(name, original);
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    SPO_EXPECT(n * static_cast<std::int64_t>(dtype_size(e.dtype)) == static_cast<std::int64_t>(e.data.size()),
               source << ": \"" << original << "\" " << shape_string(e.shape) << " cannot serve as \"" << name << "\" "
                      << shape_string(shape));
    e.shape = std::move(shape);
  }
  /// Rows [part * n / parts, (part + 1) * n / parts) of a tensor of n rows: a byte range, no copy.
  void serve_rows(const std::string& name, const std::string& original, std::int64_t part, std::int64_t parts) {
    Entry& e = add(name, original);
    SPO_EXPECT(!e.shape.empty() && e.shape[0] % parts == 0,
               source << ": \"" << original << "\" " << shape_string(e.shape) << " does not split into " << parts
                      << " equal parts along its first dimension");
    const std::size_t bytes = e.data.size() / static_cast<std::size_t>(parts);
    e.data = e.data.subspan(static_cast<std::size_t>(part) * bytes, bytes);
    e.shape[0] /= parts;
  }
  /// A matrix [r, c] served as its transpose [c, r], converted once into owned bytes.
  void serve_transposed(const std::string& name, const std::string& original) {
    Entry& e = add(name, original);
    SPO_EXPECT(e.shape.size() == 2,
               source << ": \"" << original << "\" must be a matrix, has shape " << shape_string(e.shape));
    const std::size_t rows = static_cast<std::size_t>(e.shape[0]), cols = static_cast<std::size_t>(e.shape[1]);
    const std::size_t width = dtype_size(e.dtype);
    e.owned.resize(e.data.size());
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c)
        std::memcpy(e.owned.data() + (c * rows + r) * width, e.data.data() + (r * cols + c) * width, width);
    e.shape = {e.shape[1], e.shape[0]};  // [c, r]
    e.transposed = true;
  }

  std::shared_ptr<const MappedSafetensors> file_;
  std::map<std::string, Entry, std::less<>> entries_;
};
static_assert(TensorStore<SingleFileComponent>);

namespace detail::single_file {

/// The dot-separated parts of a key.
inline std::vector<std::string_view> split(std::string_view key) {
  std::vector<std::string_view> parts;
  for (std::size_t begin = 0;;) {
    const std::size_t dot = key.find('.', begin);
    parts.push_back(key.substr(begin, dot == std::string_view::npos ? std::string_view::npos : dot - begin));
    if (dot == std::string_view::npos) return parts;
    begin = dot + 1;
  }
}

/// A non-negative decimal index (digits only), else nullopt.
inline std::optional<std::int64_t> index(std::string_view s) {
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || s.empty() || s.front() == '-') return std::nullopt;
  return v;
}

inline bool is_param(std::string_view s) { return s == "weight" || s == "bias"; }

/// The UNet resnet's parameter `in_layers.0.weight` ... under diffusers' name (`norm1.weight` ...).
inline std::optional<std::string> unet_resnet_param(std::string_view rest) {
  static constexpr std::pair<std::string_view, std::string_view> names[] = {
      {"in_layers.0.", "norm1."},  {"in_layers.2.", "conv1."},  {"emb_layers.1.", "time_emb_proj."},
      {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."}};
  for (const auto& [original, diffusers] : names)
    if (rest.starts_with(original) && is_param(rest.substr(original.size())))
      return std::string(diffusers) + std::string(rest.substr(original.size()));
  return std::nullopt;
}

/// The diffusers name of one UNet key (without `model.diffusion_model.`), for `layers` resnets per down level.
inline std::optional<std::string> unet_name(std::string_view key, std::int64_t layers, bool sdxl) {
  static constexpr std::pair<std::string_view, std::string_view> fixed[] = {
      {"time_embed.0.", "time_embedding.linear_1."},
      {"time_embed.2.", "time_embedding.linear_2."},
      {"input_blocks.0.0.", "conv_in."},
      {"out.0.", "conv_norm_out."},
      {"out.2.", "conv_out."},
      {"label_emb.0.0.", "add_embedding.linear_1."},
      {"label_emb.0.2.", "add_embedding.linear_2."}};
  for (const auto& [original, diffusers] : fixed)
    if (key.starts_with(original) && is_param(key.substr(original.size()))) {
      if (original.starts_with("label_emb") && !sdxl) return std::nullopt;
      return std::string(diffusers) + std::string(key.substr(original.size()));
    }
  const auto b = detail::original_unet_block(key, layers, '.');
  if (!b || b->rest.empty()) return std::nullopt;
  const std::string_view rest = b->rest;
  switch (b->kind) {
    case OriginalUnetBlock::resnet:
      if (const auto p = unet_resnet_param(rest)) return b->block + "." + *p;
      return std::nullopt;
    case OriginalUnetBlock::attention:
      return b->block + "." + std::string(rest);
    case OriginalUnetBlock::downsampler:
      if (rest.starts_with("op.") && is_param(rest.substr(3))) return b->block + ".conv." + std::string(rest.substr(3));
      return std::nullopt;
    case OriginalUnetBlock::upsampler:
      if (rest.starts_with("conv.") && is_param(rest.substr(5)) && key.starts_with("output_blocks."))
        return b->block + "." + std::string(rest);
      return std::nullopt;
  }
  return std::nullopt;
}

/// The VAE resnet's parameter (`nin_shortcut` is diffusers' `conv_shortcut`).
inline std::optional<std::string> vae_resnet_param(std::span<const std::string_view> p) {
  if (p.size() != 2 || !is_param(p[1])) return std::nullopt;
  if (p[0] == "norm1" || p[0] == "conv1" || p[0] == "norm2" || p[0] == "conv2")
    return std::string(p[0]) + "." + std::string(p[1]);
  if (p[0] == "nin_shortcut") return "conv_shortcut." + std::string(p[1]);
  return std::nullopt;
}

}  // namespace detail::single_file

/*!
  WHAT THIS REPRESENTS
    A Stable Diffusion checkpoint in one safetensors file in the original layout, mapped (never read whole), its
    family detected (CheckpointFamily) and its components served as TensorStores under diffusers / transformers names:
      unet            model.diffusion_model.*: time_embed.0/2 -> time_embedding.linear_1/2, label_emb.0.0/0.2 ->
                      add_embedding.linear_1/2 (SDXL), input_blocks.0.0 -> conv_in, input_blocks / middle_block /
                      output_blocks -> down_blocks / mid_block / up_blocks (detail::original_unet_block, resnets'
                      in_layers.0/2, emb_layers.1, out_layers.0/3, skip_connection -> norm1, conv1, time_emb_proj,
                      norm2, conv2, conv_shortcut; op -> downsamplers.0.conv), out.0/2 -> conv_norm_out / conv_out;
                      layers_per_block is read from where the first downsampler sits, and checked against every block
      vae             first_stage_model.*: encoder.down.i.block.j -> encoder.down_blocks.i.resnets.j, downsample ->
                      downsamplers.0, decoder.up.k -> decoder.up_blocks.(n-1-k) (reversed), upsample -> upsamplers.0,
                      mid.block_1/2 -> mid_block.resnets.0/1, mid.attn_1.{norm, q, k, v, proj_out} ->
                      mid_block.attentions.0.{group_norm, to_q, to_k, to_v, to_out.0} ([c, c, 1, 1] served as
                      [c, c]), nin_shortcut -> conv_shortcut, norm_out -> conv_norm_out
      text_encoder    SD1.x / SDXL: the CLIP ViT-L text model (already in transformers layout: the prefix is dropped);
                      SD2.x: OpenCLIP ViT-H mapped to transformers' CLIPTextModel
      text_encoder_2  SDXL: OpenCLIP ViT-bigG mapped to CLIPTextModelWithProjection
    OpenCLIP: token_embedding -> text_model.embeddings.token_embedding, positional_embedding ->
    text_model.embeddings.position_embedding.weight, transformer.resblocks.i.{ln_1, ln_2, attn.out_proj, mlp.c_fc,
    mlp.c_proj} -> text_model.encoder.layers.i.{layer_norm1, layer_norm2, self_attn.out_proj, mlp.fc1, mlp.fc2},
    attn.in_proj_weight [3w, w] / in_proj_bias [3w] -> self_attn.{q, k, v}_proj (thirds, no copy), ln_final ->
    text_model.final_layer_norm, text_projection [w, p] -> text_projection.weight [p, w]. For SD2.x, as diffusers'
    converter does, the last resblock and text_projection are not served (SD2 conditions on the penultimate layer;
    diffusers' SD2 text encoder has 23 of ViT-H's 24 layers and no projection).
    Not served, by design: model_ema.* (EMA copies), the DDPM schedule buffers real files carry (betas,
    alphas_cumprod, ...), text_model.embeddings.position_ids (a buffer), OpenCLIP's logit_scale and attn_mask, the
    VAE's training loss (first_stage_model.loss.*).
    The bytes are served as stored (F32, F16 and BF16 files alike); dtype() says which floating type holds most of
    the weights.
  ENSURES
    - a file of no known family (SD1.x, SD2.x, SDXL base), an SDXL refiner, a key outside every component and the
      ignored entries above, or a key of a component that has no diffusers name: spo::input_error naming the file and
      the keys (at most 10, with the count)
    - component(name): an error naming the family and its components for a name it does not have, and naming the
      missing prefix when the file lacks that component's tensors
    - a tensor a model needs that the file lacks surfaces in load_state_dict's strict check (components serve what
      exists)
!*/
class SingleFileCheckpoint {
 public:
  explicit SingleFileCheckpoint(const std::filesystem::path& path)
      : path_(path), file_(std::make_shared<const MappedSafetensors>(path)) {
    const std::vector<std::string> keys = file_->names();
    auto any = [&](std::string_view prefix) {
      for (const auto& k : keys)
        if (k.starts_with(prefix)) return true;
      return false;
    };
    if (any("conditioner.embedders.0.transformer.text_model.") && any("conditioner.embedders.1.model."))
      family_ = CheckpointFamily::sdxl;
    else if (any("cond_stage_model.model."))
      family_ = CheckpointFamily::sd2;
    else if (any("cond_stage_model.transformer.text_model."))
      family_ = CheckpointFamily::sd1;
    else if (any("conditioner.embedders.0.model."))
      throw input_error(source() +
                        ": an SDXL refiner checkpoint (conditioner.embedders.0.model.* only), which spo "
                        "does not read");
    else
      throw input_error(source() +
                        ": not a Stable Diffusion checkpoint in the original layout that spo reads: no text encoder "
                        "keys of SD1.x (cond_stage_model.transformer.text_model.*), SD2.x (cond_stage_model.model.*) "
                        "or SDXL base (conditioner.embedders.0.transformer.text_model.* and "
                        "conditioner.embedders.1.model.*); the file's prefixes: " +
                        prefixes(keys));

    std::map<std::string, std::vector<std::string>> by_component;  // component -> its keys without the prefix
    std::vector<std::string> stray;
    for (const auto& k : keys) {
      if (ignored(k)) continue;
      bool placed = false;
      for (const auto& [component, prefix] : prefixes_of(family_))
        if (k.starts_with(prefix)) {
          by_component[component].push_back(k.substr(prefix.size()));
          placed = true;
          break;
        }
      if (!placed) stray.push_back(k);
    }
    if (!stray.empty())
      throw input_error(source() + ": " + std::to_string(stray.size()) + " keys belong to no component of an " +
                        std::string(family_name(family_)) + " checkpoint: " + listed(stray));

    for (const auto& [component, prefix] : prefixes_of(family_)) {
      SingleFileComponent c;
      c.source = source() + " (" + component + ")";
      c.file_ = file_;
      const auto it = by_component.find(component);
      if (it == by_component.end()) continue;
      std::vector<std::string> unknown;
      if (component == "unet")
        map_unet(c, prefix, it->second, unknown);
      else if (component == "vae")
        map_vae(c, prefix, it->second, unknown);
      else if (family_ == CheckpointFamily::sd1 || (family_ == CheckpointFamily::sdxl && component == "text_encoder"))
        map_clip(c, prefix, it->second, unknown);
      else
        map_open_clip(c, prefix, it->second, family_ == CheckpointFamily::sdxl, unknown);
      if (!unknown.empty())
        throw input_error(c.source + ": " + std::to_string(unknown.size()) + " keys under " + prefix +
                          " have no diffusers name: " + listed(unknown));
      components_.emplace(component, std::move(c));
    }
  }

  /// The path as given: the prefix of every error message.
  std::string source() const { return path_.string(); }
  CheckpointFamily family() const { return family_; }
  /// The UNet's layers_per_block, read from its block layout (0 when the file has no UNet).
  std::int64_t layers_per_block() const { return layers_per_block_; }
  /// The floating dtype holding most elements of the served tensors (F32, F16 or BF16 files; the bytes are served
  /// as stored, the loader converts them to the compute type).
  Dtype dtype() const {
    std::map<Dtype, std::int64_t> elements;
    for (const auto& [unused, c] : components_)
      for (const auto& [name, e] : c.entries_)
        if (is_floating(e.dtype)) elements[e.dtype] += c.bytes(name).numel();
    Dtype best = Dtype::f32;
    std::int64_t most = -1;
    for (const auto& [d, n] : elements)
      if (n > most) {
        best = d;
        most = n;
      }
    return best;
  }
  /// The components of the family, whether present in the file or not (unet, vae, text_encoder[, text_encoder_2]).
  std::vector<std::string> component_names() const {
    std::vector<std::string> out;
    for (const auto& [component, unused] : prefixes_of(family_)) out.push_back(component);
    return out;
  }
  bool has(std::string_view component) const { return components_.contains(std::string(component)); }
  const SingleFileComponent& component(std::string_view name) const {
    if (const auto it = components_.find(std::string(name)); it != components_.end()) return it->second;
    std::string all;
    for (const auto& [component, prefix] : prefixes_of(family_)) {
      if (component == name)
        throw input_error(source() + ": the " + std::string(family_name(family_)) + " checkpoint has no " + component +
                          " (no " + prefix + "* tensors)");
      all += (all.empty() ? "" : ", ") + component;
    }
    throw input_error(source() + ": an " + std::string(family_name(family_)) + " checkpoint has no component \"" +
                      std::string(name) + "\" (its components: " + all + ")");
  }

 private:
  static std::vector<std::pair<std::string, std::string>> prefixes_of(CheckpointFamily f) {
    std::vector<std::pair<std::string, std::string>> out{{"unet", "model.diffusion_model."},
                                                         {"vae", "first_stage_model."}};
    switch (f) {
      case CheckpointFamily::sd1:
        out.emplace_back("text_encoder", "cond_stage_model.transformer.");
        break;
      case CheckpointFamily::sd2:
        out.emplace_back("text_encoder", "cond_stage_model.model.");
        break;
      case CheckpointFamily::sdxl:
        out.emplace_back("text_encoder", "conditioner.embedders.0.transformer.");
        out.emplace_back("text_encoder_2", "conditioner.embedders.1.model.");
        break;
    }
    return out;
  }

  /// Entries real files carry besides the models: EMA copies, the DDPM schedule, the denoiser's sigmas.
  static bool ignored(std::string_view key) {
    static constexpr std::string_view schedule[] = {"betas",
                                                    "alphas_cumprod",
                                                    "alphas_cumprod_prev",
                                                    "sqrt_alphas_cumprod",
                                                    "sqrt_one_minus_alphas_cumprod",
                                                    "log_one_minus_alphas_cumprod",
                                                    "sqrt_recip_alphas_cumprod",
                                                    "sqrt_recipm1_alphas_cumprod",
                                                    "posterior_variance",
                                                    "posterior_log_variance_clipped",
                                                    "posterior_mean_coef1",
                                                    "posterior_mean_coef2",
                                                    "logvar",
                                                    "denoiser.sigmas"};
    if (key.starts_with("model_ema.") || key.starts_with("first_stage_model.loss.")) return true;
    for (const auto s : schedule)
      if (key == s) return true;
    return false;
  }

  static std::string listed(const std::vector<std::string>& keys) {
    std::string out;
    for (std::size_t i = 0; i < keys.size() && i < 10; ++i) out += (i ? ", " : "") + keys[i];
    if (keys.size() > 10) out += ", ... (" + std::to_string(keys.size() - 10) + " more)";
    return out;
  }

  static std::string prefixes(const std::vector<std::string>& keys) {
    std::set<std::string> heads;
    for (const auto& k : keys) heads.insert(k.substr(0, k.find('.')));
    std::string out;
    for (const auto& h : heads) out += (out.empty() ? "" : ", ") + h;
    return out.empty() ? "(none: the file is empty)" : out;
  }

  void map_unet(SingleFileComponent& c, const std::string& prefix, const std::vector<std::string>& keys,
                std::vector<std::string>& unknown) {
    layers_per_block_ = unet_layers(c.source, keys);
    for (const auto& k : keys) {
      if (const auto name = detail::single_file::unet_name(k, layers_per_block_, family_ == CheckpointFamily::sdxl))
        c.serve(*name, prefix + k);
      else
        unknown.push_back(prefix + k);
    }
  }

  /// layers_per_block from the block indices: input_blocks 0 .. n(L+1)-1 with a downsampler at every multiple of
  /// L+1, as many output_blocks.
  static std::int64_t unet_layers(const std::string& source, const std::vector<std::string>& keys) {
    std::set<std::int64_t> in, out, ops;
    for (const auto& k : keys) {
      const auto p = detail::single_file::split(k);
      if (p.size() < 3) continue;
      const auto i = detail::single_file::index(p[1]);
      if (!i) continue;
      if (p[0] == "input_blocks") in.insert(*i);
      if (p[0] == "output_blocks") out.insert(*i);
      if (p[0] == "input_blocks" && p[2] == "0" && p.size() > 3 && p[3] == "op") ops.insert(*i);
    }
    SPO_EXPECT(!in.empty() && !out.empty(),
               source << ": the UNet has no " << (in.empty() ? "input_blocks" : "output_blocks") << ".* tensors");
    const std::int64_t blocks = *in.rbegin() + 1;
    const std::int64_t layers = ops.empty() ? blocks - 1 : *ops.begin() - 1;
    bool fits = layers >= 1 && blocks % (layers + 1) == 0 && static_cast<std::int64_t>(in.size()) == blocks &&
                static_cast<std::int64_t>(out.size()) == blocks && *out.rbegin() + 1 == blocks;
    for (std::int64_t k = 1; fits && k < blocks / (layers + 1); ++k) fits = ops.contains(k * (layers + 1));
    fits = fits && static_cast<std::int64_t>(ops.size()) == blocks / (layers + 1) - 1;
    SPO_EXPECT(fits, source << ": the UNet's blocks fit no layers_per_block: input_blocks 0.." << blocks - 1 << " ("
                            << in.size() << " present), output_blocks 0.." << *out.rbegin() << " (" << out.size()
                            << " present), downsamplers (input_blocks.i.0.op) at " << ops.size()
                            << " indices, the first at " << (ops.empty() ? -1 : *ops.begin()));
    return layers;
  }

  static void map_vae(SingleFileComponent& c, const std::string& prefix, const std::vector<std::string>& keys,
                      std::vector<std::string>& unknown) {
    using detail::single_file::index;
    using detail::single_file::is_param;
    using detail::single_file::vae_resnet_param;
    std::int64_t up_levels = 0;
    for (const auto& k : keys) {
      const auto p = detail::single_file::split(k);
      if (p.size() > 3 && p[0] == "decoder" && p[1] == "up")
        if (const auto i = index(p[2])) up_levels = std::max(up_levels, *i + 1);
    }
    static constexpr std::pair<std::string_view, std::string_view> attention[] = {
        {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};
    for (const auto& k : keys) {
      const auto p = detail::single_file::split(k);
      const std::string original = prefix + k;
      const std::size_t n = p.size();
      const bool coder = n >= 3 && (p[0] == "encoder" || p[0] == "decoder");
      const std::string part = coder ? std::string(p[0]) : "";
      std::optional<std::string> name;
      bool served = false;
      if ((n == 2 && (p[0] == "quant_conv" || p[0] == "post_quant_conv") && is_param(p[1])) ||
          (coder && n == 3 && (p[1] == "conv_in" || p[1] == "conv_out") && is_param(p[2]))) {
        name = k;
      } else if (coder && n == 3 && p[1] == "norm_out" && is_param(p[2])) {
        name = part + ".conv_norm_out." + std::string(p[2]);
      } else if (coder && n == 5 && p[1] == "mid" && (p[2] == "block_1" || p[2] == "block_2")) {
        if (const auto r = vae_resnet_param(std::span(p).subspan(3)))
          name = part + ".mid_block.resnets." + (p[2] == "block_1" ? "0." : "1.") + *r;
      } else if (coder && n == 5 && p[1] == "mid" && p[2] == "attn_1" && is_param(p[4])) {
        for (const auto& [from, to] : attention) {
          if (p[3] != from) continue;
          const std::string target = part + ".mid_block.attentions.0." + std::string(to) + "." + std::string(p[4]);
          const TensorBytes t = c.file_->bytes(original);
          if (from != "norm" && p[4] == "weight" && t.shape.size() == 4 && t.shape[2] == 1 && t.shape[3] == 1)
            c.serve_reshaped(target, original, {t.shape[0], t.shape[1]});  // [c, c, 1, 1] -> [c, c]
          else
            c.serve(target, original);
          served = true;
        }
      } else if (coder && n >= 5 && ((p[0] == "encoder" && p[1] == "down") || (p[0] == "decoder" && p[1] == "up"))) {
        const auto level = index(p[2]);
        const bool down = p[0] == "encoder";
        const std::string served_level = level ? std::to_string(down ? *level : up_levels - 1 - *level) : std::string();
        const std::string blocks = down ? ".down_blocks." : ".up_blocks.";
        if (level && n == 7 && p[3] == "block" && index(p[4])) {
          if (const auto r = vae_resnet_param(std::span(p).subspan(5)))
            name = part + blocks + served_level + ".resnets." + std::string(p[4]) + "." + *r;
        } else if (level && n == 6 && p[3] == (down ? "downsample" : "upsample") && p[4] == "conv" && is_param(p[5])) {
          name = part + blocks + served_level + (down ? ".downsamplers.0.conv." : ".upsamplers.0.conv.") +
                 std::string(p[5]);
        }
      }
      if (name)
        c.serve(*name, original);
      else if (!served)
        unknown.push_back(original);
    }
  }

  /// CLIP ViT-L stored in transformers' layout: `text_model.*` as is.
  static void map_clip(SingleFileComponent& c, const std::string& prefix, const std::vector<std::string>& keys,
                       std::vector<std::string>& unknown) {
    for (const auto& k : keys) {
      if (k == "text_model.embeddings.position_ids") continue;  // a buffer, not a weight
      if (k.starts_with("text_model."))
        c.serve(k, prefix + k);
      else
        unknown.push_back(prefix + k);
    }
  }

  /// OpenCLIP's text tower as transformers' CLIPTextModel(WithProjection); without projection (SD2.x) the last
  /// resblock and text_projection are left out, as diffusers' converter does.
  static void map_open_clip(SingleFileComponent& c, const std::string& prefix, const std::vector<std::string>& keys,
                            bool with_projection, std::vector<std::string>& unknown) {
    using detail::single_file::index;
    using detail::single_file::is_param;
    std::int64_t layers = 0;
    for (const auto& k : keys) {
      const auto p = detail::single_file::split(k);
      if (p.size() > 3 && p[0] == "transformer" && p[1] == "resblocks")
        if (const auto i = index(p[2])) layers = std::max(layers, *i + 1);
    }
    static constexpr std::pair<std::string_view, std::string_view> inner[] = {{"ln_1", "layer_norm1"},
                                                                              {"ln_2", "layer_norm2"},
                                                                              {"attn.out_proj", "self_attn.out_proj"},
                                                                              {"mlp.c_fc", "mlp.fc1"},
                                                                              {"mlp.c_proj", "mlp.fc2"}};
    for (const auto& k : keys) {
      const std::string original = prefix + k;
      if (k == "logit_scale" || k == "attn_mask") continue;
      if (k == "token_embedding.weight") {
        c.serve("text_model.embeddings.token_embedding.weight", original);
        continue;
      }
      if (k == "positional_embedding") {
        c.serve("text_model.embeddings.position_embedding.weight", original);
        continue;
      }
      if (k == "ln_final.weight" || k == "ln_final.bias") {
        c.serve("text_model.final_layer_norm." + k.substr(9), original);
        continue;
      }
      if (k == "text_projection") {
        if (with_projection) c.serve_transposed("text_projection.weight", original);  // [w, p] -> [p, w]
        continue;
      }
      const auto p = detail::single_file::split(k);
      const auto layer = p.size() >= 4 && p[0] == "transformer" && p[1] == "resblocks" ? index(p[2]) : std::nullopt;
      if (!layer) {
        unknown.push_back(original);
        continue;
      }
      if (!with_projection && *layer == layers - 1) continue;
      const std::string served = "text_model.encoder.layers." + std::string(p[2]) + ".";
      const std::string rest = k.substr(("transformer.resblocks." + std::string(p[2]) + ".").size());
      if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
        const std::string param = rest == "attn.in_proj_weight" ? "weight" : "bias";
        const char* const projections[] = {"q_proj.", "k_proj.", "v_proj."};
        for (std::int64_t part = 0; part < 3; ++part)
          c.serve_rows(served + "self_attn." + projections[part] + param, original, part, 3);  // [w(, w)]
        continue;
      }
      bool mapped = false;
      for (const auto& [from, to] : inner) {
        const std::string head = std::string(from) + ".";
        if (rest.starts_with(head) && is_param(std::string_view(rest).substr(head.size()))) {
          c.serve(served + std::string(to) + rest.substr(from.size()), original);
          mapped = true;
        }
      }
      if (!mapped) unknown.push_back(original);
    }
  }

  std::filesystem::path path_;
  std::shared_ptr<const MappedSafetensors> file_;
  CheckpointFamily family_ = CheckpointFamily::sd1;
  std::int64_t layers_per_block_ = 0;
  std::map<std::string, SingleFileComponent> components_;
};

}  // namespace spo::io
