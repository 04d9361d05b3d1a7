// SPDX-License-Identifier: MIT
// What a run may do with its inputs: config errors in the form "<file>: <key>: <problem>" (one key per check, no
// source locations), --resume only with the recipe the checkpoint was trained with, config paths that are not files,
// and reading the source tree's revision without touching its index.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <doctest/doctest.h>

#include "spo/experiment/baseline_experiment.hpp"
#include "spo/io/resume.hpp"
#include "spo/io/run_record.hpp"
#include "spo/nn/linear.hpp"

#include "support/train_fixtures.hpp"
#include <unistd.h>

using namespace spo;
using namespace spo::test_support;
namespace fs = std::filesystem;

namespace {

using E = experiment::Spo<spm::StepAwarePM>;

experiment::SpoConfig spo_config() {
  auto c = load_source_config<experiment::SpoConfig>("configs/spo.json");
  c.preference_model = in_source(*c.preference_model);
  return c;
}

/// The message of the input_error that validating `c` as if read from "spo.json" throws.
std::string config_message(const experiment::SpoConfig& c) {
  try {
    io::in_config_file("spo.json", [&] { experiment::validate<E>(c); });
  } catch (const input_error& e) {
    return e.what();
  }
  return "<no error>";
}

/// No source file, line or C++ condition in a user-facing message.
void check_user_facing(const std::string& m) {
  CHECK(m.find(".hpp") == std::string::npos);
  CHECK(m.find("check failed") == std::string::npos);
  CHECK(m.find("&&") == std::string::npos);
}

struct Net {
  nn::Linear<float> a{3, 2};
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    a.visit_parameters(f, nn::join_name(prefix, "a"));
  }
};

}  // namespace

TEST_CASE("range errors are config errors: file, key and value, one key per check, no source location") {
  auto c = spo_config();
  c.train.rounds = 0;
  CHECK(config_message(c) == "spo.json: train.rounds: must be >= 1, got 0");
  c = spo_config();
  c.train.batch_size = -3;  // grouped with rounds, prompts_per_round and checkpoint_every before
  CHECK(config_message(c) == "spo.json: train.batch_size: must be >= 1, got -3");
  c = spo_config();
  c.train.weight_decay = -1;
  CHECK(config_message(c) == "spo.json: train.weight_decay: must be finite and >= 0, got -1");
  c = spo_config();
  c.lora.alpha = 0;
  CHECK(config_message(c) == "spo.json: lora.alpha: must be finite and > 0, got 0");
  c = spo_config();
  c.evaluation.real_images = 1;
  CHECK(config_message(c) == "spo.json: evaluation.real_images: must be >= 2, got 1");
  c = spo_config();
  c.resampler.t_max = -1;
  CHECK(config_message(c) == "spo.json: resampler.t_max: must be >= t_min = 0, got -1");
  c = spo_config();
  c.rater.weights.quality_weight = -0.5;
  CHECK(config_message(c) == "spo.json: rater.weights.quality_weight: must be finite and >= 0, got -0.5");
  c = spo_config();
  c.rater.images_per_class = -1;
  CHECK(config_message(c) == "spo.json: rater.images_per_class: must be >= 0 (0: every training image), got -1");
  c = spo_config();
  c.evaluation.templates = {0, 9};
  CHECK(config_message(c) == "spo.json: evaluation.templates[1]: no template 9 (there are 8)");
  for (auto* m : {&c}) check_user_facing(config_message(*m));
}

TEST_CASE("files named by a config: missing, a directory, the base model's own config errors name its file") {
  auto c = spo_config();
  c.base.weights = "/nonexistent/base.safetensors";
  CHECK(config_message(c) == "spo.json: base.weights: no such file: \"/nonexistent/base.safetensors\"");
  c = spo_config();
  c.rater.judge.weights = fs::temp_directory_path().string();
  CHECK(config_message(c) == "spo.json: rater.judge.weights: \"" + fs::temp_directory_path().string() +
                                 "\" is a directory, expected a file");
  // A bad value in the base model's config names that file, not the experiment's.
  const auto dir = scratch("run_inputs_base");
  auto base = io::load_config<train::PretrainConfig>(in_source("configs/pretrain_base.json"));
  base.sampling.num_inference_steps = 0;
  io::save_config(dir / "pretrain_base.json", base);
  c = spo_config();
  c.base.config = (dir / "pretrain_base.json").string();
  const auto m = config_message(c);
  CHECK(m == (dir / "pretrain_base.json").string() +
                 ": sampling.num_inference_steps: must be in [1, 1000] (schedule.num_train_timesteps), got 0");
  check_user_facing(m);
  // A config path that is a directory is refused by name (it was std::bad_alloc).
  CHECK_THROWS_WITH_AS(io::load_config<experiment::SpoConfig>(dir), doctest::Contains(dir.string().c_str()),
                       input_error);
  fs::remove_all(dir);
}

