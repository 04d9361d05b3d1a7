// SPDX-License-Identifier: MIT
/// @brief State dicts: the parameters of any object with visit_parameters, saved to and loaded from safetensors by
/// name.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/tensor_store.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::io {

/// Objects whose parameters can be enumerated as (name, Parameter&) (every nn::Layer, whole models, LoRA wrappers).
template <class M>
concept ParameterVisitable = requires(M& m) {
  m.visit_parameters([](std::string_view, auto&) {}, std::string_view{});
};

struct StateDictSaveOptions {
  /// Storage type of floating-point parameters; nullopt keeps the native type (float -> F32, double -> F64).
  std::optional<Dtype> dtype;
  /// Only trainable parameters (e.g. a LoRA-only file).
  bool trainable_only = false;
  /// Prepended to every key as "prefix.name".
  std::string prefix;
};

struct StateDictLoadOptions {
  /// Strict: every parameter must be present and no unexpected key may exist (torch's load_state_dict(strict=True)).
  /// Non-strict: missing parameters keep their values and unexpected keys are ignored; both are reported.
  bool strict = true;
  /// Only keys starting with "prefix." are considered, with the prefix removed.
  std::string prefix;
  /// Every loaded floating-point tensor is scanned for NaN and infinities, in its stored dtype, and one is an error
  /// naming the file, the tensor, the element and its kind. False skips the scan.
  bool check_finite = true;
};

/// What a load matched (torch's `_IncompatibleKeys`).
struct StateDictLoadResult {
  std::vector<std::string> loaded, missing, unexpected;
};

namespace detail {
/// Throws spo::input_error naming `dict.source`, `key` and the first NaN or infinity of that tensor, if it has one.
template <TensorStore S>
void expect_finite(const S& dict, const std::string& key) {
  const TensorBytes t = dict.bytes(key);
  if (const auto bad = find_non_finite(t))
    throw input_error(dict.source + ": tensor \"" + key + "\" (" + std::string(dtype_name(t.dtype)) + " " +
                      t.shape_str() + "): element " + std::to_string(bad->index) + " is " + std::string(bad->kind) +
                      " (non-finite values cannot be loaded)");
}

/// The first element of `t` that is finite as stored but overflows the 16-bit scalar T when rounded into it (F32 or
/// F64 values beyond half's 65504, say); nullopt when none does or the dtype is T's own.
template <HalfScalar T>
std::optional<std::pair<std::int64_t, double>> first_overflow(const TensorBytes& t) {
  if (t.dtype == native_dtype<T> || (t.dtype == Dtype::f16 && std::same_as<T, bfloat16>)) return std::nullopt;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const double x = detail::decode_element<double>(t.dtype, t.data.data(), i);
    if (std::isfinite(x) && !std::isfinite(static_cast<float>(convert_scalar<T>(x)))) return std::pair{i, x};
  }
  return std::nullopt;
}

/// Lets a store that maps its file give the pages of `key` back once read (see MappedSafetensors::release).
template <TensorStore S>
void release(const S& dict, const std::string& key) {
  if constexpr (requires { dict.release(key); }) dict.release(key);
}

inline std::string key_list(const std::vector<std::string>& keys) {
  std::ostringstream os;
  for (std::size_t i = 0; i < keys.size(); ++i) os << (i ? ", " : "") << '"' << keys[i] << '"';
  return os.str();
}

/*
  Device tensors in files: files are written from and read into host memory, and a tensor on a device without host
  access passes through a host copy made by the device's transfer functions, to_host(const Tensor<T, D>&) and
  copy_to_device(TensorView<const T, cpu>, TensorView<T, D>). They are found by argument-dependent lookup in the
  device's memory header (spo/tensor/cuda/memory.hpp for spo::cuda), which every use of Tensor<T, D> includes, so
  these CPU headers need no device headers. CPU tensors are used in place: no copies.
*/

/// `t` readable on the host: t itself on the CPU, otherwise a host copy.
template <StorageScalar T, Device D>
decltype(auto) host_readable(const Tensor<T, D>& t) {
  if constexpr (std::same_as<D, cpu>)
    return (t);  // const Tensor<T, cpu>&
  else
    return to_host(t);  // Tensor<T, cpu>
}

/// dst = src elementwise for a host `src` and a `dst` of the same shape on any device.
template <StorageScalar T, Device D>
void assign_from_host(const Tensor<T, cpu>& src, TensorView<T, D> dst) {
  check_same_shape(src.shape(), dst.shape(), "assign_from_host");
  if constexpr (std::same_as<D, cpu>)
    std::copy(src.data(), src.data() + src.numel(), dst.data());
  else
    copy_to_device(src.view(), dst);
}

}  // namespace detail

/// Adds every parameter's value to `out` under "prefix.name" (device parameters through a host copy).
template <ParameterVisitable M>
void append_state_dict(M& model, NamedTensors& out, const StateDictSaveOptions& options = {}) {
  model.visit_parameters(
      [&](std::string_view name, auto& p) {
        using T = typename std::remove_cvref_t<decltype(p.value)>::value_type;
        using D = typename std::remove_cvref_t<decltype(p.value)>::device_type;
        if (options.trainable_only && !p.trainable) return;
        if constexpr (std::same_as<D, cpu>) {
          out.set<T>(std::string(name), p.value.view(), options.dtype.value_or(native_dtype<T>));
        } else {
          const Tensor<T, cpu> host = detail::host_readable(p.value);
          out.set<T>(std::string(name), host.view(), options.dtype.value_or(native_dtype<T>));
        }
      },
      options.prefix);
}

