// SPDX-License-Identifier: MIT
// An interrupted pretraining resumed from its checkpoint reaches the same weights as an uninterrupted run.
#include <filesystem>

#include <doctest/doctest.h>

#include "spo/io/config.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/train/pretraining.hpp"

using namespace spo;
namespace fs = std::filesystem;
using Model = model::FashionModel<float>;
using Run = train::Pretraining<Model, diffusion::LinearBetas, diffusion::EpsilonPrediction>;

namespace {
train::PretrainConfig tiny_config(const fs::path& out, std::int64_t steps) {
  train::PretrainConfig c;
  c.seed = 3;
  c.data_dir = std::string(data::fashion_mnist_default_dir);
  c.output_dir = out.string();
  c.resolution = 32;
  c.unet = model::UNetConfig{.block_out_channels = {8, 16},
                             .attention = {false, true},
                             .layers_per_block = 1,
                             .attention_heads = 2,
                             .cross_attention_dim = 8,
                             .norm_num_groups = 4};
  c.text = {6};
  c.schedule = {"linear", 1e-4, 0.02, 1000, "epsilon", "leading", 1};
  c.sampling = {4, 2.0, 1.0};
  c.train = {4, steps, 1e-3, 2, 1e-4, 1.0, 0.2, 0.9, 1, 2, 1000};
  return c;
}

Model make_model(const train::PretrainConfig& c) {
  Generator init{c.seed, 0};
  return model::make_fashion_model<Model>(c.unet, c.text, init);
}

std::vector<float> weights(Model& m) {
  std::vector<float> w;
  m.visit_parameters([&](std::string_view, nn::Parameter<float>& p) {
    w.insert(w.end(), p.value.data(), p.value.data() + p.value.numel());
  });
  return w;
}
}  // namespace

TEST_CASE("pretraining resumes exactly: 2 + 2 steps == 4 steps, bitwise") {
  const auto data = data::load_fashion_mnist(data::Split::test);
  const fs::path dir = fs::temp_directory_path() / ("spo_resume_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");

  auto ca = tiny_config(dir / "a", 4);
  Model ma = make_model(ca);
  Run ra(ma, ca, io::to_json(ca));
  for (int i = 0; i < 4; ++i) ra.train_step(data);

  auto cb = tiny_config(dir / "b", 4);
  {
    Model mb = make_model(cb);
    Run rb(mb, cb, io::to_json(cb));
    rb.train_step(data);
    rb.train_step(data);
    rb.save(dir / "b" / "checkpoint.safetensors");
    rb.train_step(data);  // work lost at the "crash"
  }
  Model mc = make_model(cb);
  Run rc(mc, cb, io::to_json(cb));
  rc.resume(dir / "b" / "checkpoint.safetensors");
  CHECK(rc.step() == 2);
  rc.train_step(data);
  rc.train_step(data);
  CHECK(weights(ma) == weights(mc));

  // A different seed gives different weights (the comparison above can fail).
  auto cd = tiny_config(dir / "a", 4);
  cd.seed = 4;
  Model md = make_model(ca);
  Run rd(md, cd, io::to_json(cd));
  for (int i = 0; i < 4; ++i) rd.train_step(data);
  CHECK(weights(ma) != weights(md));
  fs::remove_all(dir);
}

TEST_CASE("pretraining config: policies must match the compiled ones; bad values are errors") {
  const fs::path out = fs::temp_directory_path();
  auto c = tiny_config(out, 4);
  c.schedule.beta_schedule = "scaled_linear";
  Model m = make_model(tiny_config(out, 4));
  CHECK_THROWS_WITH_AS(Run(m, c, io::to_json(c)), doctest::Contains("compiled with \"linear\""), spo::error);
  c = tiny_config(out, 4);
  c.train.cond_dropout = 1.5;
  CHECK_THROWS_WITH_AS(Run(m, c, io::to_json(c)), doctest::Contains("cond_dropout"), spo::error);
  // Unknown and missing keys in the JSON file are errors naming the key.
  auto j = io::to_json(tiny_config(out, 4));
  j["train"]["learning_rate"] = 0.1;
  CHECK_THROWS_WITH_AS(io::from_json<train::PretrainConfig>(j, "p.json"), doctest::Contains("learning_rate"),
                       spo::error);
  j = io::to_json(tiny_config(out, 4));
  j["unet"].erase("attention");
  CHECK_THROWS_WITH_AS(io::from_json<train::PretrainConfig>(j, "p.json"), doctest::Contains("unet.attention"),
                       spo::error);
}