TEST_CASE("--resume refuses a changed recipe and names every changed key with both values") {
  const auto dir = scratch("run_inputs_resume");
  Net net;
  Generator g{1, 0};
  net.a.reset_parameters(g);
  optim::AdamW<float> opt(optim::AdamWOptions{});
  const auto recorded = io::to_json(spo_config());
  nlohmann::json stored = recorded;
  stored["train_wall_s"] = 12.5;  // what a trainer adds to the config it records
  stored["train_cpu_s"] = 11.5;
  io::save_checkpoint(dir / "checkpoint.safetensors", net, opt, io::CheckpointInfo{3, stored, Generator{7, 0}});

  io::ResumeRules rules;
  rules.length_key = "train.rounds";
  rules.length_flag = "--allow-rounds-change";
  const auto ckpt = dir / "checkpoint.safetensors";
  CHECK_NOTHROW(io::check_resume_config(ckpt, recorded, rules));

  // output_dir is where the run is, not what it trains
  auto moved = recorded;
  moved["output_dir"] = "elsewhere";
  CHECK_NOTHROW(io::check_resume_config(ckpt, moved, rules));

  // the tester's case: seed, loss.beta, train.lr and resampler.k changed together
  auto changed = spo_config();
  changed.seed = 7;
  changed.loss.beta = 5;
  changed.train.lr = 1e-3;
  changed.resampler.k = 8;
  try {
    io::check_resume_config(ckpt, io::to_json(changed), rules);
    FAIL("a changed recipe was accepted");
  } catch (const input_error& e) {
    const std::string m = e.what();
    CHECK(m.starts_with(ckpt.string() + ": --resume refused"));
    CHECK(m.find("seed: 42 in the checkpoint, 7 now") != std::string::npos);
    CHECK(m.find("loss.beta: 10.0 in the checkpoint, 5.0 now") != std::string::npos);
    CHECK(m.find("train.lr: 0.0001 in the checkpoint, 0.001 now") != std::string::npos);
    CHECK(m.find("resampler.k: 4 in the checkpoint, 8 now") != std::string::npos);
  }

  // the number of rounds changes only with the flag; nothing else does with it
  auto longer = spo_config();
  longer.train.rounds = 20;
  CHECK_THROWS_WITH_AS(io::check_resume_config(ckpt, io::to_json(longer), rules),
                       doctest::Contains("train.rounds: 12 in the checkpoint, 20 now; restore these values, or start "
                                         "a new run in another output directory (--allow-rounds-change allows "
                                         "changing train.rounds only)"),
                       input_error);
  rules.allow_length_change = true;
  CHECK_NOTHROW(io::check_resume_config(ckpt, io::to_json(longer), rules));
  longer.train.templates = {0, 1};
  CHECK_THROWS_WITH_AS(io::check_resume_config(ckpt, io::to_json(longer), rules),
                       doctest::Contains("train.templates: [0,1,2,3] in the checkpoint, [0,1] now"), input_error);

  // the experiment's check: only with --resume and a checkpoint present
  experiment::CommandLine cli;
  cli.resume = false;
  CHECK_NOTHROW(experiment::check_resume(cli, dir.string(), io::to_json(changed), "train.rounds", "rounds"));
  cli.resume = true;
  CHECK_THROWS_AS(experiment::check_resume(cli, dir.string(), io::to_json(changed), "train.rounds", "rounds"),
                  input_error);
  CHECK_NOTHROW(
      experiment::check_resume(cli, (dir / "fresh").string(), io::to_json(changed), "train.rounds", "rounds"));
  fs::remove_all(dir);
}

TEST_CASE("config_changes: leaves by key path, added and removed keys, numbers by value") {
  const auto a = nlohmann::json::parse(R"({"a": {"b": 1, "c": [1, 2]}, "d": "x", "gone": true})");
  const auto b = nlohmann::json::parse(R"({"a": {"b": 1.0, "c": [1, 3]}, "d": "x", "new": 2})");
  const auto changes = io::config_changes(a, b);
  REQUIRE(changes.size() == 3);
  CHECK(changes[0].key == "a.c");
  CHECK(changes[1].key == "gone");
  CHECK(changes[1].current.is_null());
  CHECK(changes[2].key == "new");
  CHECK(changes[2].recorded.is_null());
}

TEST_CASE("the run record reads the source tree's revision without rewriting its index") {
  if (std::system("git --version > /dev/null 2>&1") != 0) return;
  const auto dir = scratch("run_inputs_git");
  const std::string q = "'" + dir.string() + "'";
  REQUIRE(std::system(("cd " + q +
                       " && git init -q . && git config user.email t@t && git config user.name t && "
                       "echo a > f && git add f && git commit -qm a")
                          .c_str()) == 0);
  // A file whose stat data changed: a plain `git status` refreshes and rewrites the index (taking index.lock).
  REQUIRE(std::system(("sleep 1 && touch " + q + "/f").c_str()) == 0);
  struct stat before {
  }, after{};
  REQUIRE(::stat((dir / ".git" / "index").c_str(), &before) == 0);
  const auto rev = io::git_revision(dir);
  CHECK(rev.size() == 40);  // unchanged content: not dirty
  REQUIRE(::stat((dir / ".git" / "index").c_str(), &after) == 0);
  CHECK(before.st_ino == after.st_ino);
  CHECK(before.st_mtim.tv_sec == after.st_mtim.tv_sec);
  CHECK(before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);
  fs::remove_all(dir);
}
