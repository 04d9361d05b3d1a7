// SPDX-License-Identifier: MIT
/// @brief Training checkpoints: parameters, optimizer state, RNG position and run metadata in one atomic safetensors
/// file.
#pragma once

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <zlib.h>

#include "spo/core/rng.hpp"
#include "spo/io/config.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/optim/concepts.hpp"

namespace spo::io {

/// Adds optimizer state as tensors "<prefix><key>" and the step as metadata "<prefix>step" (device state through a
/// host copy).
template <Scalar T, Device D>
void append_optimizer_state(NamedTensors& out, const optim::OptimizerState<T, D>& s, std::string_view prefix = {}) {
  for (const auto& [key, t] : s.tensors) {
    if constexpr (std::same_as<D, cpu>) {
      out.set<T>(std::string(prefix) + key, t.view());
    } else {
      const Tensor<T, cpu> host = detail::host_readable(t);
      out.set<T>(std::string(prefix) + key, host.view());
    }
  }
  out.metadata[std::string(prefix) + "step"] = std::to_string(s.step);
}

/// The same state with its tensors on device D (the host state itself when D is the CPU).
template <Device D, Scalar T>
optim::OptimizerState<T, D> optimizer_state_on(optim::OptimizerState<T, cpu> s) {
  if constexpr (std::same_as<D, cpu>) {
    return s;
  } else {
    optim::OptimizerState<T, D> out;
    out.step = s.step;
    for (auto& [key, host] : s.tensors) {
      auto t = Tensor<T, D>::uninitialized(host.shape());  // host.shape
      detail::assign_from_host(host, t.view());
      out.tensors.emplace(key, std::move(t));
      host = Tensor<T, cpu>();  // the host copy is no longer needed
    }
    return out;
  }
}

namespace detail {
/// Strict decimal parse of a step count into `out`: the whole of `text` is digits (no sign, space or "0x") and the
/// value fits int64. Returns false, leaving `out` unchanged, otherwise.
inline bool parse_step_count(std::string_view text, std::int64_t& out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) return false;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return false;
  out = v;
  return true;
}
}  // namespace detail

/// The inverse of append_optimizer_state: every tensor whose key starts with `prefix`, and the step.
template <Scalar T>
optim::OptimizerState<T, cpu> read_optimizer_state(const NamedTensors& in, std::string_view prefix = {}) {
  optim::OptimizerState<T, cpu> s;
  const std::string step_key = std::string(prefix) + "step";
  auto it = in.metadata.find(step_key);
  SPO_EXPECT(it != in.metadata.end(), in.source << ": optimizer state has no metadata \"" << step_key << "\"");
  SPO_EXPECT(detail::parse_step_count(it->second, s.step), in.source << ": metadata \"" << step_key << "\" = \""
                                                                     << it->second
                                                                     << "\" is not a step count (decimal digits only)");
  for (const auto& [key, unused] : in.tensors())
    if (key.starts_with(prefix)) s.tensors.emplace(key.substr(prefix.size()), in.get<T>(key));
  return s;
}

/// What a checkpoint records besides tensors.
struct CheckpointInfo {
  std::int64_t step = 0;         // training step
  json config = json::object();  // the resolved run config
  Generator rng;                 // Philox position to resume sampling exactly
};

inline constexpr std::string_view checkpoint_format = "spo.checkpoint";
inline constexpr std::int64_t checkpoint_version = 1;

namespace detail {

/// CRC-32 (zlib) over every tensor's name and bytes in name order; stored in the metadata to catch corrupted data.
inline std::uint64_t tensors_crc32(const NamedTensors& t) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  auto feed = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const Bytef*>(p);
    while (n > 0) {
      const auto chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
      crc = ::crc32(crc, b, chunk);
      b += chunk;
      n -= chunk;
    }
  };
  for (const auto& [name, s] : t.tensors()) {
    feed(name.data(), name.size() + 1);  // includes the terminating NUL as a separator
    const std::string dt(dtype_name(s.dtype));
    feed(dt.data(), dt.size());
    feed(s.shape.data(), s.shape.size() * sizeof(std::int64_t));
    feed(s.data.data(), s.data.size());
  }
  return static_cast<std::uint64_t>(crc);
}

[[noreturn]] inline void bad_checkpoint(const std::filesystem::path& path, const std::string& what) {
  throw input_error(path.string() + ": invalid checkpoint: " + what);
}

template <class T>
T metadata_field(const json& meta, const char* key, const std::filesystem::path& path) {
  if (!meta.contains(key)) bad_checkpoint(path, std::string("metadata has no \"") + key + "\"");
  if constexpr (std::is_unsigned_v<T>) {
    if (!meta[key].is_number_unsigned())
      bad_checkpoint(path, std::string("metadata \"") + key + "\" is not an unsigned integer");
  } else if constexpr (std::is_integral_v<T>) {
    if (!meta[key].is_number_integer()) bad_checkpoint(path, std::string("metadata \"") + key + "\" is not an integer");
    if (meta[key].is_number_unsigned() &&
        meta[key].template get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
      bad_checkpoint(path, std::string("metadata \"") + key + "\" is out of range");
  }
  return meta[key].template get<T>();
}

}  // namespace detail

