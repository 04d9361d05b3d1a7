// SPDX-License-Identifier: MIT
#include "spo/io/diffusers_pipeline.hpp"

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/mapped_safetensors.hpp"
#include "spo/io/sharded_safetensors.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/linear.hpp"

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

const fs::path layout_dir = fs::path(SPO_TEST_DATA_DIR) / "pipeline_layout";
const fs::path tiny_sd = layout_dir / "tiny_sd";

/// A scratch copy of the tiny pipeline that a test may break.
struct ScratchPipeline {
  fs::path root;
  explicit ScratchPipeline(const std::string& name) {
    root = fs::temp_directory_path() / ("spo_pipeline_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::copy(tiny_sd, root, fs::copy_options::recursive);
  }
  ~ScratchPipeline() { fs::remove_all(root); }
};

bool same_bytes(const TensorBytes& a, const TensorBytes& b) {
  return a.dtype == b.dtype && std::equal(a.shape.begin(), a.shape.end(), b.shape.begin(), b.shape.end()) &&
         a.data.size() == b.data.size() && std::memcmp(a.data.data(), b.data.data(), a.data.size()) == 0;
}

}  // namespace

TEST_CASE("a pipeline folder saved by diffusers: components, configs and weights as stored") {
  const DiffusersPipeline p(tiny_sd);
  CHECK(p.class_name() == "StableDiffusionPipeline");
  CHECK(p.has("unet"));
  CHECK(p.has("text_encoder"));
  CHECK(!p.has("safety_checker"));  // [null, null]
  CHECK(p.component("unet").class_name == "UNet2DConditionModel");
  CHECK(p.component("text_encoder").library == "transformers");
  CHECK(p.options().at("requires_safety_checker") == false);
  CHECK(p.config("scheduler").filename() == "scheduler_config.json");
  CHECK(p.config("unet").filename() == "config.json");
  // Plain weights come first; a requested variant is honoured; a component with only one variant uses it.
  CHECK(p.weights_path("unet").filename() == "diffusion_pytorch_model.safetensors");
  CHECK(p.weights_path("unet", "fp16").filename() == "diffusion_pytorch_model.fp16.safetensors");
  CHECK(p.weights_path("text_encoder").filename() == "model.safetensors.index.fp16.json");
  CHECK_THROWS_WITH_AS(p.weights_path("vae", "fp16"), doctest::Contains("no \"fp16\" variant"), input_error);
  CHECK_THROWS_WITH_AS(p.component("text_encoder_2"), doctest::Contains("no component \"text_encoder_2\""),
                       input_error);

  // Every tensor the reference libraries wrote, with its shape, dtype and first values.
  const json expected = parse_json(read_file_text(layout_dir / "expected.json"), "expected.json");
  int tensors = 0;
  for (const auto& [comp, files] : expected.items()) {
    const bool sharded = comp == "text_encoder";
    const ShardedSafetensors w = sharded ? p.weights(comp) : ShardedSafetensors(tiny_sd / comp / files.begin().key());
    std::size_t listed = 0;
    for (const auto& [file, entries] : files.items()) {
      const MappedSafetensors one(tiny_sd / comp / file);
      listed += entries.size();
      for (const auto& [name, e] : entries.items()) {
        CAPTURE(name);
        REQUIRE(one.contains(name));
        const TensorBytes b = one.bytes(name);
        CHECK(std::vector<std::int64_t>(b.shape.begin(), b.shape.end()) == e["shape"].get<std::vector<std::int64_t>>());
        CHECK(std::string(dtype_name(b.dtype)) == (e["dtype"] == "float16" ? "F16" : "F32"));
        const auto values = read_tensor<double>(one, name);
        const auto first = e["first"].get<std::vector<double>>();
        for (std::size_t i = 0; i < first.size(); ++i) CHECK(values[static_cast<std::int64_t>(i)] == first[i]);
        if (sharded) CHECK(same_bytes(w.bytes(name), b));
        ++tensors;
      }
    }
    if (sharded) CHECK(w.size() == listed);
  }
  CHECK(tensors > 100);
}

