// SPDX-License-Identifier: MIT
// Config overlays: a config with "extends" is merged onto its base (io::load_config_json), and the strict reader
// still refuses unknown and mistyped keys, naming the file that set them.
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "spo/experiment/baseline_experiment.hpp"
#include "spo/experiment/spo_experiment.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/config.hpp"
#include "spo/judge/training.hpp"
#include "spo/loss/step_dpo_loss.hpp"
#include "spo/spm/training.hpp"
#include "spo/train/pretraining.hpp"

#include <unistd.h>

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

struct OptimizerConfig {
  BOOST_HANA_DEFINE_STRUCT(OptimizerConfig, (double, lr), (std::vector<int>, milestones),
                           (std::optional<std::string>, note));
};

struct TrainConfig {
  BOOST_HANA_DEFINE_STRUCT(TrainConfig, (std::string, name), (int, steps), (OptimizerConfig, optimizer),
                           (std::map<std::string, double>, weights), (std::optional<std::string>, resume));
};

const char* base_text = R"({
  "name": "base",
  "steps": 100,
  "optimizer": {"lr": 0.001, "milestones": [10, 20, 30], "note": "paper"},
  "weights": {"a": 1.0, "b": 2.0}
})";

/// Makes `path` the working directory while it lives ("extends" paths are relative to it).
struct WorkingDirectory {
  fs::path previous = fs::current_path();
  explicit WorkingDirectory(const fs::path& path) { fs::current_path(path); }
  ~WorkingDirectory() { fs::current_path(previous); }
};

/// A fresh directory, the working directory while it lives.
struct ScratchDir {
  fs::path path = fs::temp_directory_path() / ("spo_test_config_overlay_" + std::to_string(::getpid()));
  std::optional<WorkingDirectory> cwd;
  ScratchDir() {
    fs::remove_all(path);
    fs::create_directories(path);
    cwd.emplace(path);
  }
  ~ScratchDir() {
    cwd.reset();
    fs::remove_all(path);
  }
  void write(const std::string& name, std::string_view text) const { write_file_atomic(path / name, text); }
};

/// Every value `overlay` sets (recursing into objects both hold) differs from the value at that path in `base`.
void check_sets_only_changes(const json& base, const json& overlay, const std::string& path) {
  for (const auto& [key, value] : overlay.items()) {
    const std::string p = path.empty() ? key : path + "." + key;
    if (path.empty() && key == "extends") continue;
    const auto it = base.find(key);
    if (it != base.end() && it->is_object() && value.is_object()) {
      check_sets_only_changes(*it, value, p);
    } else {
      INFO("key: " << p);
      CHECK((it == base.end() || *it != value));
    }
  }
}

}  // namespace

TEST_CASE("an overlay merges objects key by key; arrays and scalars replace the base's value, null removes the key") {
  ScratchDir dir;
  dir.write("base.json", base_text);
  dir.write("run.json", R"({
    "extends": "base.json",
    "steps": 5,
    "optimizer": {"milestones": [7], "note": null},
    "weights": {"b": 3}
  })");
  const json expected = json::parse(R"({
    "name": "base",
    "steps": 5,
    "optimizer": {"lr": 0.001, "milestones": [7]},
    "weights": {"a": 1.0, "b": 3}
  })");
  CHECK(load_config_json("run.json") == expected);  // "extends" removed
  const auto c = load_config<TrainConfig>("run.json");
  CHECK(c.steps == 5);
  CHECK(c.optimizer.lr == 0.001);
  CHECK(c.optimizer.milestones == std::vector<int>{7});
  CHECK(!c.optimizer.note.has_value());
  CHECK(c.weights == std::map<std::string, double>{{"a", 1.0}, {"b", 3.0}});
  // A file without "extends" reads as before, and a base file is unchanged by being extended.
  CHECK(load_config_json("base.json") == json::parse(base_text));
  // "extends" is resolved against the working directory, not the overlay's directory.
  fs::create_directories(dir.path / "sub");
  dir.write("sub/run.json", R"({"extends": "base.json", "name": "sub"})");
  CHECK(load_config<TrainConfig>("sub/run.json").name == "sub");
  dir.write("sub/only_here.json", base_text);
  dir.write("sub/local.json", R"({"extends": "only_here.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("sub/local.json"), "sub/local.json: extends: only_here.json: no such file",
                       input_error);
  // An absolute path works from anywhere.
  dir.write("abs.json", R"({"extends": ")" + (dir.path / "base.json").string() + R"(", "steps": 6})");
  CHECK(load_config<TrainConfig>(dir.path / "abs.json").steps == 6);
}