template <ParameterVisitable M>
NamedTensors state_dict(M& model, const StateDictSaveOptions& options = {}) {
  NamedTensors out;
  append_state_dict(model, out, options);
  return out;
}

/// Writes the state dict atomically, with `metadata` as the file's __metadata__.
template <ParameterVisitable M>
void save_state_dict(const std::filesystem::path& path, M& model, const StateDictSaveOptions& options = {},
                     std::map<std::string, std::string> metadata = {}) {
  NamedTensors t = state_dict(model, options);
  t.source = path.string();
  t.metadata = std::move(metadata);
  save_safetensors(path, t);
}

/// Checks `dict` against the model without changing anything: the returned lists say which keys would load.
/// Throws spo::input_error naming `dict.source` when a shape differs (always, listing every offending key with both
/// shapes), when strict, when keys are missing or unexpected (listing them), and, with options.check_finite, when a
/// tensor that would load holds a NaN or an infinity (naming the tensor, the first such element and its kind).
template <ParameterVisitable M, TensorStore S>
StateDictLoadResult check_state_dict(M& model, const S& dict, const StateDictLoadOptions& options = {}) {
  StateDictLoadResult r;
  std::vector<std::string> mismatched;
  std::set<std::string, std::less<>> seen;
  const std::string prefix = options.prefix.empty() ? "" : options.prefix + ".";
  model.visit_parameters(
      [&](std::string_view name, auto& p) {
        const std::string key = prefix + std::string(name);
        seen.insert(key);
        if (!dict.contains(key)) {
          r.missing.emplace_back(name);
          return;
        }
        const TensorBytes st = dict.bytes(key);
        const Shape& want = p.value.shape();
        const bool same_shape = static_cast<int>(st.shape.size()) == want.rank() &&
                                std::equal(st.shape.begin(), st.shape.end(), want.begin());
        if (!same_shape) {
          mismatched.push_back("\"" + key + "\": file has " + st.shape_str() + ", model has " + want.str());
        } else if (!is_floating(st.dtype)) {
          mismatched.push_back("\"" + key + "\": dtype " + std::string(dtype_name(st.dtype)) +
                               " is not floating point");
        } else {
          using T = typename std::remove_cvref_t<decltype(p.value)>::value_type;
          if constexpr (HalfScalar<T>) {
            if (const auto o = detail::first_overflow<T>(st)) {
              std::ostringstream os;
              os << "\"" << key << "\": element " << o->first << " (" << o->second << ") overflows "
                 << (std::same_as<T, half> ? "half" : "bfloat16") << " (stored as " << dtype_name(st.dtype) << ")";
              mismatched.push_back(os.str());
              return;
            }
          }
          r.loaded.emplace_back(name);
        }
      },
      {});
  for (const auto& key : dict.names()) {
    if (!key.starts_with(prefix) || seen.contains(key)) continue;
    r.unexpected.push_back(key.substr(prefix.size()));
  }
  if (!mismatched.empty()) {
    std::string msg = dict.source + ": state dict does not fit the model: ";
    for (std::size_t i = 0; i < mismatched.size(); ++i) msg += (i ? "; " : "") + mismatched[i];
    throw input_error(msg);
  }
  if (options.strict && (!r.missing.empty() || !r.unexpected.empty())) {
    std::string msg = dict.source + ": state dict does not match the model (strict):";
    if (!r.missing.empty()) msg += " missing keys " + detail::key_list(r.missing) + ";";
    if (!r.unexpected.empty()) msg += " unexpected keys " + detail::key_list(r.unexpected) + ";";
    if (!prefix.empty()) msg += " (key prefix \"" + prefix + "\")";
    throw input_error(msg);
  }
  if (options.check_finite)
    for (const auto& name : r.loaded) {
      detail::expect_finite(dict, prefix + name);
      detail::release(dict, prefix + name);
    }
  return r;
}

/// Loads matching parameters, converting the stored dtype to the parameter's scalar type (device parameters are
/// filled from a host copy). All checks (check_state_dict, the NaN/infinity scan included) run before any parameter
/// changes, so a failed load leaves the model untouched.
template <ParameterVisitable M, TensorStore S>
StateDictLoadResult load_state_dict(M& model, const S& dict, const StateDictLoadOptions& options = {}) {
  StateDictLoadResult r = check_state_dict(model, dict, options);
  const std::string prefix = options.prefix.empty() ? "" : options.prefix + ".";
  model.visit_parameters(
      [&](std::string_view name, auto& p) {
        using T = typename std::remove_cvref_t<decltype(p.value)>::value_type;
        using D = typename std::remove_cvref_t<decltype(p.value)>::device_type;
        const std::string key = prefix + std::string(name);
        if (!dict.contains(key)) return;
        if constexpr (std::same_as<D, cpu>)
          read_tensor_into<T>(dict, key, p.value.view());
        else
          detail::assign_from_host(read_tensor<T>(dict, key), p.value.view());
        detail::release(dict, key);
      },
      {});
  return r;
}

template <ParameterVisitable M>
StateDictLoadResult load_state_dict(M& model, const std::filesystem::path& path,
                                    const StateDictLoadOptions& options = {}) {
  return load_state_dict(model, load_safetensors(path), options);
}

}  // namespace spo::io
