// SPDX-License-Identifier: MIT
// UNet2DCondition at SD 1.5-, SD 2.x- and SDXL-like tiny configs vs diffusers' UNet2DConditionModel, built from the
// configs diffusers wrote (tools/reference/unet_parity.py), and the diffusers config reader's rules.
#include <doctest/doctest.h>

#include "spo/io/config.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/model/diffusers_unet_config.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/nn/lora.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;
using io::json;

namespace {

const std::string data_dir = std::string(SPO_TEST_DATA_DIR) + "/unet/";

struct Reference {
  io::NamedTensors file;
  model::UNetConfig config;
};

Reference load_reference(const std::string& name) {
  return {io::load_safetensors(data_dir + name + ".safetensors"),
          model::load_diffusers_unet_config(data_dir + name + ".config.json")};
}

template <Scalar T, class Proj = nn::Linear<T>>
model::UNet2DCondition<T, cpu, Proj> load_model(const Reference& r) {
  model::UNet2DCondition<T, cpu, Proj> unet(r.config);
  auto res = io::load_state_dict(unet, r.file, {.strict = false, .prefix = {}, .check_finite = true});
  INFO("missing: " << res.missing.size() << (res.missing.empty() ? "" : " first " + res.missing.front()));
  REQUIRE(res.missing.empty());
  for (const auto& k : res.unexpected) {
    INFO(k);
    REQUIRE((k.starts_with("input.") || k.starts_with("output.") || k.starts_with("grad.") || k == "upstream"));
  }
  return unet;
}

template <Scalar T, class Proj>
Tensor<T> run_forward(model::UNet2DCondition<T, cpu, Proj>& unet, const Reference& r) {
  const auto sample = r.file.get<T>("input.sample");
  const auto t = r.file.get<T>("input.timestep");
  const auto ctx = r.file.get<T>("input.encoder_hidden_states");
  if (!r.config.text_time) return unet.forward(sample, t, ctx);
  model::UNetAddedConditions<T> added{r.file.get<T>("input.text_embeds"), r.file.get<T>("input.time_ids")};
  return unet.forward(sample, t, ctx, added);
}

double max_abs(const Tensor<double>& a) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a[i]));
  return m;
}

double rel(const Tensor<double>& a, const Tensor<double>& b) {
  return max_abs_diff<double>(a.view(), b.view()) / std::max(max_abs(b), 1e-12);
}

/// The config error of reading `j` (after `edit`), as "<field>: <problem>".
std::string reader_error(json j) {
  try {
    model::unet_config_from_diffusers(j);
  } catch (const config_error& e) {
    return e.what();
  }
  return "no error";
}

json sdxl_config() { return io::parse_json(io::read_file_text(data_dir + "sdxl_like.config.json"), "sdxl_like"); }

}  // namespace