TEST_CASE("overlays chain: each file overrides the one it extends, and errors name the file that set the value") {
  ScratchDir dir;
  dir.write("a.json", base_text);
  dir.write("b.json", R"({"extends": "a.json", "steps": 200, "optimizer": {"lr": 0.01}, "weights": {"c": 4}})");
  dir.write("c.json", R"({"extends": "b.json", "optimizer": {"lr": 0.1, "milestones": []}, "name": "c"})");
  const json expected = json::parse(R"({
    "name": "c",
    "steps": 200,
    "optimizer": {"lr": 0.1, "milestones": [], "note": "paper"},
    "weights": {"a": 1.0, "b": 2.0, "c": 4}
  })");
  CHECK(load_config_json("c.json") == expected);
  CHECK(to_json(load_config<TrainConfig>("c.json")) == expected);
  // A mistyped value is reported against the file that set it, whichever link of the chain that is.
  dir.write("c.json", R"({"extends": "b.json", "optimizer": {"lr": "fast"}})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("c.json"),
                       "c.json: optimizer.lr: expected a number, got string \"fast\"", input_error);
  dir.write("c.json", R"({"extends": "b.json", "name": "c"})");
  dir.write("b.json", R"({"extends": "a.json", "steps": 200, "optimizer": {"lr": "fast"}})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("c.json"),
                       "b.json: optimizer.lr: expected a number, got string \"fast\"", input_error);
  dir.write("b.json", R"({"extends": "a.json", "steps": 2.5})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("c.json"), "b.json: steps: expected an integer, got number 2.5",
                       input_error);
  // A value the base sets and no overlay replaces is the base's, and so are keys the base lacks.
  dir.write("a.json", R"({"name": "a", "steps": 1, "optimizer": {"lr": 1, "milestones": ["x"]}, "weights": {}})");
  dir.write("b.json", R"({"extends": "a.json"})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("c.json"),
                       "a.json: optimizer.milestones[0]: expected an integer, got string \"x\"", input_error);
  dir.write("a.json", R"({"name": "a", "optimizer": {"lr": 1, "milestones": []}, "weights": {}})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("c.json"), "a.json: steps: missing key", input_error);
}

