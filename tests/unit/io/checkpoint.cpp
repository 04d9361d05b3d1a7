// SPDX-License-Identifier: MIT
#include "spo/io/checkpoint.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/layer.hpp"
#include "spo/nn/linear.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

struct Model {
  nn::Linear<float> a{3, 4};
  nn::Linear<float> b{4, 2};
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    a.visit_parameters(f, nn::join_name(prefix, "a"));
    b.visit_parameters(f, nn::join_name(prefix, "b"));
  }
};

struct Other {
  nn::Linear<float> a{3, 5};
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    a.visit_parameters(f, nn::join_name(prefix, "a"));
  }
};

Model make_model(std::uint64_t seed) {
  Model m;
  Generator g{seed, 0};
  m.a.reset_parameters(g);
  m.b.reset_parameters(g);
  return m;
}

void train(Model& m, optim::AdamW<float>& opt, int steps, Generator& g) {
  for (int s = 0; s < steps; ++s) {
    m.visit_parameters([&](std::string_view, auto& p) { fill_normal<float>(p.grad.view(), g); }, {});
    opt.step(m);
  }
}

std::vector<std::byte> params_bytes(Model& m) { return serialize_safetensors(state_dict(m)); }

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("spo_test_checkpoint_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

void write_bytes(const fs::path& p, const std::vector<std::byte>& b, std::size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(n));
}

}  // namespace

TEST_CASE("save/load round trip restores parameters, optimizer state, RNG position, step and config") {
  TempDir dir;
  Model m = make_model(1);
  optim::AdamW<float> opt({.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.0});
  Generator g{99, 0};
  train(m, opt, 3, g);
  const json config = {{"optimizer", {{"lr", 1e-2}}}, {"name", "run"}};
  save_checkpoint(dir.path / "ckpt.safetensors", m, opt, {.step = 3, .config = config, .rng = g});

  Model m2 = make_model(2);
  optim::AdamW<float> opt2(opt.options());
  const auto info = load_checkpoint(dir.path / "ckpt.safetensors", m2, opt2);
  CHECK(info.step == 3);
  CHECK(info.config == config);
  CHECK(info.rng == g);
  CHECK(params_bytes(m2) == params_bytes(m));
  CHECK(opt2.step_count() == 3);

  // Continuing both runs gives identical parameters: the state is complete.
  Generator g2 = info.rng;
  train(m, opt, 2, g);
  train(m2, opt2, 2, g2);
  CHECK(params_bytes(m2) == params_bytes(m));

  const auto file = load_safetensors(dir.path / "ckpt.safetensors");
  CHECK(file.metadata.at("format") == "spo.checkpoint");
  const json meta = json::parse(file.metadata.at("spo.checkpoint"));
  CHECK(meta["optimizer"]["options"]["beta2"] == 0.99);
  CHECK(file.contains("model.a.weight"));
  CHECK(file.contains("optimizer.exp_avg_sq.b.bias"));
}

TEST_CASE("a truncated or corrupted checkpoint is rejected and the previous checkpoint stays intact") {
  TempDir dir;
  const fs::path path = dir.path / "ckpt.safetensors";
  Model m = make_model(3);
  optim::AdamW<float> opt;
  Generator g{5, 0};
  train(m, opt, 2, g);
  save_checkpoint(path, m, opt, {.step = 2, .config = json::object(), .rng = g});
  const auto saved_params = params_bytes(m);

  // The next save "crashes" half way: its temporary holds a truncated file, the checkpoint itself is untouched.
  train(m, opt, 1, g);
  const fs::path next = dir.path / "next.safetensors";
  save_checkpoint(next, m, opt, {.step = 3, .config = json::object(), .rng = g});
  const auto full = read_file_bytes(next);
  write_bytes(fs::path(path.string() + ".tmp.12345"), full, full.size() / 2);

  Model fresh = make_model(4);
  optim::AdamW<float> fresh_opt;
  CHECK(load_checkpoint(path, fresh, fresh_opt).step == 2);
  CHECK(params_bytes(fresh) == saved_params);

  // Every truncation of a checkpoint is an error naming the file, and leaves the model untouched.
  const fs::path cut = dir.path / "cut.safetensors";
  for (std::size_t n : {std::size_t{0}, std::size_t{7}, std::size_t{100}, full.size() / 2, full.size() - 1}) {
    write_bytes(cut, full, n);
    Model target = make_model(6);
    const auto before = params_bytes(target);
    optim::AdamW<float> o;
    CHECK_THROWS_WITH_AS(load_checkpoint(cut, target, o), doctest::Contains("cut.safetensors"), error);
    CHECK(params_bytes(target) == before);
    CHECK(o.step_count() == 0);
  }

  // A flipped bit in the tensor data is caught by the checksum.
  auto flipped = full;
  flipped[flipped.size() - 3] ^= std::byte{0x10};
  write_bytes(cut, flipped, flipped.size());
  optim::AdamW<float> o;
  CHECK_THROWS_WITH_AS(load_checkpoint(cut, fresh, o), doctest::Contains("CRC-32 mismatch"), error);
}