TEST_CASE("The diffusers config reader maps the SD-family fields") {
  const auto sd15 = model::load_diffusers_unet_config(data_dir + "sd15_like.config.json");
  CHECK(sd15.block_out_channels == std::vector<std::int64_t>{4, 4, 4, 4});
  CHECK(sd15.attention == std::vector<bool>{true, true, true, false});
  CHECK(sd15.level_attention_heads == std::vector<std::int64_t>{1, 2, 4, 2});
  CHECK(sd15.flip_sin_to_cos == false);
  CHECK(sd15.freq_shift == 1.0);
  CHECK(!sd15.transformer_layers_per_block);
  CHECK(!sd15.text_time);
  CHECK(!sd15.use_linear_projection);

  const auto sd2 = model::load_diffusers_unet_config(data_dir + "sd2_like.config.json");
  CHECK(sd2.use_linear_projection);
  CHECK(sd2.level_attention_heads == std::vector<std::int64_t>{1, 4, 2, 4});
  CHECK(!sd2.flip_sin_to_cos);
  CHECK(!sd2.freq_shift);
  CHECK(sd2.cross_attention_dim == 5);

  const auto xl = model::load_diffusers_unet_config(data_dir + "sdxl_like.config.json");
  CHECK(xl.attention == std::vector<bool>{false, true});
  CHECK(xl.transformer_layers_per_block == std::vector<std::int64_t>{1, 2});
  REQUIRE(xl.text_time);
  CHECK(xl.text_time->addition_time_embed_dim == 4);
  CHECK(xl.text_time->projection_class_embeddings_input_dim == 30);
  CHECK(xl.cross_attention_dim == 10);
  CHECK(xl.in_channels == 2);
  CHECK(xl.out_channels == 2);
  CHECK(xl.norm_num_groups == 1);

  // SD 1.5's own config.json (diffusers 0.6.0 wrote fewer fields; absent ones have diffusers' defaults) is spo's
  // default UNetConfig.
  const json sd15_real = {
      {"_class_name", "UNet2DConditionModel"},
      {"_diffusers_version", "0.6.0"},
      {"act_fn", "silu"},
      {"attention_head_dim", 8},
      {"block_out_channels", {320, 640, 1280, 1280}},
      {"center_input_sample", false},
      {"cross_attention_dim", 768},
      {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
      {"downsample_padding", 1},
      {"flip_sin_to_cos", true},
      {"freq_shift", 0},
      {"in_channels", 4},
      {"layers_per_block", 2},
      {"mid_block_scale_factor", 1},
      {"norm_eps", 1e-05},
      {"norm_num_groups", 32},
      {"out_channels", 4},
      {"sample_size", 64},
      {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}}};
  const auto real = model::unet_config_from_diffusers(sd15_real);
  CHECK(io::to_json(real) == io::to_json(model::UNetConfig{}));
  CHECK(real.in_channels == 4);
  CHECK(real.norm_eps == 1e-5);

  // SDXL base's geometry.
  json xl_real = sdxl_config();
  xl_real["block_out_channels"] = {320, 640, 1280};
  xl_real["down_block_types"] = {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"};
  xl_real["up_block_types"] = {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"};
  xl_real["attention_head_dim"] = {5, 10, 20};
  xl_real["transformer_layers_per_block"] = {1, 2, 10};
  xl_real["addition_time_embed_dim"] = 256;
  xl_real["projection_class_embeddings_input_dim"] = 2816;
  xl_real["cross_attention_dim"] = 2048;
  xl_real["norm_num_groups"] = 32;
  xl_real["layers_per_block"] = 2;
  xl_real["upcast_attention"] = true;  // accepted at either value
  const auto xl_base = model::unet_config_from_diffusers(xl_real);
  CHECK(xl_base.heads(2) == 20);
  CHECK(xl_base.transformer_layers(2) == 10);
  CHECK(xl_base.text_time->projection_class_embeddings_input_dim == 2816);
}

TEST_CASE("The diffusers config reader names the field of an unknown key, an unsupported value, a bad pattern") {
  const json ok = sdxl_config();
  CHECK(reader_error(ok) == "no error");
  auto with = [&](const std::string& key, const json& value) {
    json j = ok;
    j[key] = value;
    return reader_error(j);
  };
  CHECK(with("attention_heads_typo", 3).starts_with("attention_heads_typo: is not a field"));
  CHECK(with("act_fn", "gelu").starts_with("act_fn: is \"gelu\" but only \"silu\""));
  CHECK(with("num_attention_heads", 8).starts_with("num_attention_heads: "));
  CHECK(with("class_embed_type", "timestep").starts_with("class_embed_type: "));
  CHECK(with("addition_embed_type", "text").starts_with("addition_embed_type: "));
  CHECK(with("time_cond_proj_dim", 4).starts_with("time_cond_proj_dim: "));
  CHECK(with("resnet_time_scale_shift", "scale_shift").starts_with("resnet_time_scale_shift: "));
  CHECK(with("conv_in_kernel", 1).starts_with("conv_in_kernel: "));
  CHECK(with("mid_block_type", "UNetMidBlock2D").starts_with("mid_block_type: "));
  CHECK(with("only_cross_attention", true).starts_with("only_cross_attention: "));
  CHECK(with("encoder_hid_dim", 8).starts_with("encoder_hid_dim: "));
  CHECK(with("dropout", 0.1).starts_with("dropout: "));
  CHECK(with("transformer_layers_per_block", json::array({json::array({1}), json::array({2})}))
            .starts_with("transformer_layers_per_block: nested lists"));
  CHECK(with("reverse_transformer_layers_per_block", json::array({2, 1}))
            .starts_with("reverse_transformer_layers_per_block: "));
  CHECK(with("layers_per_block", json::array({1, 2})).starts_with("layers_per_block: differs between levels"));
  CHECK(with("attention_head_dim", json::array({1, 2, 3})).starts_with("attention_head_dim: expected an integer or"));
  CHECK(with("_class_name", "UNet2DModel").starts_with("_class_name: "));
  CHECK(with("up_block_types", json::array({"UpBlock2D", "CrossAttnUpBlock2D"}))
            .starts_with("up_block_types: [0] is \"UpBlock2D\" but must mirror down_block_types[1]"));
  CHECK(with("down_block_types", json::array({"DownBlock2D", "AttnDownBlock2D"})).starts_with("down_block_types: "));
  CHECK(with("up_block_types", json::array({"CrossAttnUpBlock2D"})).starts_with("up_block_types: has 1 blocks"));
  CHECK(with("block_out_channels", json::array({2, 4, 8})).starts_with("block_out_channels: "));
  CHECK(with("attention_head_dim", json::array({1, 3})).starts_with("unet.level_attention_heads[1]"));
  json no_dim = ok;
  no_dim.erase("addition_time_embed_dim");
  CHECK(reader_error(no_dim).starts_with("addition_time_embed_dim: expected an integer, got null"));
  json stray = ok;
  stray["addition_embed_type"] = nullptr;
  CHECK(reader_error(stray).starts_with("addition_time_embed_dim: is 4 but only null"));
  // From a file: the path comes first.
  const auto tmp = std::filesystem::temp_directory_path() / "unet_sd_configs_bad.json";
  json bad = ok;
  bad["act_fn"] = "gelu";
  io::write_file_atomic(tmp, bad.dump());
  const std::string expected = tmp.string() + ": act_fn: is";
  CHECK_THROWS_WITH_AS(model::load_diffusers_unet_config(tmp), doctest::Contains(expected.c_str()), input_error);
  std::filesystem::remove(tmp);
}

TEST_CASE("UNetConfig's optional members round-trip through spo's config reader and may be absent") {
  const auto xl = model::load_diffusers_unet_config(data_dir + "sdxl_like.config.json");
  const json j = io::to_json(xl);
  CHECK(j.contains("text_time"));
  CHECK(io::to_json(io::from_json<model::UNetConfig>(j, "test")) == j);
  json plain = io::to_json(model::UNetConfig{});
  CHECK(!plain.contains("text_time"));
  CHECK(!plain.contains("level_attention_heads"));
  const auto back = io::from_json<model::UNetConfig>(plain, "test");
  CHECK(!back.text_time);
  CHECK(!back.transformer_layers_per_block);
}

TEST_CASE_TEMPLATE("UNet forward matches diffusers at SD 1.5-, SD 2.x- and SDXL-like configs", T, float, double) {
  for (const std::string name : {"sd15_like", "sd2_like", "sdxl_like"}) {
    const auto ref = load_reference(name);
    auto unet = load_model<T>(ref);
    const auto out = run_forward(unet, ref);
    const auto expected = ref.file.get<T>("output.sample");
    const double err = max_abs_diff<T>(out.view(), expected.view());
    const double scale = max_abs(ref.file.get<double>("output.sample"));
    MESSAGE(name << std::string(std::is_same_v<T, float> ? " float" : " double") << ": max abs error " << err
                 << " (output scale " << scale << ")");
    if constexpr (std::is_same_v<T, float>)
      CHECK(err <= 1e-4 * scale);
    else
      CHECK(err <= 1e-10);
  }
}

TEST_CASE("SDXL-like UNet: text_time needs its added conditions, and only a text_time UNet takes them") {
  const auto ref = load_reference("sdxl_like");
  auto unet = load_model<double>(ref);
  const auto sample = ref.file.get<double>("input.sample");
  const auto t = ref.file.get<double>("input.timestep");
  const auto ctx = ref.file.get<double>("input.encoder_hidden_states");
  CHECK_THROWS_WITH_AS(unet.forward(sample, t, ctx), doctest::Contains("text_embeds [B, P], time_ids [B, K]"),
                       spo::error);
  model::UNetAddedConditions<double> bad{ref.file.get<double>("input.text_embeds"), Tensor<double>(Shape{2, 5})};
  CHECK_THROWS_WITH_AS(unet.forward(sample, t, ctx, bad), doctest::Contains("[2, 5]"), spo::error);
  auto plain = load_model<double>(load_reference("sd2_like"));
  CHECK_THROWS_WITH_AS(plain.forward(Tensor<double>(Shape{2, 2, 8, 8}), t, Tensor<double>(Shape{2, 3, 5}), bad),
                       doctest::Contains("without text_time"), spo::error);
}

TEST_CASE("SDXL-like UNet backward matches torch autograd of diffusers (float64)") {
  const auto ref = load_reference("sdxl_like");
  auto unet = load_model<double>(ref);
  nn::set_trainable(unet, true);
  nn::zero_grad(unet);
  run_forward(unet, ref);
  auto g = unet.backward(ref.file.get<double>("upstream"));
  const double e_sample = rel(g.dsample, ref.file.get<double>("grad.input.sample"));
  const double e_ctx = rel(g.dcontext, ref.file.get<double>("grad.input.encoder_hidden_states"));
  const double e_text = rel(g.dtext_embeds, ref.file.get<double>("grad.input.text_embeds"));
  const double e_ids = rel(g.dtime_ids, ref.file.get<double>("grad.input.time_ids"));
  double e_params = 0;
  int checked = 0;
  unet.visit_parameters([&](std::string_view name, nn::Parameter<double>& p) {
    const double e = rel(p.grad, ref.file.get<double>("grad." + std::string(name)));
    INFO(name);
    CHECK(e < 1e-9);
    e_params = std::max(e_params, e);
    ++checked;
  });
  MESSAGE("relative errors: d sample " << e_sample << ", d context " << e_ctx << ", d text_embeds " << e_text
                                       << ", d time_ids " << e_ids << ", worst of " << checked << " parameters "
                                       << e_params);
  CHECK(e_sample < 1e-9);
  CHECK(e_ctx < 1e-9);
  CHECK(e_text < 1e-9);
  CHECK(e_ids < 1e-9);
  CHECK(checked > 150);
}

TEST_CASE("SDXL-like UNet gradients pass the finite-difference check (torch default init, float64)") {
  const auto ref = load_reference("sdxl_like");
  model::UNet2DCondition<double> unet(ref.config);
  Generator gen{23, 0};
  unet.reset_parameters(gen);
  unet.visit_parameters([&](std::string_view name, nn::Parameter<double>& p) {
    if (name.find("norm") != std::string_view::npos)
      as_array(p.value.view()) += as_array(randn<double>(p.shape(), gen).view()) * 0.2;
  });
  nn::set_trainable(unet, true);
  auto sample = randn<double>(Shape{2, 2, 4, 4}, gen);
  auto ctx = randn<double>(Shape{2, 3, 10}, gen);
  model::UNetAddedConditions<double> added{randn<double>(Shape{2, 6}, gen),
                                           Tensor<double>(Shape{2, 6}, {8, 8, 0, 0, 8, 8, 6, 10, 1, 2, 8, 8})};
  const Tensor<double> t(Shape{2}, {17.0, 803.0});
  model::UNetGradients<double> g;
  std::vector<testing::GradcheckTarget> targets{{"sample", &sample, &g.dsample},
                                                {"context", &ctx, &g.dcontext},
                                                {"text_embeds", &added.text_embeds, &g.dtext_embeds},
                                                {"time_ids", &added.time_ids, &g.dtime_ids}};
  unet.visit_parameters([&](std::string_view name, nn::Parameter<double>& p) {
    targets.push_back({std::string(name), &p.value, &p.grad});
  });
  auto r = testing::gradcheck_function([&] { return unet.forward(sample, t, ctx, added); },
                                       [&](const Tensor<double>& dy) {
                                         nn::zero_grad(unet);
                                         g = unet.backward(dy);
                                       },
                                       targets, {.max_coords = 2});
  INFO(r.report << r.worst);
  MESSAGE("finite differences: max relative error " << r.max_rel_error << " over " << targets.size() << " tensors");
  CHECK(r.ok);
}

TEST_CASE("LoRA attaches to every attention projection of the SDXL-like UNet, 2-block transformers included") {
  const auto ref = load_reference("sdxl_like");
  auto unet = load_model<double>(ref);
  auto lora_unet = load_model<double, nn::LoRA<nn::Linear<double>>>(ref);
  Generator gen{3, 0};
  lora_unet.attach_lora(2, 2.0, gen);
  int adapters = 0, trainable_other = 0;
  lora_unet.visit_parameters([&](std::string_view name, auto& p) {
    const bool is_lora = name.find("lora_") != std::string_view::npos;
    adapters += is_lora;
    trainable_other += (!is_lora && p.trainable);
  });
  // Transformer blocks: down level 1 (1 attention x 2 blocks), mid (2 blocks), up level 0 (2 attentions x 2 blocks)
  // = 8 blocks x 2 attentions x 4 projections x (A, B).
  CHECK(adapters == 8 * 2 * 4 * 2);
  CHECK(trainable_other == 0);
  const auto a = run_forward(unet, ref);
  const auto b = run_forward(lora_unet, ref);
  CHECK(max_abs_diff<double>(a.view(), b.view()) == 0.0);
  // Every adapter's B receives a gradient (A's is zero while B = 0).
  nn::zero_grad(lora_unet);
  run_forward(lora_unet, ref);
  lora_unet.backward(ref.file.get<double>("upstream"));
  int with_grad = 0, b_params = 0;
  lora_unet.visit_parameters([&](std::string_view name, auto& p) {
    if (name.find("lora_B") == std::string_view::npos) return;
    ++b_params;
    with_grad += max_abs(p.grad) > 0;
  });
  CHECK(b_params == 8 * 2 * 4);
  CHECK(with_grad == b_params);
}
