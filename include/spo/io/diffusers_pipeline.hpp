// SPDX-License-Identifier: MIT
/// @brief A diffusers pipeline folder as users have it: model_index.json, one subfolder per component, its config and
/// its weights (plain, `.fp16`-style variants, or sharded by an index).
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/json.hpp"
#include "spo/io/sharded_safetensors.hpp"

namespace spo::io {

/// One entry of model_index.json: `"<name>": ["<library>", "<class>"]`, stored in `<root>/<name>/`.
struct PipelineComponent {
  std::string name;
  std::string library;     // "diffusers" or "transformers"
  std::string class_name;  // e.g. "UNet2DConditionModel", "CLIPTextModel", "EulerDiscreteScheduler"
  std::filesystem::path dir;
};

/// The converter users run on pickle checkpoints (spo never parses pickle).
inline constexpr std::string_view pickle_converter = "tools/convert_to_safetensors.py";

/*!
  WHAT THIS REPRESENTS
    A diffusers pipeline folder (StableDiffusionPipeline, StableDiffusionXLPipeline, ...). model_index.json names
    the pipeline class and its components; a component given as [null, null] is absent. Other keys
    (`requires_safety_checker`, `force_zeros_for_empty_prompt`, ...) are kept as options().
  ENSURES
    - a missing folder, a missing or invalid model_index.json, a component entry that is not [library, class]:
      spo::input_error naming the path
    - component(name) of an absent component names it and lists those present
    - weights(name, variant) picks the component's weights: `<stem>.safetensors` or its index
      `<stem>.safetensors.index.json`; with a variant V, `<stem>.V.safetensors` or `<stem>.safetensors.index.V.json`
      (stem `diffusion_pytorch_model` for diffusers, `model` for transformers). Without a variant, the plain files
      come first; when only one variant is present, it is used. Only pickle files (.bin, .ckpt, .pt, .pth) present:
      an error naming them and the converter.
!*/
class DiffusersPipeline {
 public:
  explicit DiffusersPipeline(const std::filesystem::path& root) : root_(root) {
    if (!std::filesystem::is_directory(root))
      throw input_error(root.string() + ": not a diffusers pipeline folder (no such directory)");
    const auto index = root / "model_index.json";
    if (!std::filesystem::exists(index))
      throw input_error(root.string() + ": not a diffusers pipeline folder (model_index.json is missing)");
    const json j = parse_json(read_file_text(index), index.string());
    if (!j.is_object()) throw input_error(index.string() + ": must be a JSON object");
    for (const auto& [key, value] : j.items()) {
      if (key == "_class_name") {
        if (!value.is_string()) throw input_error(index.string() + ": _class_name must be a string");
        class_name_ = value.get<std::string>();
        continue;
      }
      if (key.starts_with("_")) continue;  // _diffusers_version, _name_or_path
      if (!value.is_array()) {
        options_[key] = value;
        continue;
      }
      if (value.size() != 2)
        throw input_error(index.string() + ": component \"" + key + "\" must be [library, class], got " + value.dump());
      if (value[0].is_null() && value[1].is_null()) continue;
      if (!value[0].is_string() || !value[1].is_string())
        throw input_error(index.string() + ": component \"" + key + "\" must be [library, class], got " + value.dump());
      components_.emplace(key,
                          PipelineComponent{key, value[0].get<std::string>(), value[1].get<std::string>(), root / key});
    }
    if (class_name_.empty()) throw input_error(index.string() + ": _class_name is missing");
  }

  const std::filesystem::path& root() const { return root_; }
  const std::string& class_name() const { return class_name_; }
  const std::map<std::string, json>& options() const { return options_; }
  bool has(std::string_view name) const { return components_.contains(std::string(name)); }

  const PipelineComponent& component(std::string_view name) const {
    auto it = components_.find(std::string(name));
    if (it == components_.end()) {
      std::string present;
      for (const auto& [k, unused] : components_) present += (present.empty() ? "" : ", ") + k;
      throw input_error(root_.string() + ": the pipeline has no component \"" + std::string(name) +
                        "\" (model_index.json lists: " + present + ")");
    }
    if (!std::filesystem::is_directory(it->second.dir))
      throw input_error(root_.string() + ": component \"" + std::string(name) +
                        "\" is listed in model_index.json but " + it->second.dir.string() + " is missing");
    return it->second;
  }