TEST_CASE("a checkpoint for a different model or a plain safetensors file is rejected with the reason") {
  TempDir dir;
  Model m = make_model(7);
  optim::AdamW<float> opt;
  Generator g{1, 0};
  train(m, opt, 1, g);
  save_checkpoint(dir.path / "ckpt.safetensors", m, opt, {.step = 1, .config = json::object(), .rng = g});

  Other other;
  optim::AdamW<float> o;
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.path / "ckpt.safetensors", other, o),
                       doctest::Contains("\"model.a.weight\": file has [4, 3], model has [5, 3]"), error);

  save_state_dict(dir.path / "weights.safetensors", m);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.path / "weights.safetensors", m, o),
                       doctest::Contains("weights.safetensors: invalid checkpoint: metadata \"format\""), error);

  // Optimizer state of a frozen parameter: the model must have the same trainable set.
  nn::set_trainable(m.b, false);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.path / "ckpt.safetensors", m, o), doctest::Contains("frozen but has state"),
                       error);
}

TEST_CASE("a checkpoint with a NaN or infinite model or optimizer tensor is rejected before anything changes") {
  TempDir dir;
  Model m = make_model(8);
  optim::AdamW<float> opt;
  Generator g{3, 0};
  train(m, opt, 2, g);
  const fs::path path = dir.path / "ckpt.safetensors";
  const CheckpointInfo info{.step = 2, .config = json::object(), .rng = g};

  const float saved = m.b.weight().value[5];
  m.b.weight().value[5] = std::numeric_limits<float>::quiet_NaN();  // a diverged run saved its state
  save_checkpoint(path, m, opt, info);
  Model target = make_model(9);
  const auto before = params_bytes(target);
  optim::AdamW<float> o;
  CHECK_THROWS_WITH_AS(
      load_checkpoint(path, target, o),
      doctest::Contains((path.string() + ": tensor \"model.b.weight\" (F32 [2, 4]): element 5 is NaN").c_str()),
      input_error);
  CHECK(params_bytes(target) == before);
  CHECK(o.step_count() == 0);

  // The same for optimizer moments: rewrite one with -Inf and a matching checksum.
  m.b.weight().value[5] = saved;
  save_checkpoint(path, m, opt, info);
  NamedTensors t = load_safetensors(path);
  auto moment = t.get<float>("optimizer.exp_avg_sq.a.bias");
  moment[2] = -std::numeric_limits<float>::infinity();
  t.set("optimizer.exp_avg_sq.a.bias", moment);
  json meta = json::parse(t.metadata.at("spo.checkpoint"));
  meta["crc32"] = io::detail::tensors_crc32(t);
  t.metadata["spo.checkpoint"] = meta.dump();
  save_safetensors(path, t);
  CHECK_THROWS_WITH_AS(load_checkpoint(path, target, o),
                       doctest::Contains("\"optimizer.exp_avg_sq.a.bias\" (F32 [4]): element 2 is -Inf"), input_error);
  CHECK(params_bytes(target) == before);
  CHECK(o.step_count() == 0);
}

TEST_CASE("step counts in checkpoint metadata are parsed strictly") {
  TempDir dir;
  Model m = make_model(10);
  optim::AdamW<float> opt;
  Generator g{4, 0};
  train(m, opt, 3, g);
  NamedTensors file;
  file.source = "resume.safetensors";
  append_optimizer_state(file, opt.export_state(), "optimizer.");
  CHECK(read_optimizer_state<float>(file, "optimizer.").step == 3);
  for (const std::string bad :
       {"", "+3", " 3", "3 ", "-0", "-3", "3x", "0x3", "3.0", "1e3", "9223372036854775808", "99999999999999999999"}) {
    INFO("step \"" << bad << "\"");
    file.metadata["optimizer.step"] = bad;
    CHECK_THROWS_WITH_AS(
        read_optimizer_state<float>(file, "optimizer."),
        doctest::Contains(
            ("resume.safetensors: metadata \"optimizer.step\" = \"" + bad + "\" is not a step count").c_str()),
        input_error);
  }
  file.metadata["optimizer.step"] = "9223372036854775807";
  CHECK(read_optimizer_state<float>(file, "optimizer.").step == INT64_MAX);
  file.metadata["optimizer.step"] = "007";
  CHECK(read_optimizer_state<float>(file, "optimizer.").step == 7);
  file.metadata.erase("optimizer.step");
  CHECK_THROWS_WITH_AS(read_optimizer_state<float>(file, "optimizer."),
                       "resume.safetensors: optimizer state has no metadata \"optimizer.step\"", input_error);

  // The JSON steps of a checkpoint: negative or beyond int64 is an error, not a wrapped value.
  const fs::path path = dir.path / "ckpt.safetensors";
  save_checkpoint(path, m, opt, {.step = 3, .config = json::object(), .rng = g});
  const NamedTensors saved = load_safetensors(path);
  for (const auto& [pointer, value, what] :
       {std::tuple{"/step", json(-1), "metadata \"step\" is negative"},
        std::tuple{"/step", json(std::uint64_t{1} << 63), "metadata \"step\" is out of range"},
        std::tuple{"/optimizer/step", json(-2), "metadata \"optimizer\" \"step\" is negative"},
        std::tuple{"/optimizer/step", json(~std::uint64_t{0}), "metadata \"step\" is out of range"}}) {
    INFO(pointer << " = " << value.dump());
    NamedTensors t = saved;
    json meta = json::parse(t.metadata.at("spo.checkpoint"));
    meta[json::json_pointer(pointer)] = value;
    t.metadata["spo.checkpoint"] = meta.dump();
    save_safetensors(path, t);
    Model target = make_model(11);
    optim::AdamW<float> o;
    CHECK_THROWS_WITH_AS(load_checkpoint(path, target, o), (path.string() + ": invalid checkpoint: " + what).c_str(),
                         input_error);
  }
}
