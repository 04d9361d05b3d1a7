// SPDX-License-Identifier: MIT
// AutoencoderKL vs diffusers' AutoencoderKL on tiny configs (tools/reference/vae_parity.py), its config reader,
// and the layer options it added (Conv2d padding_end, ResnetBlock2D without time embedding).
#include "spo/model/autoencoder_kl.hpp"

#include <string>
#include <type_traits>

#include <doctest/doctest.h>

#include "spo/io/config.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;
using nlohmann::json;

namespace {

struct Reference {
  io::NamedTensors file;
  model::AutoencoderKLConfig config;
};

io::StateDictLoadOptions non_strict() {
  io::StateDictLoadOptions o;
  o.strict = false;
  return o;
}

model::AutoencoderKLConfig read_config(const json& j, const std::string& source = "config.json") {
  auto c = io::from_json<model::AutoencoderKLConfig>(j, source);
  io::in_config_file(source, [&] { model::validate(c); });
  return c;
}

Reference load_reference(const std::string& name) {
  Reference r{io::load_safetensors(std::string(SPO_TEST_DATA_DIR) + "/vae/" + name + ".safetensors"), {}};
  r.config = read_config(json::parse(r.file.metadata.at("config")), name + ": config");
  return r;
}

template <Scalar T>
model::AutoencoderKL<T> load_model(const Reference& r) {
  model::AutoencoderKL<T> vae(r.config);
  auto res = io::load_state_dict(vae, r.file, non_strict());
  INFO("missing: " << res.missing.size());
  REQUIRE(res.missing.empty());
  for (const auto& k : res.unexpected) REQUIRE((k.starts_with("input.") || k.starts_with("output.")));
  return vae;
}

double max_abs(const Tensor<double>& a) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a[i]));
  return m;
}

/// max |out - expected| / max(|expected|, 1) and its bound: 1e-10 absolute in double, 1e-4 relative in float.
template <Scalar T>
void check_close(const Tensor<T>& out, const Reference& ref, const std::string& key, const std::string& what) {
  const auto expected = ref.file.get<double>(key);
  REQUIRE(out.shape() == expected.shape());
  const auto got = cast<double>(out);
  const double err = max_abs_diff<double>(got.view(), expected.view());
  const double rel = err / std::max(max_abs(expected), 1.0);
  MESSAGE(what << std::string(std::is_same_v<T, float> ? " float" : " double") << ": max abs error " << err
               << " (scale " << max_abs(expected) << ")");
  if constexpr (std::is_same_v<T, float>)
    CHECK(rel <= 1e-4);
  else
    CHECK(err <= 1e-10);
}

model::VaeTiling tiling_of(const Reference& r) {
  const json t = json::parse(r.file.metadata.at("tiling"));
  return {t["tile_sample_min_size"], t["tile_latent_min_size"], t["tile_overlap_factor"]};
}

}  // namespace

TEST_CASE_TEMPLATE("AutoencoderKL encode and decode match diffusers (tiny_a, tiny_b shifted, tiny_c 3 levels)", T,
                   float, double) {
  for (const std::string name : {"tiny_a", "tiny_b", "tiny_c"}) {
    const auto ref = load_reference(name);
    auto vae = load_model<T>(ref);
    const auto image = ref.file.get<T>("input.image");
    const auto post = vae.encode_distribution(image);
    check_close<T>(post.mean, ref, "output.mean", name + " mean");
    check_close<T>(post.logvar, ref, "output.logvar", name + " logvar");
    check_close<T>(post.std, ref, "output.std", name + " std");
    const auto noise = ref.file.get<T>("input.noise");
    check_close<T>(post.sample(noise), ref, "output.sample", name + " sample");
    check_close<T>(vae.encode(image), ref, "output.latents_mode", name + " scaled latents (mode)");
    check_close<T>(vae.encode(image, noise), ref, "output.latents_sample", name + " scaled latents (sample)");
    check_close<T>(vae.decode(ref.file.get<T>("input.latents")), ref, "output.decoded", name + " decode");
  }
}

