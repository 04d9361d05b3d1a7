// SPDX-License-Identifier: MIT
/// @brief Resuming a run only with the recipe it was trained with: the checkpoint's recorded config against the
/// current one, key by key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/json.hpp"
#include "spo/io/safetensors.hpp"

namespace spo::io {

/// One value that differs between the config a checkpoint recorded and the current one.
struct ConfigChange {
  std::string key;  ///< dotted key path, array elements as "[i]": "train.lr", "train.templates"
  json recorded;    ///< the checkpoint's value (null when the key is new)
  json current;     ///< the current value (null when the key was removed)
};

/// Every leaf that differs, in key order: objects are compared key by key, arrays and scalars as wholes (an array
/// that differs is one change). Integers and floats compare by value (1 equals 1.0).
inline std::vector<ConfigChange> config_changes(const json& recorded, const json& current,
                                                const std::string& path = {}) {
  std::vector<ConfigChange> out;
  auto child = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
  if (recorded.is_object() && current.is_object()) {
    for (const auto& [key, value] : recorded.items()) {
      auto it = current.find(key);
      if (it == current.end()) {
        out.push_back({child(key), value, json()});
      } else {
        auto sub = config_changes(value, *it, child(key));
        out.insert(out.end(), sub.begin(), sub.end());
      }
    }
    for (const auto& [key, value] : current.items())
      if (!recorded.contains(key)) out.push_back({child(key), json(), value});
    return out;
  }
  if (recorded != current) out.push_back({path.empty() ? std::string("<root>") : path, recorded, current});
  return out;
}

/// The resolved config recorded in a checkpoint written by save_checkpoint (its "spo.checkpoint" metadata).
inline json checkpoint_config(const std::filesystem::path& checkpoint) {
  const NamedTensors t = load_safetensors(checkpoint);
  auto raw = t.metadata.find(std::string(checkpoint_format));
  SPO_EXPECT(raw != t.metadata.end(), checkpoint.string()
                                          << ": invalid checkpoint: no \"" << checkpoint_format << "\" metadata");
  const json meta = parse_json(raw->second, checkpoint.string() + ": checkpoint metadata");
  SPO_EXPECT(meta.is_object() && meta.contains("config") && meta["config"].is_object(),
             checkpoint.string() << ": invalid checkpoint: the metadata holds no config object");
  return meta["config"];
}

/// Which differences a resumed run accepts.
struct ResumeRules {
  /// Keys that never matter for what was trained: where the run writes, and what the trainers add to the config
  /// they record (training wall-clock and CPU time, trainer state, the compute spent so far, the precision policy
  /// and its scaler state, which the trainer itself checks on resume).
  std::vector<std::string> ignored{"output_dir",    "train_wall_s", "train_cpu_s",
                                   "trainer_state", "compute",      "precision"};
  std::string length_key;   ///< the run length ("train.rounds"): may change when allow_length_change is set
  std::string length_flag;  ///< the flag that allows it, named in the error ("--allow-rounds-change")
  bool allow_length_change = false;
};

/*!
  ENSURES
    - returns when `current` equals the config recorded in `checkpoint` except for ignored keys (and the length key
      when allowed)
    - otherwise throws input_error naming the checkpoint and every training-relevant key that differs with both
      values, e.g. "runs/spo/checkpoint.safetensors: --resume refused: the config differs from the one this run was
      trained with: train.lr: 0.0001 in the checkpoint, 0.001 now; seed: 42 in the checkpoint, 7 now"
!*/
inline void check_resume_config(const std::filesystem::path& checkpoint, const json& current,
                                const ResumeRules& rules) {
  const json recorded = checkpoint_config(checkpoint);
  std::string listed;
  bool length_changed = false;
  for (const auto& c : config_changes(recorded, current)) {
    bool ignored = false;
    for (const auto& k : rules.ignored) ignored = ignored || c.key == k || c.key.starts_with(k + ".");
    if (ignored) continue;
    if (!rules.length_key.empty() && c.key == rules.length_key) {
      if (rules.allow_length_change) continue;
      length_changed = true;
    }
    auto show = [](const json& v) { return v.is_null() ? std::string("absent") : v.dump(); };
    listed += (listed.empty() ? "" : "; ") + c.key + ": " + show(c.recorded) + " in the checkpoint, " +
              show(c.current) + " now";
  }
  if (listed.empty()) return;
  std::string hint = "restore these values, or start a new run in another output directory";
  if (length_changed) hint += " (" + rules.length_flag + " allows changing " + rules.length_key + " only)";
  throw input_error(checkpoint.string() + ": --resume refused: the config differs from the one this run was trained " +
                    "with: " + listed + "; " + hint);
}

}  // namespace spo::io
