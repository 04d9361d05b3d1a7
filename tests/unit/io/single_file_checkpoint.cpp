// SPDX-License-Identifier: MIT
#include "spo/io/single_file_checkpoint.hpp"

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/json.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/io/tensor_store.hpp"
#include "spo/model/unet_2d_condition.hpp"

#include <unistd.h>

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

const fs::path data_dir = fs::path(SPO_TEST_DATA_DIR) / "single_file";

/// A copy of a tiny checkpoint, edited by `edit`, written to a scratch file removed at the end.
struct EditedCheckpoint {
  fs::path path;
  EditedCheckpoint(const std::string& family, const std::string& name, const std::function<void(NamedTensors&)>& edit) {
    NamedTensors t = load_safetensors(data_dir / (family + ".safetensors"));
    edit(t);
    path = fs::temp_directory_path() / ("spo_single_" + name + "_" + std::to_string(::getpid()) + ".safetensors");
    save_safetensors(path, t);
  }
  ~EditedCheckpoint() { fs::remove(path); }
};

void erase_prefix(NamedTensors& t, const std::string& prefix) {
  for (const auto& k : t.names())
    if (k.starts_with(prefix)) t.erase(k);
}

StoredTensor zeros(std::vector<std::int64_t> shape) {
  StoredTensor s;
  s.dtype = Dtype::f32;
  s.shape = std::move(shape);
  std::int64_t n = 1;
  for (auto d : s.shape) n *= d;
  s.data.assign(static_cast<std::size_t>(n) * 4, std::byte{0});
  return s;
}

/// Compares every tensor a component serves with the diffusers state dict of the expected file: the same names, and
/// for each the same dtype, shape and bytes. Returns the number of differences (each reported).
std::size_t compare_component(const SingleFileComponent& c, const NamedTensors& expected, const std::string& name) {
  const json list = json::parse(expected.metadata.at(name));
  const TensorBytes blob = expected.bytes(name);
  std::size_t bad = 0, offset = 0;
  std::set<std::string> want;
  for (const auto& entry : list) {
    const std::string key = entry[0];
    const auto shape = entry[1].get<std::vector<std::int64_t>>();
    want.insert(key);
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    const std::size_t bytes = static_cast<std::size_t>(n) * dtype_size(blob.dtype);
    const std::byte* expected_data = blob.data.data() + offset;
    offset += bytes;
    if (!c.contains(key)) {
      MESSAGE(name << ": not served: " << key);
      ++bad;
      continue;
    }
    const TensorBytes got = c.bytes(key);
    const bool same = got.dtype == blob.dtype &&
                      std::equal(got.shape.begin(), got.shape.end(), shape.begin(), shape.end()) &&
                      got.data.size() == bytes && std::memcmp(got.data.data(), expected_data, bytes) == 0;
    if (!same) {
      MESSAGE(name << ": " << key << " (from " << c.original_name(key) << ") differs: " << got.shape_str() << " "
                   << dtype_name(got.dtype));
      ++bad;
    }
  }
  CHECK(offset == blob.data.size());
  for (const auto& k : c.names())
    if (!want.contains(k)) {
      MESSAGE(name << ": served but not in diffusers' state dict: " << k);
      ++bad;
    }
  return bad;
}

}  // namespace