TEST_CASE("a key an overlay adds that the config does not have is an error naming the overlay and the key path") {
  ScratchDir dir;
  dir.write("base.json", base_text);
  dir.write("typo.json", R"({"extends": "base.json", "optimizer": {"lrr": 0.1}})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("typo.json"), "typo.json: optimizer.lrr: unknown key", input_error);
  dir.write("top.json", R"({"extends": "base.json", "stepz": 5})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("top.json"), "top.json: stepz: unknown key", input_error);
  // An object put where the base has none is the overlay's, with everything inside it.
  dir.write("nested.json", R"({"extends": "base.json", "steps": {"count": 5}})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("nested.json"), "nested.json: steps: expected an integer, got object",
                       input_error);
  dir.write("deeper.json", R"({"extends": "nested.json", "name": "x"})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("deeper.json"), "nested.json: steps: expected an integer, got object",
                       input_error);
  // An unknown key of the base stays the base's even when an overlay sets keys beside it.
  dir.write("bad_base.json", R"({"name": "b", "steps": 1, "optimizer": {"lr": 1, "milestones": [], "momentum": 0.9},
                                 "weights": {}})");
  dir.write("on_bad.json", R"({"extends": "bad_base.json", "optimizer": {"lr": 2}})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("on_bad.json"), "bad_base.json: optimizer.momentum: unknown key",
                       input_error);
  // A key the base leaves out but the config type has (an optional) may be set by an overlay.
  dir.write("resume.json", R"({"extends": "base.json", "resume": "ckpt.safetensors"})");
  CHECK(load_config<TrainConfig>("resume.json").resume == "ckpt.safetensors");
  // "extends" is a top-level key only.
  dir.write("inner.json", R"({"extends": "base.json", "optimizer": {"extends": "base.json"}})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("inner.json"), "inner.json: optimizer.extends: unknown key",
                       input_error);
}

TEST_CASE("a base that cannot be used is an error naming the overlay, \"extends\" and the base") {
  ScratchDir dir;
  dir.write("missing.json", R"({"extends": "nope.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("missing.json"), "missing.json: extends: nope.json: no such file", input_error);
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("missing.json"), "missing.json: extends: nope.json: no such file",
                       input_error);
  fs::create_directories(dir.path / "folder.json");
  dir.write("dir.json", R"({"extends": "folder.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("dir.json"), "dir.json: extends: folder.json: is a directory, expected a file",
                       input_error);
  dir.write("broken.json", "{\n  \"name\": \"x\",\n  \"steps\": ,\n}");
  dir.write("on_broken.json", R"({"extends": "broken.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("on_broken.json"),
                       doctest::Contains("on_broken.json: extends: broken.json: invalid JSON: "), input_error);
  CHECK_THROWS_WITH_AS(load_config_json("on_broken.json"), doctest::Contains("line 3, column"), input_error);
  dir.write("dup.json", R"({"name": "x", "name": "y"})");
  dir.write("on_dup.json", R"({"extends": "dup.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("on_dup.json"), "on_dup.json: extends: dup.json: duplicate JSON key \"name\"",
                       input_error);
  dir.write("array.json", "[1, 2]");
  dir.write("on_array.json", R"({"extends": "array.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("on_array.json"),
                       "on_array.json: extends: array.json: expected a config object, got array", input_error);
  dir.write("number.json", R"({"extends": 3})");
  CHECK_THROWS_WITH_AS(load_config_json("number.json"),
                       "number.json: extends: expected the path of the base config, got integer 3", input_error);
  dir.write("empty.json", R"({"extends": ""})");
  CHECK_THROWS_WITH_AS(load_config_json("empty.json"),
                       "empty.json: extends: expected the path of the base config, got string \"\"", input_error);
  // The link that breaks reports itself: here the middle file of a chain.
  dir.write("top.json", R"({"extends": "missing.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("top.json"), "missing.json: extends: nope.json: no such file", input_error);
}

TEST_CASE("a cycle of \"extends\" is an error naming every file of the cycle") {
  ScratchDir dir;
  dir.write("self.json", R"({"extends": "self.json"})");
  CHECK_THROWS_WITH_AS(load_config_json("self.json"), "self.json: extends: cycle of configs: self.json -> self.json",
                       input_error);
  dir.write("a.json", R"({"extends": "b.json", "name": "a"})");
  dir.write("b.json", R"({"extends": "c.json", "name": "b"})");
  dir.write("c.json", R"({"extends": "a.json", "name": "c"})");
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>("a.json"),
                       "c.json: extends: cycle of configs: a.json -> b.json -> c.json -> a.json", input_error);
  // The same file under another name still closes the cycle.
  dir.write("c.json", R"({"extends": "./b.json", "name": "c"})");
  CHECK_THROWS_WITH_AS(load_config_json("a.json"),
                       "c.json: extends: cycle of configs: a.json -> b.json -> c.json -> ./b.json", input_error);
}

