// SPDX-License-Identifier: MIT
#include "spo/io/lora_file.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/mapped_safetensors.hpp"
#include "spo/model/diffusers_unet_config.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/nn/lora.hpp"

using namespace spo;
using namespace spo::io;

namespace {

const std::string dir = std::string(SPO_TEST_DATA_DIR) + "/lora/";
const std::vector<std::string> layouts{"diffusers", "attn_procs", "peft", "kohya", "kohya_sgm"};

/// The UNet of base.safetensors: its diffusers config is in the metadata.
model::UNetConfig base_config(const NamedTensors& base) {
  return model::unet_config_from_diffusers(json::parse(base.metadata.at("config")));
}

template <class UNet>
UNet load_base(const NamedTensors& base) {
  UNet unet(base_config(base));
  StateDictLoadOptions lenient;
  lenient.strict = false;
  REQUIRE(load_state_dict(unet, base, lenient).missing.empty());
  return unet;
}

template <class UNet>
Tensor<double> run(UNet& unet, const NamedTensors& base) {
  return unet.forward(base.get<double>("input.sample"), base.get<double>("input.timestep"),
                      base.get<double>("input.encoder_hidden_states"));
}

LoraReadOptions options() {
  LoraReadOptions o;
  o.layers_per_block = 2;
  return o;
}

}  // namespace

TEST_CASE("LoRA files in every layout merge into the UNet as diffusers loads them") {
  const NamedTensors base = load_safetensors(dir + "base.safetensors");
  const NamedTensors expected = load_safetensors(dir + "expected.safetensors");
  const double scale = std::stod(base.metadata.at("scale"));
  const std::map<std::string, LoraLayout> want{{"diffusers", LoraLayout::diffusers},
                                               {"attn_procs", LoraLayout::attn_procs},
                                               {"peft", LoraLayout::peft},
                                               {"kohya", LoraLayout::kohya},
                                               {"kohya_sgm", LoraLayout::kohya}};
  for (const auto& name : layouts) {
    CAPTURE(name);
    const MappedSafetensors store(dir + name + ".safetensors");
    auto unet = load_base<model::UNet2DCondition<double>>(base);
    const auto targets = lora_targets(unet);
    const LoraFile file = read_lora(store, targets, options());
    CHECK(file.layout == want.at(name));
    // 6 transformer blocks (down level 1: 2, mid: 1, up level 0: 3) x 2 attentions x 4 projections.
    CHECK(file.adapters.size() == 48);
    for (const auto& a : file.adapters) CHECK(a.alpha_over_rank() == (name.starts_with("kohya") ? 0.5 : 1.0));
    const auto before = run(unet, base);
    CHECK(merge_lora(unet, store, file, scale) == 48);
    const auto after = run(unet, base);
    const auto ref = expected.get<double>(name);
    const double err = max_abs_diff<double>(after.view(), ref.view());
    MESSAGE(name << ": max abs error " << err << " after merging at scale " << scale);
    CHECK(err < 1e-10);
    CHECK(max_abs_diff<double>(before.view(), ref.view()) > 1e-3);  // the LoRA changes the output
    CHECK(max_abs_diff<double>(before.view(), expected.get<double>("base").view()) < 1e-10);
  }
}

TEST_CASE("LoRA files load as spo adapters (training form) with the same output; float merges too") {
  const NamedTensors base = load_safetensors(dir + "base.safetensors");
  const NamedTensors expected = load_safetensors(dir + "expected.safetensors");
  const double scale = std::stod(base.metadata.at("scale"));
  for (const std::string name : {"diffusers", "kohya_sgm"}) {
    const MappedSafetensors store(dir + name + ".safetensors");
    auto unet = load_base<model::UNet2DCondition<double, cpu, nn::LoRA<nn::Linear<double>>>>(base);
    Generator gen{3, 0};
    unet.attach_lora(2, 4.0, gen);
    const LoraFile file = read_lora(store, lora_targets(unet), options());
    const NamedTensors adapters = lora_adapter_state_dict(store, file, 2, 4.0, scale);
    StateDictLoadOptions lenient;
    lenient.strict = false;
    CHECK(load_state_dict(unet, adapters, lenient).loaded.size() == 96);
    const double err = max_abs_diff<double>(run(unet, base).view(), expected.get<double>(name).view());
    MESSAGE(name << " as adapters: max abs error " << err);
    CHECK(err < 1e-10);
    CHECK_THROWS_WITH_AS(lora_adapter_state_dict(store, file, 4, 4.0), doctest::Contains("has rank 2"), input_error);
  }
  auto unet = load_base<model::UNet2DCondition<float>>(base);
  const MappedSafetensors store(dir + "peft.safetensors");
  merge_lora(unet, store, read_lora(store, lora_targets(unet), options()), scale);
  const auto out = unet.forward(base.get<float>("input.sample"), base.get<float>("input.timestep"),
                                base.get<float>("input.encoder_hidden_states"));
  CHECK(max_abs_diff<float>(out.view(), expected.get<float>("peft").view()) < 1e-4);
}

TEST_CASE("LoRA files that do not fit or are not UNet LoRAs are refused by key") {
  const NamedTensors base = load_safetensors(dir + "base.safetensors");
  auto unet = load_base<model::UNet2DCondition<double>>(base);
  const auto targets = lora_targets(unet);
  const NamedTensors kohya = load_safetensors(dir + "kohya.safetensors");
  const std::string key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q";
  auto expect_error = [&](NamedTensors t, const std::string& text) {
    t.source = "broken.safetensors";
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(read_lora(t, targets, options()), doctest::Contains(text.c_str()), input_error);
  };
  {
    NamedTensors t = kohya;
    t.set_raw("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
              kohya.at(key + ".lora_down.weight"));
    expect_error(t, "is for another component (lora_te)");
  }
  {
    NamedTensors t = kohya;
    t.set_raw(key + ".hada_w1_a", kohya.at(key + ".lora_down.weight"));
    expect_error(t, "LyCORIS");
  }
  {
    NamedTensors t = kohya;
    t.erase(key + ".lora_up.weight");
    expect_error(t, "has no up tensor");
  }
  {
    NamedTensors t = kohya;
    t.set<double>(key + ".lora_down.weight", Tensor<double>(Shape{2, 5}));
    expect_error(t, "does not fit the model");
  }
  {
    NamedTensors t = kohya;
    t.set_raw("lora_unet_down_blocks_7_attentions_0_to_q.lora_down.weight", kohya.at(key + ".lora_down.weight"));
    expect_error(t, "which the model does not have");
  }
  {
    NamedTensors t = load_safetensors(dir + "diffusers.safetensors");
    t.set_raw("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
              kohya.at(key + ".lora_down.weight"));
    expect_error(t, "earlier keys in the");
  }
  {
    NamedTensors t = load_safetensors(dir + "diffusers.safetensors");
    t.set_raw("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora.down.weight",
              kohya.at(key + ".lora_down.weight"));
    expect_error(t, "is for a text encoder");
  }
  expect_error(NamedTensors{}, "no LoRA tensors");
}