TEST_CASE("single-file checkpoints of SD1.x, SD2.x and SDXL serve diffusers' state dicts bit for bit") {
  struct Case {
    std::string file;
    CheckpointFamily family;
    Dtype dtype;
    std::vector<std::string> components;
  };
  const std::vector<Case> cases{
      {"sd1", CheckpointFamily::sd1, Dtype::f32, {"unet", "vae", "text_encoder"}},
      {"sd2", CheckpointFamily::sd2, Dtype::bf16, {"unet", "vae", "text_encoder"}},
      {"sdxl", CheckpointFamily::sdxl, Dtype::f16, {"unet", "vae", "text_encoder", "text_encoder_2"}}};
  for (const auto& k : cases) {
    CAPTURE(k.file);
    const SingleFileCheckpoint ckpt(data_dir / (k.file + ".safetensors"));
    const NamedTensors expected = load_safetensors(data_dir / (k.file + ".expected.safetensors"));
    CHECK(ckpt.family() == k.family);
    CHECK(ckpt.dtype() == k.dtype);
    CHECK(ckpt.layers_per_block() == std::stoll(expected.metadata.at("layers_per_block")));
    CHECK(ckpt.component_names() == k.components);
    for (const auto& name : k.components) {
      CAPTURE(name);
      REQUIRE(ckpt.has(name));
      REQUIRE(expected.metadata.contains(name));
      CHECK(compare_component(ckpt.component(name), expected, name) == 0);
      static_assert(TensorStore<SingleFileComponent>);
    }
    CHECK_FALSE(ckpt.has("text_encoder_3"));
  }
}

TEST_CASE("single-file names follow the original block layout: resnets, samplers, reversed decoder, OpenCLIP") {
  const SingleFileCheckpoint sd1(data_dir / "sd1.safetensors");
  const auto& unet = sd1.component("unet");
  CHECK(unet.original_name("down_blocks.0.resnets.1.norm1.weight") ==
        "model.diffusion_model.input_blocks.2.0.in_layers.0.weight");
  CHECK(unet.original_name("down_blocks.1.downsamplers.0.conv.weight") ==
        "model.diffusion_model.input_blocks.6.0.op.weight");
  CHECK(unet.original_name("down_blocks.1.attentions.0.proj_in.weight") ==
        "model.diffusion_model.input_blocks.4.1.proj_in.weight");
  // The first up level has no attention: its upsampler is output_blocks.2.1; the others' is output_blocks.i.2.
  CHECK(unet.original_name("up_blocks.0.upsamplers.0.conv.weight") ==
        "model.diffusion_model.output_blocks.2.1.conv.weight");
  CHECK(unet.original_name("up_blocks.1.upsamplers.0.conv.bias") ==
        "model.diffusion_model.output_blocks.5.2.conv.bias");
  CHECK(unet.original_name("mid_block.resnets.1.time_emb_proj.weight") ==
        "model.diffusion_model.middle_block.2.emb_layers.1.weight");
  CHECK(unet.original_name("up_blocks.2.resnets.0.conv_shortcut.weight") ==
        "model.diffusion_model.output_blocks.6.0.skip_connection.weight");
  const auto& vae = sd1.component("vae");
  CHECK(vae.original_name("decoder.up_blocks.0.upsamplers.0.conv.weight") ==
        "first_stage_model.decoder.up.1.upsample.conv.weight");
  CHECK(vae.original_name("encoder.down_blocks.1.resnets.0.conv_shortcut.weight") ==
        "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight");
  const TensorBytes q = vae.bytes("encoder.mid_block.attentions.0.to_q.weight");
  CHECK(q.shape_str() == "[4, 4]");
  CHECK(sd1.component("text_encoder").contains("text_model.encoder.layers.1.mlp.fc2.bias"));
  CHECK_FALSE(sd1.component("text_encoder").contains("text_model.embeddings.position_ids"));

  const SingleFileCheckpoint sdxl(data_dir / "sdxl.safetensors");
  CHECK(sdxl.component("unet").original_name("add_embedding.linear_2.weight") ==
        "model.diffusion_model.label_emb.0.2.weight");
  const auto& te2 = sdxl.component("text_encoder_2");
  // text_projection [w, p] = [4, 3] in the file, [p, w] served; q/k/v are thirds of in_proj without a copy.
  CHECK(te2.bytes("text_projection.weight").shape_str() == "[3, 4]");
  const auto projection = read_tensor<double>(te2, "text_projection.weight");
  const MappedSafetensors raw(data_dir / "sdxl.safetensors");
  const auto stored = read_tensor<double>(raw, "conditioner.embedders.1.model.text_projection");
  for (std::int64_t r = 0; r < 4; ++r)
    for (std::int64_t c = 0; c < 3; ++c) CHECK(projection[c * 4 + r] == stored[r * 3 + c]);
  const TensorBytes in_proj = raw.bytes("conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight");
  const TensorBytes k_proj = te2.bytes("text_model.encoder.layers.1.self_attn.k_proj.weight");
  const TensorBytes q_proj = te2.bytes("text_model.encoder.layers.1.self_attn.q_proj.weight");
  CHECK(k_proj.data.data() == q_proj.data.data() + q_proj.data.size());  // both in the mapped in_proj_weight
  CHECK(std::memcmp(k_proj.data.data(), in_proj.data.data() + in_proj.data.size() / 3, k_proj.data.size()) == 0);
  CHECK(k_proj.shape_str() == "[4, 4]");
  te2.release("text_model.encoder.layers.1.self_attn.k_proj.weight");
  te2.release("text_projection.weight");

  // SD2: the file's OpenCLIP has 24 resblocks, diffusers' text encoder 23 and no projection.
  const SingleFileCheckpoint sd2(data_dir / "sd2.safetensors");
  const auto& te = sd2.component("text_encoder");
  CHECK(te.contains("text_model.encoder.layers.22.mlp.fc1.weight"));
  CHECK_FALSE(te.contains("text_model.encoder.layers.23.mlp.fc1.weight"));
  CHECK_FALSE(te.contains("text_projection.weight"));
  CHECK(sd2.layers_per_block() == 1);
}

