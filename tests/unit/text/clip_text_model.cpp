// SPDX-License-Identifier: MIT
// CLIPTextModel / CLIPTextModelWithProjection vs transformers 4.47.1 on tiny configs
// (tools/reference/clip_text_parity.py), the config reader, and gradchecks of the layers.
#include "spo/text/clip_text_model.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/safetensors.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<text::CLIPAttention<double>>);
static_assert(nn::Layer<text::CLIPEncoderLayer<float>>);

namespace {

struct Reference {
  io::NamedTensors file;
  io::json config_json;
  text::CLIPTextConfig config;
  std::vector<std::int32_t> ids;
  std::int64_t batch = 0;
};

io::StateDictLoadOptions non_strict() {
  io::StateDictLoadOptions o;
  o.strict = false;
  return o;
}

Reference load_reference(const std::string& name) {
  Reference r;
  r.file = io::load_safetensors(std::string(SPO_TEST_DATA_DIR) + "/clip_text/" + name + ".safetensors");
  r.config_json = io::parse_json(r.file.metadata.at("config"), name);
  r.config = text::clip_text_config_from_json(r.config_json, name);
  const auto ids = r.file.get<double>("input.input_ids");  // [B, L] stored as I64
  r.batch = ids.size(0);
  for (std::int64_t i = 0; i < ids.numel(); ++i) r.ids.push_back(static_cast<std::int32_t>(ids[i]));
  return r;
}

template <class Model>
void load_weights(Model& model, const Reference& r) {
  auto res = io::load_state_dict(model, r.file, non_strict());
  INFO("missing: " << res.missing.size());
  REQUIRE(res.missing.empty());
  for (const auto& k : res.unexpected) REQUIRE((k.starts_with("input.") || k.starts_with("output.")));
}

double max_abs(const Tensor<double>& a) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a[i]));
  return m;
}

/// max |a - expected| (double), or that over max |expected| (float).
template <Scalar T>
double error_of(const Tensor<T>& a, const Reference& r, const std::string& key) {
  const auto expected = r.file.get<double>(key);
  REQUIRE(a.shape() == expected.shape());
  const double err = max_abs_diff<double>(cast<double>(a).view(), expected.view());
  return std::is_same_v<T, float> ? err / max_abs(expected) : err;
}