TEST_CASE("mapped and in-memory reads agree bit for bit; released pages read back the same") {
  for (const auto& file : {tiny_sd / "unet" / "diffusion_pytorch_model.fp16.safetensors",
                           tiny_sd / "vae" / "diffusion_pytorch_model.safetensors"}) {
    const NamedTensors mem = load_safetensors(file);
    const MappedSafetensors map(file);
    CHECK(map.names() == mem.names());
    CHECK(map.metadata == mem.metadata);
    for (const auto& name : mem.names()) {
      CHECK(same_bytes(map.bytes(name), mem.bytes(name)));
      map.release(name);
      CHECK(same_bytes(map.bytes(name), mem.bytes(name)));
    }
  }
  CHECK_THROWS_WITH_AS((void)MappedSafetensors(tiny_sd / "unet" / "nope.safetensors"),
                       doctest::Contains("nope.safetensors"), input_error);
  CHECK_THROWS_WITH_AS((void)MappedSafetensors(tiny_sd / "unet"), doctest::Contains("unet"), input_error);
}

TEST_CASE("a corrupt file is refused with the same message mapped or read") {
  ScratchPipeline s("corrupt");
  const auto file = s.root / "vae" / "diffusion_pytorch_model.safetensors";
  fs::resize_file(file, fs::file_size(file) - 3);
  std::string read_msg, map_msg;
  try {
    load_safetensors(file);
  } catch (const input_error& e) {
    read_msg = e.what();
  }
  try {
    MappedSafetensors m(file);
  } catch (const input_error& e) {
    map_msg = e.what();
  }
  CHECK(!read_msg.empty());
  CHECK(read_msg == map_msg);
  fs::resize_file(file, 5);
  CHECK_THROWS_WITH_AS((void)MappedSafetensors(file), doctest::Contains("fewer than the 8-byte header"), input_error);
}

TEST_CASE("state dicts load from mapped and sharded stores as from memory, strictness and checks included") {
  const fs::path dir = fs::temp_directory_path() / ("spo_sharded_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  nn::Linear<float> src(3, 2);
  Generator g{7, 0};
  src.reset_parameters(g);
  NamedTensors all = state_dict(src);
  NamedTensors w, b;
  w.set_raw("weight", all.at("weight"));
  b.set_raw("bias", all.at("bias"));
  save_safetensors(dir / "m-00001-of-00002.safetensors", w);
  save_safetensors(dir / "m-00002-of-00002.safetensors", b);
  auto write_index = [&](const std::string& text) { write_file_atomic(dir / "m.safetensors.index.json", text); };
  write_index(R"({"metadata": {}, "weight_map": {"weight": "m-00001-of-00002.safetensors",
                                                  "bias": "m-00002-of-00002.safetensors"}})");
  nn::Linear<float> dst(3, 2);
  const ShardedSafetensors sharded(dir / "m.safetensors.index.json");
  CHECK(sharded.files().size() == 2);
  const auto r = load_state_dict(dst, sharded);
  CHECK(r.loaded.size() == 2);
  for (std::int64_t i = 0; i < 6; ++i) CHECK(dst.weight().value[i] == src.weight().value[i]);
  nn::Linear<double> wide(3, 2);
  StateDictLoadOptions lenient;
  lenient.strict = false;
  load_state_dict(wide, MappedSafetensors(dir / "m-00001-of-00002.safetensors"), lenient);
  CHECK(wide.weight().value[4] == static_cast<double>(src.weight().value[4]));
  nn::Linear<float> wrong(2, 2);
  CHECK_THROWS_WITH_AS(load_state_dict(wrong, sharded), doctest::Contains("\"weight\": file has [2, 3]"), input_error);

  write_index(R"({"weight_map": {"weight": "m-00001-of-00002.safetensors", "bias": "m-00003-of-00002.safetensors"}})");
  CHECK_THROWS_WITH_AS((void)ShardedSafetensors(dir / "m.safetensors.index.json"),
                       doctest::Contains("shard \"m-00003-of-00002.safetensors\" is missing"), input_error);
  write_index(R"({"weight_map": {"weight": "m-00001-of-00002.safetensors", "bias": "m-00001-of-00002.safetensors"}})");
  CHECK_THROWS_WITH_AS((void)ShardedSafetensors(dir / "m.safetensors.index.json"),
                       doctest::Contains("tensor \"bias\" is assigned to"), input_error);
  save_safetensors(dir / "both.safetensors", all);
  write_index(R"({"weight_map": {"weight": "both.safetensors"}})");
  CHECK_THROWS_WITH_AS((void)ShardedSafetensors(dir / "m.safetensors.index.json"), doctest::Contains("does not assign"),
                       input_error);
  write_index(R"({"weight_map": {"weight": "../m-00001-of-00002.safetensors"}})");
  CHECK_THROWS_WITH_AS((void)ShardedSafetensors(dir / "m.safetensors.index.json"),
                       doctest::Contains("is not a file name in the index's folder"), input_error);
  write_index(R"({"metadata": {}})");
  CHECK_THROWS_WITH_AS((void)ShardedSafetensors(dir / "m.safetensors.index.json"), doctest::Contains("weight_map"),
                       input_error);
  fs::remove_all(dir);
}