TEST_CASE("single-file checkpoints: unknown families, unknown keys and missing components are refused by name") {
  {
    EditedCheckpoint e("sd1", "family", [](NamedTensors& t) { erase_prefix(t, "cond_stage_model."); });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path),
                         doctest::Contains("not a Stable Diffusion checkpoint in the original layout"), input_error);
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path),
                         doctest::Contains("prefixes: alphas_cumprod, betas, first_stage_model, model, model_ema"),
                         input_error);
  }
  {
    EditedCheckpoint e("sdxl", "refiner", [](NamedTensors& t) {
      erase_prefix(t, "conditioner.embedders.0.");
      t.set_raw("conditioner.embedders.0.model.ln_final.weight", zeros({4}));
      erase_prefix(t, "conditioner.embedders.1.");
    });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path), doctest::Contains("SDXL refiner"), input_error);
  }
  {
    EditedCheckpoint e("sd1", "unet_key", [](NamedTensors& t) {
      t.set_raw("model.diffusion_model.input_blocks.1.0.in_layers.1.weight", zeros({2}));
    });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path),
                         doctest::Contains("1 keys under model.diffusion_model. have no diffusers name: "
                                           "model.diffusion_model.input_blocks.1.0.in_layers.1.weight"),
                         input_error);
  }
  {
    EditedCheckpoint e("sd2", "vae_key", [](NamedTensors& t) {
      t.set_raw("first_stage_model.encoder.mid.attn_2.q.weight", zeros({4, 4, 1, 1}));
      t.set_raw("first_stage_model.decoder.up.0.block.0.conv3.weight", zeros({4}));
    });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path),
                         doctest::Contains("2 keys under first_stage_model. have no diffusers name: "
                                           "first_stage_model.decoder.up.0.block.0.conv3.weight, "
                                           "first_stage_model.encoder.mid.attn_2.q.weight"),
                         input_error);
  }
  {
    EditedCheckpoint e("sd2", "openclip_key", [](NamedTensors& t) {
      t.set_raw("cond_stage_model.model.transformer.resblocks.0.ls_1", zeros({4}));
    });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path),
                         doctest::Contains("cond_stage_model.model.transformer.resblocks.0.ls_1"), input_error);
  }
  {
    EditedCheckpoint e("sdxl", "stray",
                       [](NamedTensors& t) { t.set_raw("control_model.zero_convs.0.weight", zeros({1})); });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path),
                         doctest::Contains("1 keys belong to no component of an SDXL base checkpoint: "
                                           "control_model.zero_convs.0.weight"),
                         input_error);
  }
  {
    // label_emb (SDXL's add embedding) has no diffusers name in an SD1.x file.
    EditedCheckpoint f("sd1", "label_emb", [](NamedTensors& t) {
      t.set_raw("model.diffusion_model.label_emb.0.0.weight", zeros({4, 4}));
    });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(f.path), doctest::Contains("label_emb.0.0.weight"), input_error);
  }
  {
    EditedCheckpoint e("sd1", "blocks",
                       [](NamedTensors& t) { erase_prefix(t, "model.diffusion_model.output_blocks.8."); });
    CHECK_THROWS_WITH_AS((void)SingleFileCheckpoint(e.path),
                         doctest::Contains("the UNet's blocks fit no layers_per_block"), input_error);
  }
  {
    EditedCheckpoint e("sd1", "no_vae", [](NamedTensors& t) { erase_prefix(t, "first_stage_model."); });
    const SingleFileCheckpoint ckpt(e.path);
    CHECK_FALSE(ckpt.has("vae"));
    CHECK(ckpt.has("unet"));
    CHECK_THROWS_WITH_AS(ckpt.component("vae"),
                         doctest::Contains("the SD1.x checkpoint has no vae (no first_stage_model.* tensors)"),
                         input_error);
    CHECK_THROWS_WITH_AS(ckpt.component("text_encoder_2"),
                         doctest::Contains("has no component \"text_encoder_2\" (its components: unet, vae, "
                                           "text_encoder)"),
                         input_error);
    CHECK_THROWS_WITH_AS(ckpt.component("unet").bytes("conv_in.bias.x"),
                         doctest::Contains("(unet): no tensor named \"conv_in.bias.x\""), input_error);
  }
  {
    // EMA copies and the schedule buffers are not served and not refused.
    EditedCheckpoint e("sd1", "ema", [](NamedTensors& t) {
      t.set_raw("model_ema.diffusion_modelconv_inweight", zeros({1}));
      t.set_raw("posterior_mean_coef1", zeros({5}));
    });
    const SingleFileCheckpoint ckpt(e.path);
    CHECK(ckpt.component("unet").size() == SingleFileCheckpoint(data_dir / "sd1.safetensors").component("unet").size());
  }
}