template <Scalar T, class Model>
void check_parity(const std::string& name, bool projection) {
  const auto r = load_reference(name);
  Model model(r.config);
  load_weights(model, r);
  const auto out = model.forward(r.ids, r.batch, true);
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
  double worst = 0;
  auto check = [&](const Tensor<T>& a, const std::string& key) {
    const double e = error_of(a, r, key);
    INFO(name << " " << key << ": " << e);
    CHECK(e <= tol);
    worst = std::max(worst, e);
  };
  check(out.last_hidden_state, "output.last_hidden_state");
  REQUIRE(static_cast<std::int64_t>(out.hidden_states.size()) == r.config.num_hidden_layers + 1);
  for (std::size_t i = 0; i < out.hidden_states.size(); ++i)
    check(out.hidden_states[i], "output.hidden_states." + std::to_string(i));
  check(out.penultimate_hidden_state(), "output.hidden_states." + std::to_string(r.config.num_hidden_layers - 1));
  check(out.pooled, "output.pooled");
  if (projection) check(out.text_embeds, "output.text_embeds");
  CHECK(out.text_embeds.empty() == !projection);
  MESSAGE(name << std::string(std::is_same_v<T, float> ? " float: max relative error " : " double: max abs error ")
               << worst);

  // Without hidden states: the same last_hidden_state and pooled output, no states kept.
  const auto lean = model.forward(r.ids, r.batch);
  CHECK(lean.hidden_states.empty());
  CHECK(max_abs_diff<T>(lean.last_hidden_state.view(), out.last_hidden_state.view()) == 0);
  CHECK(max_abs_diff<T>(lean.pooled.view(), out.pooled.view()) == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("CLIPTextModel matches transformers (sd15_like: quick_gelu, 77 positions, argmax pooling)", T, float,
                   double) {
  check_parity<T, text::CLIPTextModel<T>>("sd15_like", false);
}

TEST_CASE_TEMPLATE(
    "CLIPTextModelWithProjection matches transformers (sdxl2_like: gelu, 20 of 32 positions, first-EOS pooling)", T,
    float, double) {
  check_parity<T, text::CLIPTextModelWithProjection<T>>("sdxl2_like", true);
}

TEST_CASE("pooling positions follow the config's eos_token_id rule") {
  SUBCASE("legacy eos_token_id 2: argmax, first of equal maxima") {
    const auto r = load_reference("sd15_like");
    REQUIRE(r.config.argmax_pooling());
    text::CLIPTextModel<double> model(r.config);
    load_weights(model, r);
    const auto out = model.forward(r.ids, r.batch);
    CHECK(out.pool_index == std::vector<std::int64_t>{11, 5});  // first EOS (519) after 10 words; the repeated max
  }
  SUBCASE("eos_token_id 519: first EOS, position 0 without one") {
    const auto r = load_reference("sdxl2_like");
    REQUIRE(!r.config.argmax_pooling());
    text::CLIPTextModelWithProjection<double> model(r.config);
    load_weights(model, r);
    const auto out = model.forward(r.ids, r.batch);
    CHECK(out.pool_index == std::vector<std::int64_t>{7, 4, 0});
    // The argmax rule would pool row 2 at position 7 (its largest id) and miss the reference.
    auto legacy = r.config;
    legacy.eos_token_id = 2;
    CHECK(text::clip_pool_index(std::span<const std::int32_t>(r.ids).subspan(40, 20), legacy) == 7);
  }
  SUBCASE("rows") {
    text::CLIPTextConfig c;
    const std::vector<std::int32_t> row{5, 9, 3, 9, 7};
    c.eos_token_id = 2;
    CHECK(text::clip_pool_index(row, c) == 1);
    c.eos_token_id = 7;
    CHECK(text::clip_pool_index(row, c) == 4);
    c.eos_token_id = 8;
    CHECK(text::clip_pool_index(row, c) == 0);
  }
}

TEST_CASE("the CLIP text config reader accepts SD's config.json and names unsupported fields") {
  // SD1.5 text_encoder/config.json (transformers 4.22 era), verbatim keys and values.
  const io::json sd15 = io::json::parse(R"({
    "_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"], "attention_dropout": 0.0,
    "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
    "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "float32",
    "transformers_version": "4.22.0.dev0", "vocab_size": 49408})");
  const auto c = text::clip_text_config_from_json(sd15, "sd15/text_encoder/config.json");
  CHECK(c.vocab_size == 49408);
  CHECK(c.hidden_size == 768);
  CHECK(c.intermediate_size == 3072);
  CHECK(c.num_hidden_layers == 12);
  CHECK(c.num_attention_heads == 12);
  CHECK(c.head_dim() == 64);
  CHECK(c.max_position_embeddings == 77);
  CHECK(c.hidden_act == text::CLIPActivation::quick_gelu);
  CHECK(c.layer_norm_eps == 1e-5);
  CHECK(c.argmax_pooling());
  CHECK(c.projection_dim == 768);

  auto expect_error = [&](io::json j, const std::string& field, const std::string& text) {
    INFO(j.dump());
    try {
      text::clip_text_config_from_json(j, "cfg.json");
      FAIL("no error for " << field);
    } catch (const config_error& e) {
      CHECK(e.key().find(field) != std::string::npos);
      CHECK(std::string(e.what()).find(text) != std::string::npos);
    }
  };
  auto with = [&](const char* key, io::json value) {
    io::json j = sd15;
    j[key] = std::move(value);
    return j;
  };
  auto without = [&](const char* key) {
    io::json j = sd15;
    j.erase(key);
    return j;
  };
  expect_error(with("hidden_act", "relu"), "hidden_act", "\"relu\" is not implemented");
  expect_error(with("hidden_act", "gelu_new"), "hidden_act", "not implemented");
  expect_error(with("position_embedding_type", "rotary"), "position_embedding_type", "not implemented");
  expect_error(with("model_type", "clip_vision_model"), "model_type", "not a CLIP text model");
  expect_error(with("hidden_size", 770), "num_attention_heads", "do not divide hidden_size 770");
  expect_error(with("num_hidden_layers", 0), "num_hidden_layers", "must be >= 1");
  expect_error(with("layer_norm_eps", "1e-5"), "layer_norm_eps", "must be a number");
  expect_error(with("vocab_size", 49408.5), "vocab_size", "must be an integer");
  expect_error(without("eos_token_id"), "eos_token_id", "is missing from cfg.json");
  expect_error(without("hidden_act"), "hidden_act", "is missing");
  CHECK_NOTHROW(text::clip_text_config_from_json(with("hidden_act", "gelu"), "cfg.json"));
  CHECK(text::clip_text_config_from_json(without("projection_dim"), "cfg.json").projection_dim == 0);
  CHECK_THROWS_WITH_AS(
      text::CLIPTextModelWithProjection<float>(text::clip_text_config_from_json(without("projection_dim"), "cfg.json")),
      doctest::Contains("projection_dim"), config_error);
}