  /// The component's config file: scheduler_config.json for schedulers, else config.json (an error naming it if
  /// absent). Tokenizers have no single config; use component(name).dir.
  std::filesystem::path config(std::string_view name) const {
    const auto& c = component(name);
    const auto file = c.dir / (c.class_name.ends_with("Scheduler") ? "scheduler_config.json" : "config.json");
    if (!std::filesystem::exists(file))
      throw input_error(root_.string() + ": component \"" + c.name + "\" has no " + file.filename().string() +
                        " (expected " + file.string() + ")");
    return file;
  }

  /// The weights file (or index) of a component; see the class comment for the choice.
  std::filesystem::path weights_path(std::string_view name, const std::optional<std::string>& variant = {}) const {
    const auto& c = component(name);
    const std::string stem = c.library == "transformers" ? "model" : "diffusion_pytorch_model";
    auto exists = [&](const std::string& f) { return std::filesystem::exists(c.dir / f); };
    auto pick = [&](const std::string& v) -> std::optional<std::filesystem::path> {
      const std::string file = v.empty() ? stem + ".safetensors" : stem + "." + v + ".safetensors";
      const std::string index =
          v.empty() ? stem + ".safetensors.index.json" : stem + ".safetensors.index." + v + ".json";
      if (exists(file)) return c.dir / file;
      if (exists(index)) return c.dir / index;
      return std::nullopt;
    };
    if (variant) {
      if (auto p = pick(*variant)) return *p;
      throw input_error(root_.string() + ": component \"" + c.name + "\" has no \"" + *variant + "\" variant (" + stem +
                        "." + *variant + ".safetensors) in " + c.dir.string() + found_files(c.dir));
    }
    if (auto p = pick("")) return *p;
    const auto variants = variants_in(c.dir, stem);
    if (variants.size() == 1) return *pick(*variants.begin());
    if (variants.size() > 1) {
      std::string list;
      for (const auto& v : variants) list += (list.empty() ? "" : ", ") + v;
      throw input_error(root_.string() + ": component \"" + c.name + "\" has only variant weights (" + list +
                        "): choose one with the variant option");
    }
    std::vector<std::string> pickles;
    for (const auto& e : std::filesystem::directory_iterator(c.dir)) {
      const auto ext = e.path().extension().string();
      if (ext == ".bin" || ext == ".ckpt" || ext == ".pt" || ext == ".pth") pickles.push_back(e.path().filename());
    }
    if (!pickles.empty())
      throw input_error(root_.string() + ": component \"" + c.name + "\" has only pickle weights (" + pickles.front() +
                        "), which spo does not read: convert them with `python " + std::string(pickle_converter) + " " +
                        c.dir.string() + "`");
    throw input_error(root_.string() + ": component \"" + c.name + "\" has no weights (" + stem + ".safetensors) in " +
                      c.dir.string() + found_files(c.dir));
  }

  ShardedSafetensors weights(std::string_view name, const std::optional<std::string>& variant = {}) const {
    return ShardedSafetensors(weights_path(name, variant));
  }

 private:
  /// The V of every `<stem>.V.safetensors` and `<stem>.safetensors.index.V.json` in `dir`.
  static std::set<std::string> variants_in(const std::filesystem::path& dir, const std::string& stem) {
    std::set<std::string> out;
    const std::string index_prefix = stem + ".safetensors.index.";
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string f = e.path().filename().string();
      if (f.starts_with(index_prefix) && f.ends_with(".json") && f.size() > index_prefix.size() + 5)
        out.insert(f.substr(index_prefix.size(), f.size() - index_prefix.size() - 5));
      else if (f.starts_with(stem + ".") && f.ends_with(".safetensors") && f.size() > stem.size() + 13 &&
               f.find('-') == std::string::npos)
        out.insert(f.substr(stem.size() + 1, f.size() - stem.size() - 13));
    }
    return out;
  }
  static std::string found_files(const std::filesystem::path& dir) {
    std::string list;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      list += (list.empty() ? "" : ", ") + e.path().filename().string();
    return list.empty() ? " (the folder is empty)" : " (found: " + list + ")";
  }

  std::filesystem::path root_;
  std::string class_name_;
  std::map<std::string, PipelineComponent> components_;
  std::map<std::string, json> options_;
};

}  // namespace spo::io