TEST_CASE("an SD1.x single-file UNet loads strictly into spo's UNet, each weight as diffusers holds it") {
  const SingleFileCheckpoint ckpt(data_dir / "sd1.safetensors");
  model::UNetConfig cfg;  // the sd1 config of tools/reference/single_file_golden.py
  cfg.in_channels = 2;
  cfg.out_channels = 2;
  cfg.block_out_channels = {2, 2, 4};
  cfg.attention = {true, true, false};
  cfg.layers_per_block = ckpt.layers_per_block();
  cfg.attention_heads = 2;
  cfg.cross_attention_dim = 4;
  cfg.norm_num_groups = 2;
  model::UNet2DCondition<double> unet(cfg);
  const auto& store = ckpt.component("unet");
  const StateDictLoadResult r = load_state_dict(unet, store);
  CHECK(r.loaded.size() == store.size());
  CHECK(r.missing.empty());
  CHECK(r.unexpected.empty());
  const NamedTensors expected = load_safetensors(data_dir / "sd1.expected.safetensors");
  const auto values = expected.get<double>("unet");
  const json list = json::parse(expected.metadata.at("unet"));
  std::int64_t offset = 0, differ = 0, seen = 0;
  std::map<std::string, std::int64_t> at;
  for (const auto& entry : list) {
    at[entry[0]] = offset;
    std::int64_t n = 1;
    for (auto d : entry[1]) n *= d.get<std::int64_t>();
    offset += n;
  }
  unet.visit_parameters(
      [&](std::string_view name, auto& p) {
        const std::int64_t begin = at.at(std::string(name));
        for (std::int64_t i = 0; i < p.value.numel(); ++i) differ += p.value[i] != values[begin + i];
        ++seen;
      },
      {});
  CHECK(seen == static_cast<std::int64_t>(list.size()));
  CHECK(differ == 0);
}
