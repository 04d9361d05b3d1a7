// SPDX-License-Identifier: MIT
/// @brief LoRA files as users have them (diffusers, legacy attention processors, PEFT, kohya/webui with diffusers or
/// original block names): read against a model, merged into its weights with a scale, or loaded as spo adapters.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/io/tensor_store.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/transfer.hpp"

#define SPO_IO_DETAIL_ORIGINAL_UNET_NAMES_ALLOWED
#include "spo/io/detail/original_unet_names.hpp"
#undef SPO_IO_DETAIL_ORIGINAL_UNET_NAMES_ALLOWED

namespace spo::io {

/// The key conventions of LoRA files (M is a module path in diffusers naming, e.g.
/// `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`):
///   diffusers   `unet.M.lora.down.weight`, `unet.M.lora.up.weight` (what diffusers' save_lora_weights and SPO write)
///   attn_procs  `A.processor.to_q_lora.down.weight` ... for the attention A (to_out_lora is A.to_out.0)
///   peft        `unet.M.lora_A.weight`, `unet.M.lora_B.weight` (also with `base_model.model.` or no prefix)
///   kohya       `lora_unet_<M with '.' -> '_'>.lora_down.weight`, `.lora_up.weight`, `.alpha` (webui files; the
///               original UNet's `input_blocks_*`, `middle_block_*`, `output_blocks_*` names are mapped as well)
enum class LoraLayout { diffusers, attn_procs, peft, kohya };

inline std::string_view layout_name(LoraLayout l) {
  switch (l) {
    case LoraLayout::diffusers:
      return "diffusers";
    case LoraLayout::attn_procs:
      return "diffusers attention processors";
    case LoraLayout::peft:
      return "peft";
    case LoraLayout::kohya:
      return "kohya";
  }
  return "?";
}

/// One low-rank update of module `module`: W [out, in] += scale * (alpha / rank) * up [out, r] @ down [r, in].
struct LoraAdapter {
  std::string module;
  std::string down_key, up_key;  // the tensors in the file
  std::int64_t rank = 0;
  std::optional<double> alpha;  // the file's `.alpha`; none means alpha = rank (diffusers' and peft's default)
  double alpha_over_rank() const { return alpha.value_or(static_cast<double>(rank)) / static_cast<double>(rank); }
};

struct LoraFile {
  LoraLayout layout = LoraLayout::diffusers;
  std::vector<LoraAdapter> adapters;
};

struct LoraReadOptions {
  /// The model component the file's keys are for (`unet.` keys, `lora_unet_` kohya names).
  std::string component = "unet";
  /// layers_per_block of the UNet, to map the original block names (`input_blocks_4_1_...`) of kohya files.
  std::int64_t layers_per_block = 2;
};

/// The modules of `model` a LoRA may target: every `<module>.weight` parameter of shape [out, in] or [out, in, 1, 1]
/// (linear layers and 1x1 convolutions), adapters' own parameters excluded. Module path -> weight shape.
template <ParameterVisitable M>
std::map<std::string, Shape> lora_targets(M& model) {
  std::map<std::string, Shape> out;
  model.visit_parameters(
      [&](std::string_view name, auto& p) {
        if (!name.ends_with(".weight") || name.find(".lora_") != std::string_view::npos) return;
        const Shape& s = p.value.shape();
        if (s.rank() == 2 || (s.rank() == 4 && s[2] == 1 && s[3] == 1))
          out.emplace(std::string(name.substr(0, name.size() - 7)), s);
      },
      {});
  return out;
}

namespace detail {

inline std::string underscored(std::string s) {
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

/// The original UNet's block path (`input_blocks_4_1`, `middle_block_1`, `output_blocks_2_1` ...) at the front of
/// an underscored kohya name, rewritten to diffusers' (`down_blocks_1_attentions_0` ...); nullopt if none.
inline std::optional<std::string> from_original_blocks(std::string_view name, std::int64_t layers) {
  const auto b = original_unet_block(name, layers, '_');
  if (!b) return std::nullopt;
  return b->block + (b->rest.empty() ? "" : "_" + std::string(b->rest));
}

struct LoraKey {
  LoraLayout layout;
  std::string module;  // diffusers path, or the underscored name for kohya (resolved later)
  enum Part { down, up, alpha } part;
};

/// Classifies one key; an error names keys of other components and of adapter types spo does not apply.
inline LoraKey classify_lora_key(std::string_view key, const std::string& component, const std::string& source) {
  auto unsupported = [&](const std::string& why) {
    throw input_error(source + ": LoRA key \"" + std::string(key) + "\": " + why);
  };
  auto ends = [&](std::string_view s, std::string_view suffix, std::string& rest) {
    if (!s.ends_with(suffix)) return false;
    rest = std::string(s.substr(0, s.size() - suffix.size()));
    return true;
  };
  std::string rest;
  if (key.starts_with("lora_")) {  // kohya
    const auto dot = key.find('.');
    if (dot == std::string_view::npos) unsupported("a kohya key needs a '.' suffix");
    const std::string_view name = key.substr(0, dot), suffix = key.substr(dot + 1);
    const std::string prefix = "lora_" + component + "_";
    if (!name.starts_with(prefix))
      unsupported("is for another component (" + std::string(name.substr(0, name.find('_', 5))) + "); only " +
                  component + " adapters are applied");
    LoraKey k{LoraLayout::kohya, std::string(name.substr(prefix.size())), LoraKey::down};
    if (suffix == "lora_down.weight")
      k.part = LoraKey::down;
    else if (suffix == "lora_up.weight")
      k.part = LoraKey::up;
    else if (suffix == "alpha")
      k.part = LoraKey::alpha;
    else
      unsupported("\"" + std::string(suffix) + "\" is not a LoRA tensor (LyCORIS/LoHa/LoKr/DoRA are not supported)");
    return k;
  }
  std::string_view k = key;
  bool has_component = false;
  if (k.starts_with(component + ".")) {
    k.remove_prefix(component.size() + 1);
    has_component = true;
  } else if (k.starts_with("text_encoder") || k.starts_with("te_") || k.starts_with("text_model")) {
    unsupported("is for a text encoder; only " + component + " adapters are applied");
  }
  if (k.starts_with("base_model.model.")) k.remove_prefix(17);
  const std::string_view procs = ".processor.";
  if (const auto p = k.find(procs); p != std::string_view::npos) {
    const std::string attn(k.substr(0, p));
    const std::string_view tail = k.substr(p + procs.size());
    for (const std::string_view proj : {"to_q", "to_k", "to_v", "to_out"}) {
      for (const auto& [suffix, part] : {std::pair{std::string("_lora.down.weight"), LoraKey::down},
                                         std::pair{std::string("_lora.up.weight"), LoraKey::up}}) {
        if (tail == std::string(proj) + suffix)
          return {LoraLayout::attn_procs, attn + "." + (proj == "to_out" ? "to_out.0" : std::string(proj)), part};
      }
    }
    unsupported("is not a LoRA tensor of an attention processor");
  }
  if (ends(k, ".lora.down.weight", rest) || ends(k, ".lora_linear_layer.down.weight", rest))
    return {LoraLayout::diffusers, rest, LoraKey::down};
  if (ends(k, ".lora.up.weight", rest) || ends(k, ".lora_linear_layer.up.weight", rest))
    return {LoraLayout::diffusers, rest, LoraKey::up};
  if (ends(k, ".lora_A.weight", rest) || ends(k, ".lora_A.default.weight", rest))
    return {LoraLayout::peft, rest, LoraKey::down};
  if (ends(k, ".lora_B.weight", rest) || ends(k, ".lora_B.default.weight", rest))
    return {LoraLayout::peft, rest, LoraKey::up};
  if (has_component && ends(k, ".alpha", rest)) return {LoraLayout::diffusers, rest, LoraKey::alpha};
  throw input_error(source + ": LoRA key \"" + std::string(key) +
                    "\": is not a LoRA tensor in any layout spo reads (diffusers, attention processors, peft, kohya)");
}

}  // namespace detail

/*!
  Reads which layout `store` is in and its adapters, resolved against `targets` (lora_targets(model)).
  ENSURES
    - every adapter has a down [r, in] and an up [out, r] tensor (1x1-convolution forms [r, in, 1, 1] and
      [out, r, 1, 1] too) whose in and out are those of the module's weight, and an optional scalar alpha
    - spo::input_error naming the file and the key for: a key of another component (text encoders) or of another
      adapter type, mixed layouts, a module the model does not have, a missing down or up, a rank that differs
      between down and up, shapes that do not fit the module ("the LoRA's base does not fit"), an empty file
!*/
template <TensorStore S>
LoraFile read_lora(const S& store, const std::map<std::string, Shape>& targets, const LoraReadOptions& options = {}) {
  const std::string source = store.source;
  std::optional<LoraLayout> layout;
  std::map<std::string, std::string> kohya_names;  // underscored module -> module
  for (const auto& [m, unused] : targets) kohya_names.emplace(detail::underscored(m), m);
  std::map<std::string, LoraAdapter> by_module;
  for (const auto& key : store.names()) {
    detail::LoraKey k = detail::classify_lora_key(key, options.component, source);
    if (layout && *layout != k.layout)
      throw input_error(source + ": LoRA key \"" + key + "\" is in the " + std::string(layout_name(k.layout)) +
                        " layout, earlier keys in the " + std::string(layout_name(*layout)) + " layout");
    layout = k.layout;
    std::string module = k.module;
    if (k.layout == LoraLayout::kohya) {
      auto it = kohya_names.find(module);
      if (it == kohya_names.end())
        if (const auto mapped = detail::from_original_blocks(module, options.layers_per_block))
          it = kohya_names.find(*mapped);
      if (it == kohya_names.end())
        throw input_error(source + ": LoRA key \"" + key + "\" names module \"" + k.module +
                          "\", which the model does not have (the LoRA's base does not fit)");
      module = it->second;
    } else if (!targets.contains(module)) {
      throw input_error(source + ": LoRA key \"" + key + "\" names module \"" + module +
                        "\", which the model does not have (the LoRA's base does not fit)");
    }
    LoraAdapter& a = by_module[module];
    a.module = module;
    if (k.part == detail::LoraKey::down)
      a.down_key = key;
    else if (k.part == detail::LoraKey::up)
      a.up_key = key;
    else {
      const TensorBytes t = store.bytes(key);
      SPO_EXPECT(t.numel() == 1, source << ": \"" << key << "\" must hold one value, has shape " << t.shape_str());
      a.alpha = read_tensor<double>(store, key)[0];
    }
  }
  SPO_EXPECT(layout.has_value(), source << ": no LoRA tensors in the file");
  LoraFile file{*layout, {}};
  for (auto& [module, a] : by_module) {
    SPO_EXPECT(!a.down_key.empty() && !a.up_key.empty(),
               source << ": module \"" << module << "\" has " << (a.down_key.empty() ? "no down" : "no up")
                      << " tensor (found only " << (a.down_key.empty() ? a.up_key : a.down_key) << ")");
    const Shape& w = targets.at(module);  // [out, in] or [out, in, 1, 1]
    const Shape down = stored_shape(store, a.down_key), up = stored_shape(store, a.up_key);
    const bool conv = w.rank() == 4;
    const bool down_ok = down.rank() == w.rank() && down[1] == w[1] && (!conv || (down[2] == 1 && down[3] == 1));
    const bool up_ok =
        up.rank() == w.rank() && up[0] == w[0] && up[1] == down[0] && (!conv || (up[2] == 1 && up[3] == 1));
    SPO_EXPECT(down_ok && up_ok, source << ": LoRA of \"" << module << "\" does not fit the model: " << a.down_key
                                        << " " << down << " and " << a.up_key << " " << up << " for a weight " << w
                                        << " (the LoRA's base does not fit)");
    a.rank = down[0];
    SPO_EXPECT(a.rank > 0, source << ": \"" << a.down_key << "\" has rank 0");
    file.adapters.push_back(std::move(a));
  }
  return file;
}

/// The update scale * (alpha / r) * up @ down of one adapter as a [out, in] tensor of T on the host.
template <Scalar T, TensorStore S>
Tensor<T, cpu> lora_delta(const S& store, const LoraAdapter& a, double scale) {
  const auto down = read_tensor<double>(store, a.down_key);  // [r, in(, 1, 1)]
  const auto up = read_tensor<double>(store, a.up_key);      // [out, r(, 1, 1)]
  const std::int64_t out = up.size(0), in = down.size(1);
  Tensor<double, cpu> delta(Shape{out, in});  // [out, in]
  gemm(false, false, out, in, a.rank, scale * a.alpha_over_rank(), up, down, 0.0, delta);
  if constexpr (std::same_as<T, double>)
    return delta;
  else {
    auto d = Tensor<T, cpu>::uninitialized(Shape{out, in});
    for (std::int64_t i = 0; i < d.numel(); ++i) d[i] = static_cast<T>(delta[i]);
    return d;
  }
}

/// Merges every adapter into the model's weights, W += scale * (alpha / r) * up @ down, the product formed in
/// double (as for inference with a fused LoRA; scale is the user's LoRA scale); a 16-bit weight takes the sum in float,
/// rounded once. Returns the number of weights changed.
template <ParameterVisitable M, TensorStore S>
std::size_t merge_lora(M& model, const S& store, const LoraFile& file, double scale) {
  std::map<std::string, const LoraAdapter*> by_weight;
  for (const auto& a : file.adapters) by_weight.emplace(a.module + ".weight", &a);
  std::size_t merged = 0;
  model.visit_parameters(
      [&](std::string_view name, auto& p) {
        const auto it = by_weight.find(std::string(name));
        if (it == by_weight.end()) return;
        using T = typename std::remove_cvref_t<decltype(p.value)>::value_type;
        using D = typename std::remove_cvref_t<decltype(p.value)>::device_type;
        using W = std::conditional_t<HalfScalar<T>, float, T>;  // 16-bit weights: the sum in float, rounded once
        const Tensor<W, cpu> delta = lora_delta<W>(store, *it->second, scale);  // [out, in]
        auto add = [&](T* w) {
          for (std::int64_t i = 0; i < delta.numel(); ++i) w[i] = static_cast<T>(static_cast<W>(w[i]) + delta[i]);
        };
        if constexpr (std::same_as<D, cpu>) {
          add(p.value.data());
        } else {
          Tensor<T, cpu> host = to_host(p.value);
          add(host.data());
          detail::assign_from_host(host, p.value.view());
        }
        ++merged;
      },
      {});
  SPO_CHECK(merged == file.adapters.size(),
            store.source << ": merged " << merged << " of " << file.adapters.size() << " LoRA adapters");
  return merged;
}

/*!
  The file's adapters as spo LoRA parameters (`<module>.lora_A.weight` = down [r, in], `<module>.lora_B.weight` =
  up [out, r] rescaled), for a model whose nn::LoRA adapters were attached with one rank r and alpha:
  B' = up * scale * (alpha_file / r_file) / (alpha / r), so that forward equals the file's update at `scale`.
  Load with load_state_dict(model, result, {.strict = false}) after attach.
  REQUIRES every adapter's rank equals `rank` (an error naming the first that does not)
!*/
template <TensorStore S>
NamedTensors lora_adapter_state_dict(const S& store, const LoraFile& file, std::int64_t rank, double alpha,
                                     double scale = 1.0) {
  NamedTensors out;
  out.source = store.source;
  for (const auto& a : file.adapters) {
    SPO_EXPECT(a.rank == rank, store.source << ": adapter \"" << a.module << "\" has rank " << a.rank
                                            << ", the model's adapters rank " << rank);
    auto down = read_tensor<double>(store, a.down_key);
    auto up = read_tensor<double>(store, a.up_key);
    const double factor = scale * a.alpha_over_rank() / (alpha / static_cast<double>(rank));
    for (std::int64_t i = 0; i < up.numel(); ++i) up[i] *= factor;
    down.reshape(Shape{down.size(0), down.size(1)});  // [r, in]
    up.reshape(Shape{up.size(0), up.size(1)});        // [out, r]
    out.set<double>(a.module + ".lora_A.weight", down);
    out.set<double>(a.module + ".lora_B.weight", up);
  }
  return out;
}

}  // namespace spo::io