/*!
  Writes `model` (tensors "model.<name>", native dtype), the optimizer state ("optimizer.exp_avg.<name>",
  "optimizer.exp_avg_sq.<name>") and metadata "spo.checkpoint" = JSON {version, step, config, rng {seed, offset},
  optimizer {type, step, options}, crc32} to one safetensors file, atomically (a crash leaves the previous file).
  Device tensors (spo::cuda models and optimizers) are written through host copies: the file is the same as the
  CPU's for the same values.
!*/
template <ParameterVisitable M, optim::Optimizer<M> Opt>
void save_checkpoint(const std::filesystem::path& path, M& model, const Opt& optimizer, const CheckpointInfo& info) {
  NamedTensors t;
  t.source = path.string();
  StateDictSaveOptions so;
  so.prefix = "model";
  append_state_dict(model, t, so);
  const auto state = optimizer.export_state();
  for (const auto& [key, tensor] : state.tensors) {
    using D = typename std::remove_cvref_t<decltype(tensor)>::device_type;
    if constexpr (std::same_as<D, cpu>) {
      t.set(std::string("optimizer.") + key, tensor);
    } else {
      const auto host = detail::host_readable(tensor);  // Tensor<T, cpu>
      t.set(std::string("optimizer.") + key, host);
    }
  }
  json opt = {{"type", std::string(Opt::name)}, {"step", state.step}};
  if constexpr (ConfigStruct<std::remove_cvref_t<decltype(optimizer.options())>>)
    opt["options"] = to_json(optimizer.options());
  const json meta = {{"version", checkpoint_version},
                     {"step", info.step},
                     {"config", info.config},
                     {"rng", {{"seed", info.rng.seed}, {"offset", info.rng.offset}}},
                     {"optimizer", opt},
                     {"crc32", detail::tensors_crc32(t)}};
  t.metadata["format"] = std::string(checkpoint_format);
  t.metadata[std::string(checkpoint_format)] = meta.dump();
  save_safetensors(path, t);
}

/// Reads a checkpoint written by save_checkpoint into `model` and `optimizer` and returns its info. Everything is
/// verified before anything changes (file structure, format and version, checksum, every model key and shape,
/// finite values of every model and optimizer tensor, optimizer state); each error names the path and what is wrong.
/// Tensors of a device model and optimizer are copied onto the device (Opt::device_type).
template <ParameterVisitable M, optim::Optimizer<M> Opt>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, M& model, Opt& optimizer) {
  using T = typename Opt::scalar_type;
  const NamedTensors t = load_safetensors(path);
  auto fmt = t.metadata.find("format");
  if (fmt == t.metadata.end() || fmt->second != checkpoint_format)
    detail::bad_checkpoint(path, "metadata \"format\" is not \"" + std::string(checkpoint_format) + "\"");
  auto raw = t.metadata.find(std::string(checkpoint_format));
  if (raw == t.metadata.end()) detail::bad_checkpoint(path, "no \"" + std::string(checkpoint_format) + "\" metadata");
  const json meta = parse_json(raw->second, path.string() + ": checkpoint metadata");
  if (!meta.is_object()) detail::bad_checkpoint(path, "checkpoint metadata is not an object");
  const auto version = detail::metadata_field<std::int64_t>(meta, "version", path);
  if (version != checkpoint_version)
    detail::bad_checkpoint(path, "version " + std::to_string(version) + " is not supported (expected " +
                                     std::to_string(checkpoint_version) + ")");
  const auto crc = detail::metadata_field<std::uint64_t>(meta, "crc32", path);
  if (crc != detail::tensors_crc32(t)) detail::bad_checkpoint(path, "CRC-32 mismatch: the tensor data is corrupted");
  CheckpointInfo info;
  info.step = detail::metadata_field<std::int64_t>(meta, "step", path);
  if (info.step < 0) detail::bad_checkpoint(path, "metadata \"step\" is negative");
  if (!meta.contains("config")) detail::bad_checkpoint(path, "metadata has no \"config\"");
  info.config = meta["config"];
  if (!meta.contains("rng") || !meta["rng"].is_object()) detail::bad_checkpoint(path, "metadata has no \"rng\" object");
  info.rng.seed = detail::metadata_field<std::uint64_t>(meta["rng"], "seed", path);
  info.rng.offset = detail::metadata_field<std::uint64_t>(meta["rng"], "offset", path);
  if (!meta.contains("optimizer") || !meta["optimizer"].is_object())
    detail::bad_checkpoint(path, "metadata has no \"optimizer\" object");
  const auto opt_step = detail::metadata_field<std::int64_t>(meta["optimizer"], "step", path);
  if (opt_step < 0) detail::bad_checkpoint(path, "metadata \"optimizer\" \"step\" is negative");

  std::vector<std::string> stray;
  for (const auto& [key, unused] : t.tensors())
    if (!key.starts_with("model.") && !key.starts_with("optimizer.")) stray.push_back(key);
  if (!stray.empty()) detail::bad_checkpoint(path, "unexpected tensors " + detail::key_list(stray));

  StateDictLoadOptions lo;
  lo.prefix = "model";
  check_state_dict(model, t, lo);  // with the scan for NaN and infinities
  for (const auto& [key, unused] : t.tensors())
    if (key.starts_with("optimizer.")) detail::expect_finite(t, key);
  optim::OptimizerState<T, cpu> state;
  state.step = opt_step;
  for (const auto& [key, unused] : t.tensors())
    if (key.starts_with("optimizer.")) state.tensors.emplace(key.substr(10), t.get<T>(key));
  try {
    optimizer.import_state(optimizer_state_on<typename Opt::device_type>(std::move(state)), model);
  } catch (const error& e) {
    throw error(path.string() + ": " + e.what());
  }
  lo.check_finite = false;  // scanned above
  load_state_dict(model, t, lo);
  return info;
}

}  // namespace spo::io