TEST_CASE("pipeline folders with missing parts, pickle-only weights or several variants are refused by name") {
  CHECK_THROWS_WITH_AS((void)DiffusersPipeline(layout_dir / "absent"), doctest::Contains("no such directory"),
                       input_error);
  CHECK_THROWS_WITH_AS((void)DiffusersPipeline(layout_dir), doctest::Contains("model_index.json is missing"),
                       input_error);
  {
    ScratchPipeline s("parts");
    fs::remove_all(s.root / "vae");
    const DiffusersPipeline p(s.root);
    CHECK_THROWS_WITH_AS(p.component("vae"), doctest::Contains("listed in model_index.json but"), input_error);
    fs::remove(s.root / "unet" / "config.json");
    CHECK_THROWS_WITH_AS(p.config("unet"), doctest::Contains("has no config.json"), input_error);
    // Two variants and no plain file: the user must choose.
    fs::rename(s.root / "unet" / "diffusion_pytorch_model.safetensors",
               s.root / "unet" / "diffusion_pytorch_model.fp32.safetensors");
    CHECK_THROWS_WITH_AS(p.weights_path("unet"), doctest::Contains("only variant weights (fp16, fp32)"), input_error);
    // Pickle only: named, with the converter.
    for (const auto& e : fs::directory_iterator(s.root / "text_encoder")) fs::remove(e.path());
    write_file_atomic(s.root / "text_encoder" / "pytorch_model.bin", "not read");
    CHECK_THROWS_WITH_AS(p.weights_path("text_encoder"), doctest::Contains("only pickle weights (pytorch_model.bin)"),
                         input_error);
    CHECK_THROWS_WITH_AS(p.weights_path("text_encoder"), doctest::Contains("tools/convert_to_safetensors.py"),
                         input_error);
  }
  {
    ScratchPipeline s("index");
    write_file_atomic(s.root / "model_index.json", R"({"_class_name": "X", "unet": ["diffusers"]})");
    CHECK_THROWS_WITH_AS((void)DiffusersPipeline(s.root), doctest::Contains("must be [library, class]"), input_error);
    write_file_atomic(s.root / "model_index.json", R"({"unet": ["diffusers", "UNet2DConditionModel"]})");
    CHECK_THROWS_WITH_AS((void)DiffusersPipeline(s.root), doctest::Contains("_class_name is missing"), input_error);
  }
}