TEST_CASE("CLIP text encoders name the tensor or token that does not fit") {
  const auto r = load_reference("sdxl2_like");
  SUBCASE("a state dict with another vocabulary: the token embedding is named") {
    auto c = r.config;
    c.vocab_size = 500;
    text::CLIPTextModelWithProjection<double> model(c);
    CHECK_THROWS_WITH_AS(io::load_state_dict(model, r.file, non_strict()),
                         doctest::Contains("text_model.embeddings.token_embedding.weight"), input_error);
  }
  SUBCASE("a CLIPTextModel state dict loaded into the projection model misses text_projection.weight") {
    auto sd15 = load_reference("sd15_like");
    sd15.config.projection_dim = 8;
    text::CLIPTextModelWithProjection<double> model(sd15.config);
    CHECK(io::load_state_dict(model, sd15.file, non_strict()).missing ==
          std::vector<std::string>{"text_projection.weight"});
    CHECK_THROWS_WITH_AS(io::load_state_dict(model, sd15.file), doctest::Contains("text_projection.weight"),
                         input_error);
  }
  SUBCASE("token ids") {
    text::CLIPTextModelWithProjection<double> model(r.config);
    load_weights(model, r);
    std::vector<std::int32_t> ids = r.ids;
    ids[23] = 520;
    CHECK_THROWS_WITH_AS(model.forward(ids, r.batch), doctest::Contains("token id 520 (row 1, position 3)"), error);
    CHECK_THROWS_WITH_AS(model.forward(std::vector<std::int32_t>(33 * 2, 1), 2),
                         doctest::Contains("1 to 32 ids (max_position_embeddings)"), error);
    CHECK_THROWS_WITH_AS(model.forward(r.ids, 7), doctest::Contains("60 token ids for 7 rows"), error);
  }
}

TEST_CASE("CLIP attention and encoder layer gradients match finite differences (causal and not, both activations)") {
  Generator g{31, 0};
  for (bool causal : {true, false}) {
    auto attn = text::clip_attention<double>(8, 2, causal);
    attn.reset_parameters(g);
    auto r = testing::gradcheck(attn, randn<double>(Shape{2, 5, 8}, g));
    INFO("seed 31, causal " << causal << "\n" << r.report << r.worst);
    CHECK(r.ok);
  }
  for (const char* act : {"quick_gelu", "gelu"}) {
    text::CLIPTextConfig c;
    c.hidden_size = 8;
    c.intermediate_size = 12;
    c.num_attention_heads = 2;
    c.hidden_act = std::string(act) == "gelu" ? text::CLIPActivation::gelu : text::CLIPActivation::quick_gelu;
    text::CLIPEncoderLayer<double> layer(c);
    layer.reset_parameters(g);
    layer.visit_parameters(
        [&](std::string_view name, nn::Parameter<double>& p) {
          if (name.find("layer_norm") != std::string_view::npos)
            as_array(p.value.view()) += as_array(randn<double>(p.shape(), g).view()) * 0.2;
        },
        "");
    auto r = testing::gradcheck(layer, randn<double>(Shape{2, 4, 8}, g));
    INFO(act << "\n" << r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("the causal mask: a token's features do not depend on later tokens") {
  const auto r = load_reference("sd15_like");
  text::CLIPTextModel<double> model(r.config);
  load_weights(model, r);
  auto ids = r.ids;
  const auto a = model.forward(ids, r.batch).last_hidden_state;
  ids[40] = 3;  // row 0, position 40
  const auto b = model.forward(ids, r.batch).last_hidden_state;
  double before = 0, at = 0;
  for (std::int64_t l = 0; l < 77; ++l)
    for (std::int64_t c = 0; c < 32; ++c) {
      const double d = std::abs(a[l * 32 + c] - b[l * 32 + c]);
      (l < 40 ? before : at) = std::max(l < 40 ? before : at, d);
    }
  CHECK(before == 0);
  CHECK(at > 1e-3);
}
