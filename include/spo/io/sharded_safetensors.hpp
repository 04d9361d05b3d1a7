// SPDX-License-Identifier: MIT
/// @brief A checkpoint split into several safetensors files by an index (`*.safetensors.index.json`, as diffusers and
/// transformers write large models), or one file: served as one TensorStore.
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/json.hpp"
#include "spo/io/mapped_safetensors.hpp"

namespace spo::io {

/*!
  WHAT THIS REPRESENTS
    The tensors of one model stored in one or more mapped safetensors files. From an index file
    `{"metadata": {...}, "weight_map": {"<tensor>": "<shard file name>", ...}}` the shards are the files it names,
    in its folder; from a `.safetensors` file, that one file.
  ENSURES
    - every tensor the index names is in the shard it names, no shard holds a tensor the index does not assign to
      it, and no tensor is in two shards; otherwise spo::input_error naming the index, the tensor and the shard
    - a shard that is missing is an error naming it and the index
!*/
class ShardedSafetensors {
 public:
  std::string source;

  explicit ShardedSafetensors(const std::filesystem::path& path) : source(path.string()) {
    if (path.filename().string().ends_with(".json"))
      open_index(path);
    else
      add_shard(path);
  }

  bool contains(std::string_view name) const { return owner_.find(name) != owner_.end(); }
  std::size_t size() const { return owner_.size(); }
  std::vector<std::string> names() const { return detail::keys_of(owner_); }
  TensorBytes bytes(std::string_view name) const { return shard_of(name).bytes(name); }
  void release(std::string_view name) const { shard_of(name).release(name); }
  /// The files, in the order the index first names them.
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& s : shards_) out.push_back(s.source);
    return out;
  }
  /// The metadata of the first shard (diffusers and transformers write {"format": "pt"}).
  const std::map<std::string, std::string>& metadata() const { return shards_.front().metadata; }

 private:
  const MappedSafetensors& shard_of(std::string_view name) const {
    auto it = owner_.find(name);
    if (it == owner_.end()) throw input_error(source + ": no tensor named \"" + std::string(name) + "\"");
    return shards_[it->second];
  }

  void add_shard(const std::filesystem::path& file) {
    shards_.emplace_back(file);
    for (const auto& name : shards_.back().names()) {
      const auto [it, fresh] = owner_.emplace(name, shards_.size() - 1);
      if (!fresh)
        throw input_error(source + ": tensor \"" + name + "\" is in two shards, " + shards_[it->second].source +
                          " and " + file.string());
    }
  }

  void open_index(const std::filesystem::path& index) {
    const json j = parse_json(read_file_text(index), source);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw input_error(source + ": a checkpoint index needs an object \"weight_map\" of tensor -> file name");
    std::map<std::string, std::set<std::string>> expected;  // shard file name -> the tensors assigned to it
    std::vector<std::string> order;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string())
        throw input_error(source + ": weight_map[\"" + tensor + "\"] must be a file name, got " + file.dump());
      const std::string name = file.get<std::string>();
      if (name.empty() || std::filesystem::path(name).filename() != std::filesystem::path(name))
        throw input_error(source + ": weight_map[\"" + tensor + "\"] = \"" + name +
                          "\" is not a file name in the index's folder");
      if (!expected.contains(name)) order.push_back(name);
      expected[name].insert(tensor);
    }
    if (order.empty()) throw input_error(source + ": weight_map is empty");
    for (const auto& name : order) {
      const auto file = index.parent_path() / name;
      if (!std::filesystem::exists(file))
        throw input_error(source + ": shard \"" + name + "\" is missing (expected at " + file.string() + ")");
      add_shard(file);
      const auto& shard = shards_.back();
      for (const auto& tensor : expected[name])
        if (!shard.contains(tensor))
          throw input_error(source + ": tensor \"" + tensor + "\" is assigned to " + shard.source +
                            ", which does not hold it");
      for (const auto& tensor : shard.names())
        if (!expected[name].contains(tensor))
          throw input_error(source + ": " + shard.source + " holds tensor \"" + tensor +
                            "\", which the index does not assign to it");
    }
  }

  std::vector<MappedSafetensors> shards_;
  std::map<std::string, std::size_t, std::less<>> owner_;
};

}  // namespace spo::io