TEST_CASE_TEMPLATE("AutoencoderKL tiled decode and encode match diffusers' enable_tiling (tiny_a, tiny_c)", T, float,
                   double) {
  for (const std::string name : {"tiny_a", "tiny_c"}) {
    const auto ref = load_reference(name);
    auto vae = load_model<T>(ref);
    const auto z = ref.file.get<T>("input.tiled_latents");
    const auto x = ref.file.get<T>("input.tiled_image");
    const auto untiled = vae.decode_latents(z);
    const auto untiled_mean = vae.encode_distribution(x).mean;
    vae.enable_tiling(tiling_of(ref));
    const auto tiled = vae.decode_latents(z);
    check_close<T>(tiled, ref, "output.tiled_decoded", name + " tiled decode");
    const auto post = vae.encode_distribution(x);
    check_close<T>(post.mean, ref, "output.tiled_mean", name + " tiled encode mean");
    check_close<T>(post.logvar, ref, "output.tiled_logvar", name + " tiled encode logvar");
    // The tiles matter: the untiled results differ from the tiled ones (so the checks above can fail).
    CHECK(max_abs_diff<T>(untiled.view(), tiled.view()) > 1e-2);
    CHECK(max_abs_diff<T>(untiled_mean.view(), post.mean.view()) > 1e-2);
    // Inputs within one tile take the untiled path.
    const auto small = ref.file.get<T>("input.latents");
    vae.disable_tiling();
    const auto plain = vae.decode_latents(small);
    vae.enable_tiling(tiling_of(ref));
    CHECK(max_abs_diff<T>(plain.view(), vae.decode_latents(small).view()) == 0.0);
  }
}

TEST_CASE("AutoencoderKL sample from a Generator: mean + std * the generator's normal numbers") {
  const auto ref = load_reference("tiny_b");
  auto vae = load_model<double>(ref);
  const auto post = vae.encode_distribution(ref.file.get<double>("input.image"));
  Generator a{5, 0}, b{5, 0};
  const auto s = post.sample(a);
  const auto noise = randn<double>(post.mean.shape(), b);
  CHECK(max_abs_diff<double>(s.view(), post.sample(noise).view()) == 0.0);
  CHECK(max_abs_diff<double>(s.view(), post.mean.view()) > 1e-3);
}

TEST_CASE("AutoencoderKL config: diffusers files read, unimplemented fields are errors naming the field") {
  const json base = json::parse(load_reference("tiny_a").file.metadata.at("config"));
  // SD 1.5's vae/config.json (diffusers 0.6): no scaling_factor, force_upcast or newer keys.
  const json sd15 = json::parse(R"({"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0",
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]})");
  const auto c = read_config(sd15);
  CHECK(c.scaling() == 0.18215);
  CHECK(c.shift() == 0.0);
  CHECK(c.upcast());
  CHECK(c.downscale() == 8);
  model::AutoencoderKL<float> vae(c);
  std::int64_t params = 0;
  vae.visit_parameters([&](std::string_view, auto& p) { params += p.value.numel(); });
  CHECK(params == 83653863);  // diffusers' count for the SD VAE
  CHECK(vae.tiling().tile_sample_min_size == 512);
  CHECK(vae.tiling().tile_latent_min_size == 64);
  json sdxl = sd15;
  sdxl["scaling_factor"] = 0.13025;
  sdxl["force_upcast"] = false;
  sdxl["_name_or_path"] = ".";
  CHECK(read_config(sdxl).scaling() == 0.13025);
  CHECK(!read_config(sdxl).upcast());

  auto with = [&](const std::string& key, const json& value) {
    json j = base;
    j[key] = value;
    return j;
  };
  auto fails = [&](const json& j, const std::string& needle) {
    CHECK_THROWS_WITH_AS(read_config(j), doctest::Contains(needle.c_str()), spo::input_error);
  };
  fails(with("act_fn", "gelu"), "config.json: act_fn: only \"silu\"");
  fails(with("down_block_types", {"DownEncoderBlock2D", "AttnDownEncoderBlock2D"}), "down_block_types[1]");
  fails(with("up_block_types", {"UpDecoderBlock2D"}), "up_block_types: has 1 entries for 2 levels");
  fails(with("latents_mean", {0.1, 0.2, 0.3, 0.4}), "latents_mean");
  fails(with("latents_std", {1.0, 1.0, 1.0, 1.0}), "latents_std");
  fails(with("norm_num_groups", 3), "block_out_channels[0]");
  fails(with("scaling_factor", 0.0), "scaling_factor");
  fails(with("_class_name", "AutoencoderTiny"), "_class_name");
  fails(with("norm_type", "spatial"), "norm_type: unknown key");
  fails(with("layers_per_block", 1.5), "layers_per_block: expected an integer");
  json missing = base;
  missing.erase("latent_channels");
  fails(missing, "latent_channels: missing key");
  // Null shift_factor, latents_mean/std are accepted (tiny_a's file has them); quant convs can be absent.
  json no_quant = with("use_quant_conv", false);
  no_quant["use_post_quant_conv"] = false;
  no_quant["mid_block_add_attention"] = false;
  model::AutoencoderKL<double> bare(read_config(no_quant));
  bool has_quant = false, has_attention = false;
  bare.visit_parameters([&](std::string_view name, auto&) {
    has_quant |= name.find("quant_conv") != std::string_view::npos;
    has_attention |= name.find("attentions") != std::string_view::npos;
  });
  CHECK(!has_quant);
  CHECK(!has_attention);
}