TEST_CASE("every committed config loads through the overlay loader and reads as its config type") {
  WorkingDirectory source_tree(SPO_SOURCE_DIR);  // config paths, "extends" included, are relative to the source tree
  using Check = std::function<void(const std::string&)>;
  auto as = []<class Config>(std::type_identity<Config>) -> Check {
    return [](const std::string& file) { (void)load_config<Config>(file); };
  };
  const Check spo = as(std::type_identity<experiment::SpoConfig>{});
  const Check json_only = [](const std::string& file) { CHECK(load_config_json(file).is_object()); };
  const std::map<std::string, Check> checks{
      {"configs/spo.json", spo},
      {"configs/ablations/spo_clean_pm.json", spo},
      {"configs/ablations/spo_continue_loser.json", spo},
      {"configs/ablations/spo_continue_winner.json", spo},
      {"configs/ablations/spo_k2.json", spo},
      {"configs/ablations/spo_k8.json", spo},
      {"configs/ablations/spo_no_step_condition.json", spo},
      {"configs/ablations/spo_oracle.json", spo},
      {"configs/ablations/spo_random_pair.json", spo},
      {"configs/ablations/spo_step_dpo.json", as(std::type_identity<experiment::SpoConfigOf<loss::StepDpoOptions>>{})},
      {"configs/ablations/spo_t0_1000.json", spo},
      {"configs/ablations/spo_t0_250.json", spo},
      {"configs/ablations/spo_t0_500.json", spo},
      {"configs/ablations/spo_t0_750.json", spo},
      {"configs/ablations/spo_t250_750.json", spo},
      {"configs/baselines/d3po.json", as(std::type_identity<experiment::D3poConfig>{})},
      {"configs/baselines/ddpo.json", as(std::type_identity<experiment::DdpoConfig>{})},
      {"configs/baselines/diffusion_dpo.json", as(std::type_identity<experiment::DiffusionDpoConfig>{})},
      {"configs/pretrain_base.json", as(std::type_identity<train::PretrainConfig>{})},
      {"configs/judge_train.json", as(std::type_identity<judge::JudgeConfig>{})},
      {"configs/judge_heldout.json", as(std::type_identity<judge::JudgeConfig>{})},
      {"configs/spm.json", as(std::type_identity<spm::SpmConfig>{})},
      {"configs/spm_no_step.json", as(std::type_identity<spm::SpmConfig>{})},
      {"configs/pm_clean.json", as(std::type_identity<spm::SpmConfig>{})},
      {"configs/fair/spo_on_policy.json", spo},
      {"configs/fair/spo_off_policy.json", spo},
      {"configs/fair/diffusion_dpo_on_policy.json", as(std::type_identity<experiment::DiffusionDpoConfig>{})},
      {"configs/fair/diffusion_dpo_off_policy.json", as(std::type_identity<experiment::DiffusionDpoConfig>{})},
      {"configs/fair/d3po.json", as(std::type_identity<experiment::D3poConfig>{})},
      {"configs/fair/ddpo.json", as(std::type_identity<experiment::DdpoConfig>{})},
      {"configs/fair/pretrain_early.json", as(std::type_identity<train::PretrainConfig>{})},
      {"configs/fair/pm_clean_on_policy.json", as(std::type_identity<spm::SpmConfig>{})},
      {"configs/fair/pm_clean_off_policy.json", as(std::type_identity<spm::SpmConfig>{})},
      {"configs/fair/spm_on_policy.json", as(std::type_identity<spm::SpmConfig>{})},
      {"configs/fair/spm_off_policy.json", as(std::type_identity<spm::SpmConfig>{})},
      // Their config types are declared in the binaries' main.cpp (evaluate_spm, make_pairs) or read by tools/
      // (the fair comparison's grid).
      {"configs/evaluate_spm.json", json_only},
      {"configs/preference_pairs.json", json_only},
      {"configs/fair/pairs_on_policy.json", json_only},
      {"configs/fair/pairs_off_policy.json", json_only},
      {"configs/fair/grid.json", json_only},
  };
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator("configs"))
    if (entry.is_regular_file() && entry.path().extension() == ".json") files.push_back(entry.path().string());
  for (const auto& [file, check] : checks) CHECK_MESSAGE(fs::is_regular_file(file), file);
  for (const auto& file : files) {
    INFO("config: " << file);
    const auto check = checks.find(file);
    CHECK_MESSAGE(check != checks.end(), "no config type known for this file: add it to this test");
    if (check == checks.end()) continue;
    CHECK_NOTHROW(check->second(file));
    const json merged = load_config_json(file);
    CHECK(!merged.contains("extends"));
    // An overlay lists only what differs from its base.
    const json own = parse_json(read_file_text(file), file);
    if (own.contains("extends")) check_sets_only_changes(load_config_json(own["extends"].get<std::string>()), own, "");
  }
}
