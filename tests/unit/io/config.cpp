// SPDX-License-Identifier: MIT
#include "spo/io/config.hpp"

#include <filesystem>

#include <doctest/doctest.h>

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {
enum class Prediction { epsilon, v_prediction };
}  // namespace

template <>
struct spo::io::enum_strings<Prediction> {
  static constexpr std::array values{std::pair{std::string_view("epsilon"), Prediction::epsilon},
                                     std::pair{std::string_view("v_prediction"), Prediction::v_prediction}};
};

namespace {

struct OptimizerConfig {
  BOOST_HANA_DEFINE_STRUCT(OptimizerConfig, (double, lr), (double, weight_decay),
                           (std::optional<double>, max_grad_norm));
};

struct TrainConfig {
  BOOST_HANA_DEFINE_STRUCT(TrainConfig, (std::string, name), (int, steps), (std::uint64_t, seed), (bool, use_ema),
                           (float, beta), (Prediction, prediction), (std::vector<int>, timesteps),
                           (OptimizerConfig, optimizer), (std::vector<OptimizerConfig>, groups),
                           (std::optional<std::string>, resume), (std::map<std::string, double>, weights));
};

const char* sample_text = R"({
  "name": "spo-sd15",
  "steps": 1000,
  "seed": 18446744073709551615,
  "use_ema": false,
  "beta": 0.5,
  "prediction": "v_prediction",
  "timesteps": [999, 500, 0],
  "optimizer": {"lr": 1e-5, "weight_decay": 0.01, "max_grad_norm": 1.0},
  "groups": [{"lr": 2, "weight_decay": 0.0}, {"lr": 3e-4, "weight_decay": 0.1}],
  "weights": {"aesthetic": 0.7, "clip": 0.3}
})";

json sample() { return json::parse(sample_text); }

/// from_json on `j` must throw naming the source and `what`.
void expect_error(const json& j, const std::string& what) {
  INFO("expected: " << what);
  CHECK_THROWS_WITH_AS(from_json<TrainConfig>(j, "train.json"), doctest::Contains(("train.json: " + what).c_str()),
                       error);
}

}  // namespace

static_assert(ConfigStruct<TrainConfig>);
static_assert(RegisteredEnum<Prediction>);

TEST_CASE("reads every supported member type") {
  const auto c = from_json<TrainConfig>(sample(), "train.json");
  CHECK(c.name == "spo-sd15");
  CHECK(c.steps == 1000);
  CHECK(c.seed == 18446744073709551615ull);
  CHECK(c.use_ema == false);
  CHECK(c.beta == 0.5f);
  CHECK(c.prediction == Prediction::v_prediction);
  CHECK(c.timesteps == std::vector<int>{999, 500, 0});
  CHECK(c.optimizer.lr == 1e-5);
  CHECK(c.optimizer.max_grad_norm == 1.0);
  CHECK(c.groups.size() == 2);
  CHECK(c.groups[0].lr == 2.0);  // an integer is a valid floating-point value
  CHECK(!c.groups[0].max_grad_norm.has_value());
  CHECK(!c.resume.has_value());
  CHECK(c.weights.at("clip") == 0.3);
}

TEST_CASE("round trip: to_json(from_json(j)) == j") {
  json j = sample();
  CHECK(to_json(from_json<TrainConfig>(j, "a")) == j);
  j["resume"] = "ckpt/step-100.safetensors";
  j["optimizer"].erase("max_grad_norm");
  CHECK(to_json(from_json<TrainConfig>(j, "b")) == j);
  j["groups"][0]["lr"] = 2.5;  // "lr": 2 reads as 2.0 and compares equal as JSON numbers, 2.5 checks a real change
  CHECK(to_json(from_json<TrainConfig>(j, "c")) == j);
  CHECK(to_json(from_json<TrainConfig>(j, "c")) != sample());
}

TEST_CASE("unknown, missing and mistyped keys are errors naming the source and the full key path") {
  auto with = [](auto edit) {
    json j = sample();
    edit(j);
    return j;
  };
  expect_error(with([](json& j) { j["optimizer"]["betas"] = {0.9, 0.999}; }), "optimizer.betas: unknown key");
  expect_error(with([](json& j) { j["optimizer"].erase("lr"); }), "optimizer.lr: missing key");
  expect_error(with([](json& j) { j["optimizer"]["lr"] = "1e-5"; }), "optimizer.lr: expected a number, got string");
  expect_error(with([](json& j) { j["groups"][1]["weight_decay"] = true; }),
               "groups[1].weight_decay: expected a number");
  expect_error(with([](json& j) { j["steps"] = 1.5; }), "steps: expected an integer, got number 1.5");
  expect_error(with([](json& j) { j["steps"] = 10.0; }), "steps: expected an integer");
  expect_error(with([](json& j) { j["steps"] = 10000000000; }), "steps: integer 10000000000 is out of range");
  expect_error(with([](json& j) { j["seed"] = -1; }), "seed: integer -1 is out of range");
  expect_error(with([](json& j) { j["use_ema"] = 0; }), "use_ema: expected true or false, got integer 0");
  expect_error(with([](json& j) { j["beta"] = 1e300; }), "beta: number 1e+300 is out of range");
  expect_error(with([](json& j) { j["prediction"] = "sample"; }),
               "prediction: unknown value \"sample\", expected one of \"epsilon\", \"v_prediction\"");
  expect_error(with([](json& j) { j["timesteps"][2] = "x"; }), "timesteps[2]: expected an integer");
  expect_error(with([](json& j) { j["timesteps"] = 5; }), "timesteps: expected an array");
  expect_error(with([](json& j) { j["weights"]["clip"] = "0.3"; }), "weights.clip: expected a number");
  expect_error(with([](json& j) { j["optimizer"] = nullptr; }), "optimizer: expected an object, got null");
  expect_error(json::array(), "<root>: expected an object");
  // optional members accept null or absence
  CHECK_NOTHROW(from_json<TrainConfig>(with([](json& j) { j["resume"] = nullptr; }), "x"));
}

TEST_CASE("load_config and save_config: files, parse errors with line and column, duplicate keys") {
  const fs::path dir = fs::temp_directory_path() / ("spo_test_config_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto c = from_json<TrainConfig>(sample(), "s");
  save_config(dir / "train.json", c);
  CHECK(to_json(load_config<TrainConfig>(dir / "train.json")) == sample());
  write_file_atomic(dir / "broken.json", std::string_view("{\n  \"name\": \"x\",\n  \"steps\": ,\n}"));
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>(dir / "broken.json"), doctest::Contains("broken.json"), error);
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>(dir / "broken.json"), doctest::Contains("line 3, column"), error);
  std::string dup = sample_text;
  dup.insert(dup.find("\"steps\""), "\"steps\": 5, ");
  write_file_atomic(dir / "dup.json", dup);
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>(dir / "dup.json"), doctest::Contains("duplicate JSON key \"steps\""),
                       error);
  write_file_atomic(dir / "wrong.json", std::string_view(R"({"lr": 1, "weight_decay": "0"})"));
  CHECK_THROWS_WITH_AS(load_config<OptimizerConfig>(dir / "wrong.json"),
                       doctest::Contains("wrong.json: weight_decay: expected a number"), error);
  CHECK_THROWS_WITH_AS(load_config<TrainConfig>(dir / "missing.json"), doctest::Contains("missing.json"), error);
  fs::remove_all(dir);
}