TEST_CASE("AutoencoderKL errors: a state dict tensor of the wrong shape is named; wrong input shapes are named") {
  auto ref = load_reference("tiny_a");
  model::AutoencoderKL<double> vae(ref.config);
  ref.file.set<double>("decoder.up_blocks.1.resnets.0.conv1.weight", Tensor<double>(Shape{4, 4, 3, 3}));
  CHECK_THROWS_WITH_AS(io::load_state_dict(vae, ref.file, non_strict()),
                       doctest::Contains("\"decoder.up_blocks.1.resnets.0.conv1.weight\": file has [4, 4, 3, 3]"),
                       spo::input_error);
  CHECK_THROWS_WITH_AS(vae.encode(Tensor<double>(Shape{1, 4, 16, 16})), doctest::Contains("[1, 4, 16, 16]"),
                       spo::error);
  CHECK_THROWS_WITH_AS(vae.decode(Tensor<double>(Shape{1, 3, 8, 8})), doctest::Contains("[1, 3, 8, 8]"), spo::error);
}

TEST_CASE("Conv2d padding_end: equals the convolution of the zero-extended input; gradients pass finite differences") {
  Generator g{31, 0};
  for (const auto& opt :
       {nn::Conv2dOptions{.kernel = {3, 3}, .stride = {2, 2}, .padding_end = {1, 1}},
        nn::Conv2dOptions{.kernel = {3, 2}, .stride = {1, 2}, .padding = {1, 0}, .padding_end = {2, 1}}}) {
    nn::Conv2d<double> conv(3, 4, opt);
    conv.reset_parameters(g);
    nn::Conv2dOptions plain = opt;
    plain.padding_end = {0, 0};
    nn::Conv2d<double> ref(3, 4, plain);
    ref.weight().value = conv.weight().value;
    ref.bias().value = conv.bias().value;
    const auto x = randn<double>(Shape{2, 3, 6, 7}, g);
    Tensor<double> padded(Shape{2, 3, 6 + opt.padding_end[0], 7 + opt.padding_end[1]});
    for (std::int64_t p = 0; p < 6; ++p)
      for (std::int64_t i = 0; i < 6; ++i)
        for (std::int64_t j = 0; j < 7; ++j)
          padded[(p * (6 + opt.padding_end[0]) + i) * (7 + opt.padding_end[1]) + j] = x[(p * 6 + i) * 7 + j];
    const auto y = conv.forward(x);
    const auto expected = ref.forward(padded);
    REQUIRE(y.shape() == expected.shape());
    CHECK(max_abs_diff<double>(y.view(), expected.view()) == 0.0);
    auto r = testing::gradcheck(conv, x);
    INFO(r.report << r.worst);
    CHECK(r.ok);
  }
  model::Downsample2D<double> down(3, 0);
  down.reset_parameters(g);
  const auto x = randn<double>(Shape{1, 3, 8, 6}, g);
  CHECK(down.forward(x).shape() == Shape{1, 3, 4, 3});
  auto r = testing::gradcheck(down, x);
  INFO(r.report << r.worst);
  CHECK(r.ok);
}

TEST_CASE("ResnetBlock2D without time embedding: gradients pass finite differences; the time forms are refused") {
  Generator g{32, 0};
  model::ResnetBlock2D<double> block(4, 6, 0, 2, 1e-6);
  block.reset_parameters(g);
  block.visit_parameters(
      [&](std::string_view name, nn::Parameter<double>& p) {
        CHECK(name.find("time_emb_proj") == std::string_view::npos);
        if (name.find("norm") != std::string_view::npos)
          as_array(p.value.view()) += as_array(randn<double>(p.shape(), g).view()) * 0.2;
      },
      "");
  nn::set_trainable(block, true);
  auto x = randn<double>(Shape{2, 4, 5, 5}, g);
  model::BlockGradients<double> grads;
  std::vector<testing::GradcheckTarget> targets{{"x", &x, &grads.dx}};
  block.visit_parameters(
      [&](std::string_view name, nn::Parameter<double>& p) {
        targets.push_back({std::string(name), &p.value, &p.grad});
      },
      "");
  auto r = testing::gradcheck_function([&] { return block.forward(x); },
                                       [&](const Tensor<double>& dy) {
                                         nn::zero_grad(block);
                                         grads = block.backward(dy);
                                       },
                                       targets);
  INFO(r.report << r.worst);
  CHECK(r.ok);
  CHECK(grads.dcond.empty());
  CHECK_THROWS_WITH_AS(block.forward(x, Tensor<double>(Shape{2, 3})), doctest::Contains("time_emb_proj"), spo::error);
  model::ResnetBlock2D<double> timed(4, 6, 3, 2, 1e-6);
  CHECK_THROWS_WITH_AS(timed.forward(x), doctest::Contains("time embedding"), spo::error);
}
