// SPDX-License-Identifier: MIT
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/config.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/nn/layer.hpp"
#include "spo/spm.hpp"
#include "spo/testing/gradcheck.hpp"
#include "spo/text/prompts.hpp"

using namespace spo;

static_assert(spm::TimePolicy<spm::StepConditioned> && spm::TimePolicy<spm::Unconditioned>);
static_assert(!spm::TimePolicy<int>);

namespace {

using Rows = std::vector<std::vector<std::int32_t>>;
using Params = std::map<std::string, Tensor<double>*>;

template <class M>
Params parameters_of(M& m) {
  Params p;
  m.visit_parameters([&](std::string_view name, nn::Parameter<double>& q) { p[std::string(name)] = &q.value; }, {});
  return p;
}

template <class M>
void add_parameter_targets(M& m, std::vector<testing::GradcheckTarget>& targets) {
  m.visit_parameters(
      [&](std::string_view name, nn::Parameter<double>& p) {
        targets.push_back({std::string(name), &p.value, &p.grad});
      },
      {});
}

/// Moves every adaLN modulation (and the t_embedder) away from the identity init.
template <class M>
void perturb_adaln(M& m, Generator& gen, double stddev = 0.3) {
  m.visit_parameters(
      [&](std::string_view name, nn::Parameter<double>& p) {
        if (name.find("adaLN_modulation") != std::string_view::npos) fill_normal(p.value.view(), gen, 0.0, stddev);
      },
      {});
}

// ---- naive double references (plain loops over std::vector) ---------------------------------------------------

using Vec = std::vector<double>;

Vec linear(const Vec& x, std::int64_t rows, std::int64_t in, const Tensor<double>& w, const Tensor<double>* b) {
  const std::int64_t out = w.size(0);
  Vec y(rows * out);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < out; ++j) {
      double s = b ? (*b)[j] : 0.0;
      for (std::int64_t c = 0; c < in; ++c) s += x[r * in + c] * w[j * in + c];
      y[r * out + j] = s;
    }
  return y;
}

Vec layer_norm(const Vec& x, std::int64_t rows, std::int64_t w, const Tensor<double>& g, const Tensor<double>& b) {
  Vec y(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (std::int64_t k = 0; k < w; ++k) mean += x[r * w + k] / w;
    for (std::int64_t k = 0; k < w; ++k) var += (x[r * w + k] - mean) * (x[r * w + k] - mean) / w;
    for (std::int64_t k = 0; k < w; ++k) y[r * w + k] = (x[r * w + k] - mean) / std::sqrt(var + 1e-5) * g[k] + b[k];
  }
  return y;
}

double silu(double x) { return x / (1 + std::exp(-x)); }
double gelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

Vec self_attention(const Vec& x, std::int64_t batch, std::int64_t n, std::int64_t w, std::int64_t heads,
                   const Params& p, const std::string& pre) {
  const auto q = linear(x, batch * n, w, *p.at(pre + "to_q.weight"), nullptr);
  const auto k = linear(x, batch * n, w, *p.at(pre + "to_k.weight"), nullptr);
  const auto v = linear(x, batch * n, w, *p.at(pre + "to_v.weight"), nullptr);
  const std::int64_t dh = w / heads;
  Vec o(batch * n * w, 0.0), e(n);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < n; ++i) {
        double z = 0;
        for (std::int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (std::int64_t c = 0; c < dh; ++c) s += q[(b * n + i) * w + h * dh + c] * k[(b * n + j) * w + h * dh + c];
          z += (e[j] = std::exp(s / std::sqrt(double(dh))));
        }
        for (std::int64_t j = 0; j < n; ++j)
          for (std::int64_t c = 0; c < dh; ++c)
            o[(b * n + i) * w + h * dh + c] += e[j] / z * v[(b * n + j) * w + h * dh + c];
      }
  return linear(o, batch * n, w, *p.at(pre + "to_out.0.weight"), p.at(pre + "to_out.0.bias"));
}

/// One block: h = x + g1 Attn(LN1(x)(1 + sc1) + sh1), out = h + g2 MLP(LN2(h)(1 + sc2) + sh2); mod empty means
/// the plain block (g = 1, sh = sc = 0).
Vec block_ref(const Vec& x, std::int64_t batch, std::int64_t n, std::int64_t w, std::int64_t heads, const Params& p,
              const std::string& pre, const Vec& mod) {
  auto chunk = [&](std::int64_t b, std::int64_t c, std::int64_t k, double plain) {
    return mod.empty() ? plain : mod[b * 6 * w + c * w + k];
  };
  const std::int64_t rows = batch * n;
  auto m1 = layer_norm(x, rows, w, *p.at(pre + "ln_1.weight"), *p.at(pre + "ln_1.bias"));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < w; ++k) {
        double& m = m1[(b * n + i) * w + k];
        m = m * (1 + chunk(b, 1, k, 0)) + chunk(b, 0, k, 0);
      }
  const auto a = self_attention(m1, batch, n, w, heads, p, pre + "attn.");
  Vec h(x.size());
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < w; ++k) {
        const std::int64_t at = (b * n + i) * w + k;
        h[at] = x[at] + chunk(b, 2, k, 1) * a[at];
      }
  auto m2 = layer_norm(h, rows, w, *p.at(pre + "ln_2.weight"), *p.at(pre + "ln_2.bias"));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < w; ++k) {
        double& m = m2[(b * n + i) * w + k];
        m = m * (1 + chunk(b, 4, k, 0)) + chunk(b, 3, k, 0);
      }
  auto f = linear(m2, rows, w, *p.at(pre + "mlp.c_fc.weight"), p.at(pre + "mlp.c_fc.bias"));
  for (auto& v : f) v = gelu(v);
  f = linear(f, rows, 4 * w, *p.at(pre + "mlp.c_proj.weight"), p.at(pre + "mlp.c_proj.bias"));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < w; ++k) {
        const std::int64_t at = (b * n + i) * w + k;
        h[at] += chunk(b, 5, k, 1) * f[at];
      }
  return h;
}

Vec modulation_ref(const Vec& t_emb, std::int64_t batch, std::int64_t w, const Params& p, const std::string& name) {
  Vec s(t_emb);
  for (auto& v : s) v = silu(v);
  return linear(s, batch, w, *p.at(name + ".weight"), p.at(name + ".bias"));
}

/// The conditioned encoder's t_emb: cos-first sinusoid (half 128, f_k = exp(-ln(1e4) k / 128)) then the MLP.
Vec t_emb_ref(const Tensor<double>& t, std::int64_t w, const Params& p) {
  const std::int64_t batch = t.numel();
  Vec e(batch * 256);
  for (std::int64_t b = 0; b < batch; ++b)
    for (int k = 0; k < 128; ++k) {
      const double arg = t[b] * std::exp(-std::log(10000.0) * k / 128.0);
      e[b * 256 + k] = std::cos(arg);
      e[b * 256 + 128 + k] = std::sin(arg);
    }
  auto h = linear(e, batch, 256, *p.at("t_embedder.linear_1.weight"), p.at("t_embedder.linear_1.bias"));
  for (auto& v : h) v = silu(v);
  return linear(h, batch, w, *p.at("t_embedder.linear_2.weight"), p.at("t_embedder.linear_2.bias"));
}

Vec encoder_ref(const spm::ImageEncoderConfig& c, bool conditioned, const Tensor<double>& x, const Tensor<double>& t,
                const Params& p) {
  const std::int64_t batch = x.size(0), g = c.resolution / c.patch_size, np = g * g, n = np + 1, w = c.width;
  const std::int64_t ps = c.patch_size, r = c.resolution;
  const auto& conv = *p.at("conv1.weight");
  const auto& pos = *p.at("positional_embedding");
  const auto& cls = *p.at("class_embedding");
  Vec seq(batch * n * w);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t k = 0; k < w; ++k) seq[b * n * w + k] = cls[k] + pos[k];
    for (std::int64_t gy = 0; gy < g; ++gy)
      for (std::int64_t gx = 0; gx < g; ++gx)
        for (std::int64_t k = 0; k < w; ++k) {
          double s = 0;
          for (std::int64_t ch = 0; ch < c.channels; ++ch)
            for (std::int64_t dy = 0; dy < ps; ++dy)
              for (std::int64_t dx = 0; dx < ps; ++dx)
                s += conv[((k * c.channels + ch) * ps + dy) * ps + dx] *
                     x[((b * c.channels + ch) * r + gy * ps + dy) * r + gx * ps + dx];
          const std::int64_t tok = 1 + gy * g + gx;
          seq[(b * n + tok) * w + k] = s + pos[tok * w + k];
        }
  }
  auto h = layer_norm(seq, batch * n, w, *p.at("ln_pre.weight"), *p.at("ln_pre.bias"));
  const Vec t_emb = conditioned ? t_emb_ref(t, w, p) : Vec{};
  for (std::int64_t i = 0; i < c.depth; ++i) {
    const std::string pre = "blocks." + std::to_string(i) + ".";
    const Vec mod = conditioned ? modulation_ref(t_emb, batch, w, p, pre + "adaLN_modulation.1") : Vec{};
    h = block_ref(h, batch, n, w, c.heads, p, pre, mod);
  }
  Vec pooled(batch * w);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t k = 0; k < w; ++k) pooled[b * w + k] = h[b * n * w + k];
  pooled = layer_norm(pooled, batch, w, *p.at("ln_post.weight"), *p.at("ln_post.bias"));
  if (conditioned) {
    const Vec mod = modulation_ref(t_emb, batch, w, p, "final_adaLN_modulation.1");
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t k = 0; k < w; ++k)
        pooled[b * w + k] = pooled[b * w + k] * (1 + mod[b * 2 * w + w + k]) + mod[b * 2 * w + k];
  }
  return linear(pooled, batch, w, *p.at("proj.weight"), nullptr);
}

double max_diff(const Tensor<double>& a, const Vec& b) {
  REQUIRE(static_cast<std::size_t>(a.numel()) == b.size());
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

Vec to_vec(const Tensor<double>& t) { return Vec(t.data(), t.data() + t.numel()); }

spm::ImageEncoderConfig tiny_image(std::int64_t depth = 2) {
  // 4 patches of 2x2 over 2 channels, width 8 (2 heads of 4), embed 6
  return {4, 2, 2, 8, depth, 2, 6};
}

spm::PreferenceNetworkConfig tiny_network() { return {tiny_image(), 8, 2, 4, 0.5}; }

io::StateDictLoadOptions non_strict() {
  io::StateDictLoadOptions o;
  o.strict = false;
  return o;
}

Rows tiny_rows() { return {{3, 1, 0, 0}, {0, 0, 0, 0}}; }

}  // namespace

TEST_CASE_TEMPLATE("AdaLNBlock forward matches a loop reference", Policy, spm::StepConditioned, spm::Unconditioned) {
  Generator gen{11, 0};
  INFO("seed " << gen.seed << " policy " << Policy::name);
  const std::int64_t batch = 2, n = 5, w = 8, heads = 2;
  spm::AdaLNBlock<double, Policy> block(w, heads);
  block.reset_parameters(gen, 2);
  perturb_adaln(block, gen);
  const auto x = randn<double>(Shape{batch, n, w}, gen);
  const auto t_emb = randn<double>(Shape{batch, w}, gen);
  const auto y = block.forward(x, t_emb);
  REQUIRE(y.shape() == Shape{batch, n, w});
  const auto p = parameters_of(block);
  const Vec mod = Policy::conditioned ? modulation_ref(to_vec(t_emb), batch, w, p, "adaLN_modulation.1") : Vec{};
  CHECK(max_diff(y, block_ref(to_vec(x), batch, n, w, heads, p, "", mod)) < 1e-12);
}

TEST_CASE_TEMPLATE("AdaLNBlock gradients (x, t_emb, parameters)", Policy, spm::StepConditioned, spm::Unconditioned) {
  Generator gen{12, 0};
  INFO("seed " << gen.seed << " policy " << Policy::name);
  spm::AdaLNBlock<double, Policy> block(8, 2);
  block.reset_parameters(gen, 2);
  perturb_adaln(block, gen);
  auto x = randn<double>(Shape{2, 3, 8}, gen);
  auto t_emb = randn<double>(Shape{2, 8}, gen);
  Tensor<double> dx, dt;
  std::vector<testing::GradcheckTarget> targets{{"x", &x, &dx}, {"t_emb", &t_emb, &dt}};
  add_parameter_targets(block, targets);
  const auto r = testing::gradcheck_function([&] { return block.forward(x, t_emb); },
                                             [&](const Tensor<double>& dy) {
                                               nn::zero_grad(block);
                                               auto g = block.backward(dy);
                                               dx = std::move(g.dx);
                                               dt = std::move(g.dt_emb);
                                             },
                                             targets);
  INFO(r.report << r.worst);
  CHECK(r.ok);
  const std::int64_t plain = 2 * 16 + 3 * 64 + 64 + 8 + 8 * 32 + 32 + 32 * 8 + 8;  // LNs, attention, mlp
  if constexpr (!Policy::conditioned) CHECK(nn::parameter_count(block) == plain);
  if constexpr (Policy::conditioned) {
    CHECK(as_array(dt).abs().maxCoeff() > 1e-3);
    CHECK(nn::parameter_count(block) == plain + 8 * 48 + 48);
  }
}

TEST_CASE("AdaLNBlock at the identity init equals the plain block") {
  Generator gen{13, 0};
  INFO("seed " << gen.seed);
  spm::AdaLNBlock<double, spm::StepConditioned> cond(8, 2);
  spm::AdaLNBlock<double, spm::Unconditioned> plain(8, 2);
  cond.reset_parameters(gen, 2);
  auto dict = io::state_dict(cond);
  const auto loaded = io::load_state_dict(plain, dict, non_strict());
  CHECK(loaded.missing.empty());
  auto unexpected = loaded.unexpected;
  std::sort(unexpected.begin(), unexpected.end());
  CHECK(unexpected == std::vector<std::string>{"adaLN_modulation.1.bias", "adaLN_modulation.1.weight"});
  const auto x = randn<double>(Shape{2, 4, 8}, gen);
  const auto y = plain.forward(x, Tensor<double>());
  for (int trial = 0; trial < 3; ++trial) {
    const auto t_emb = randn<double>(Shape{2, 8}, gen, 3.0);
    CHECK(max_abs_diff<double>(cond.forward(x, t_emb).view(), y.view()) < 1e-14);
  }
}

TEST_CASE_TEMPLATE("ImageEncoder forward matches a loop reference", Policy, spm::StepConditioned, spm::Unconditioned) {
  Generator gen{21, 0};
  INFO("seed " << gen.seed << " policy " << Policy::name);
  const auto c = tiny_image();
  spm::ImageEncoder<double, Policy> enc(c);
  enc.reset_parameters(gen);
  perturb_adaln(enc, gen);
  const auto x = randn<double>(Shape{3, 2, 4, 4}, gen);
  const Tensor<double> t(Shape{3}, {0.0, 251.0, 951.0});
  const auto y = enc.forward(x, t);
  REQUIRE(y.shape() == Shape{3, 6});
  CHECK(max_diff(y, encoder_ref(c, Policy::conditioned, x, t, parameters_of(enc))) < 1e-12);
}

TEST_CASE_TEMPLATE("ImageEncoder gradients (image, parameters)", Policy, spm::StepConditioned, spm::Unconditioned) {
  Generator gen{22, 0};
  INFO("seed " << gen.seed << " policy " << Policy::name);
  spm::ImageEncoder<double, Policy> enc(tiny_image());
  enc.reset_parameters(gen);
  perturb_adaln(enc, gen);
  if constexpr (Policy::conditioned)
    for (auto* l : {&enc.t_embedder().linear_1(), &enc.t_embedder().linear_2()})
      fill_normal(l->bias().value.view(), gen, 0.0, 0.5);  // nonzero biases so every t_embedder gradient is checked
  auto x = randn<double>(Shape{2, 2, 4, 4}, gen);
  const Tensor<double> t(Shape{2}, {3.0, 500.0});
  Tensor<double> dx;
  std::vector<testing::GradcheckTarget> targets{{"x", &x, &dx}};
  add_parameter_targets(enc, targets);
  const auto r = testing::gradcheck_function([&] { return enc.forward(x, t); },
                                             [&](const Tensor<double>& dy) {
                                               nn::zero_grad(enc);
                                               dx = enc.backward(dy);
                                             },
                                             targets);
  INFO(r.report << r.worst);
  CHECK(r.ok);
}

TEST_CASE("PromptEncoder pools the non-pad tokens, and every position of the empty prompt") {
  Generator gen{31, 0};
  INFO("seed " << gen.seed);
  const std::int64_t w = 8, length = 4;
  spm::PromptEncoder<double> enc(7, length, w, 2, 6);
  enc.reset_parameters(gen);
  // zero residual branches: blocks.0 is the identity, so features = proj(mean over pooled tokens of LN(tok + pos))
  auto p = parameters_of(enc);
  for (auto name : {"blocks.0.attn.to_out.0.weight", "blocks.0.attn.to_out.0.bias", "blocks.0.mlp.c_proj.weight",
                    "blocks.0.mlp.c_proj.bias"})
    p.at(name)->fill_zero();
  fill_normal(p.at("ln_final.bias")->view(), gen, 0.0, 1.0);
  const Rows ids{{3, 1, 6, 0}, {0, 0, 0, 0}, {2, 2, 2, 2}};
  const auto y = enc.forward(ids);
  REQUIRE(y.shape() == Shape{3, 6});
  Vec pooled(3 * w, 0.0);
  for (std::int64_t b = 0; b < 3; ++b) {
    Vec tokens;
    for (std::int64_t l = 0; l < length; ++l) {
      const auto id = ids[b][l];
      if (id == 0 && b != 1) continue;  // row 1 is all padding: every position counts
      for (std::int64_t k = 0; k < w; ++k)
        tokens.push_back((*p.at("token_embedding.weight"))[id * w + k] +
                         (*p.at("position_embedding.weight"))[l * w + k]);
    }
    const std::int64_t count = static_cast<std::int64_t>(tokens.size()) / w;
    const auto normed = layer_norm(tokens, count, w, *p.at("ln_final.weight"), *p.at("ln_final.bias"));
    for (std::int64_t i = 0; i < count; ++i)
      for (std::int64_t k = 0; k < w; ++k) pooled[b * w + k] += normed[i * w + k] / count;
  }
  CHECK(max_diff(y, linear(pooled, 3, w, *p.at("text_projection.weight"), nullptr)) < 1e-12);
}

TEST_CASE("PromptEncoder gradients (parameters, with an all-pad row)") {
  Generator gen{32, 0};
  INFO("seed " << gen.seed);
  spm::PromptEncoder<double> enc(7, 4, 8, 2, 6);
  enc.reset_parameters(gen);
  const Rows ids{{3, 1, 6, 0}, {0, 0, 0, 0}, {5, 5, 2, 4}};
  std::vector<testing::GradcheckTarget> targets;
  add_parameter_targets(enc, targets);
  const auto r = testing::gradcheck_function([&] { return enc.forward(ids); },
                                             [&](const Tensor<double>& dy) {
                                               nn::zero_grad(enc);
                                               enc.backward(dy);
                                             },
                                             targets);
  INFO(r.report << r.worst);
  CHECK(r.ok);
}

TEST_CASE_TEMPLATE("PreferenceNetwork scores are exp(logit_scale) cos(image, text)", Policy, spm::StepConditioned,
                   spm::Unconditioned) {
  Generator gen{41, 0};
  INFO("seed " << gen.seed << " policy " << Policy::name);
  spm::PreferenceNetwork<double, Policy> net(tiny_network(), 7);
  net.reset_parameters(gen);
  perturb_adaln(net, gen);
  CHECK(net.logit_scale().value[0] == 0.5);
  const auto x = randn<double>(Shape{2, 2, 4, 4}, gen);
  const Tensor<double> t(Shape{2}, {10.0, 700.0});
  const auto s = net.forward(x, t, tiny_rows());
  REQUIRE(s.shape() == Shape{2});
  const auto f = net.visual().forward(x, t);
  const auto g = net.text().forward(tiny_rows());
  for (std::int64_t b = 0; b < 2; ++b) {
    double fg = 0, ff = 0, gg = 0;
    for (std::int64_t k = 0; k < 6; ++k) {
      fg += f[b * 6 + k] * g[b * 6 + k];
      ff += f[b * 6 + k] * f[b * 6 + k];
      gg += g[b * 6 + k] * g[b * 6 + k];
    }
    CHECK(s[b] == doctest::Approx(std::exp(0.5) * fg / std::sqrt(ff * gg)).epsilon(1e-12));
  }
}

TEST_CASE_TEMPLATE("PreferenceNetwork gradients (images, both towers, logit_scale)", Policy, spm::StepConditioned,
                   spm::Unconditioned) {
  Generator gen{42, 0};
  INFO("seed " << gen.seed << " policy " << Policy::name);
  spm::PreferenceNetwork<double, Policy> net(tiny_network(), 7);
  net.reset_parameters(gen);
  perturb_adaln(net, gen);
  auto x = randn<double>(Shape{2, 2, 4, 4}, gen);
  const Tensor<double> t(Shape{2}, {10.0, 700.0});
  const Rows ids = tiny_rows();
  Tensor<double> dx;
  std::vector<testing::GradcheckTarget> targets{{"images", &x, &dx}};
  add_parameter_targets(net, targets);
  const auto r = testing::gradcheck_function([&] { return net.forward(x, t, ids); },
                                             [&](const Tensor<double>& dy) {
                                               nn::zero_grad(net);
                                               dx = net.backward(dy);
                                             },
                                             targets);
  INFO(r.report << r.worst);
  CHECK(r.ok);
  CHECK(r.report.find("logit_scale []") != std::string::npos);
}

TEST_CASE("Identity init: the step-aware network scores like the unconditioned one until adaLN moves") {
  Generator gen{51, 0};
  INFO("seed " << gen.seed);
  const auto config = tiny_network();
  auto cond = spm::make_preference_network<spm::PreferenceNetwork<double, spm::StepConditioned>>(config, gen);
  spm::PreferenceNetwork<double, spm::Unconditioned> plain(config, text::fashion_tokenizer(4).vocab_size());
  const auto result = io::load_state_dict(plain, io::state_dict(cond), non_strict());
  CHECK(result.missing.empty());
  for (const auto& key : result.unexpected)
    CHECK_MESSAGE((key.find("adaLN_modulation") != std::string::npos || key.find("t_embedder") != std::string::npos),
                  key);
  CHECK(result.unexpected.size() == 2 * 2 + 2 + 4);  // 2 blocks x (w, b), final (w, b), t_embedder 2 x (w, b)

  const auto x = randn<double>(Shape{3, 2, 4, 4}, gen);
  const auto tok = text::fashion_tokenizer(4);
  const Rows ids{tok.encode("a shirt"), tok.encode(""), tok.encode("a photo of a")};
  const auto reference = plain.forward(x, Tensor<double>(Shape{3}, {0.0, 0.0, 0.0}), ids);
  for (double tv : {0.0, 1.0, 251.0, 501.0, 951.0}) {
    const Tensor<double> t(Shape{3}, {tv, tv, 999.0 - tv});
    CHECK(max_abs_diff<double>(cond.forward(x, t, ids).view(), reference.view()) < 1e-12);
  }
  perturb_adaln(cond, gen, 0.1);
  const auto s0 = cond.forward(x, Tensor<double>(Shape{3}, {0.0, 0.0, 0.0}), ids);
  const auto s1 = cond.forward(x, Tensor<double>(Shape{3}, {500.0, 500.0, 500.0}), ids);
  CHECK(max_abs_diff<double>(s0.view(), s1.view()) > 1e-6);
  CHECK(max_abs_diff<double>(s0.view(), reference.view()) > 1e-6);
}

TEST_CASE("Parameter names and counts of the Fashion-MNIST default") {
  // image {32, 1, 4, 64, depth 4, 4 heads, embed 64}, text width 64, 4 heads, 8 tokens
  const spm::PreferenceNetworkConfig config{{32, 1, 4, 64, 4, 4, 64}, 64, 4, 8, std::log(1 / 0.07)};
  Generator gen{61, 0};
  auto cond = spm::make_preference_network<spm::PreferenceNetwork<float, spm::StepConditioned>>(config, gen);
  auto plain = spm::make_preference_network<spm::PreferenceNetwork<float, spm::Unconditioned>>(config, gen);
  const std::int64_t w = 64, e = 64, vocab = text::fashion_tokenizer(8).vocab_size();
  const std::int64_t block = 2 * 2 * w + 4 * w * w + w + (w * 4 * w + 4 * w) + (4 * w * w + w);
  const std::int64_t visual = 16 * w + w + 65 * w + 2 * w + 4 * block + 2 * w + w * e;
  const std::int64_t text = vocab * w + 8 * w + block + 2 * w + w * e;
  const std::int64_t adaln = 4 * (w * 6 * w + 6 * w) + (w * 2 * w + 2 * w) + (256 * w + w) + (w * w + w);
  CHECK(nn::parameter_count(plain) == visual + text + 1);
  CHECK(nn::parameter_count(cond) == visual + text + 1 + adaln);

  std::set<std::string> names;
  cond.visit_parameters([&](std::string_view n, auto&) { names.emplace(n); }, {});
  for (auto n : {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
                 "visual.blocks.0.ln_1.bias", "visual.blocks.3.attn.to_q.weight", "visual.blocks.3.mlp.c_fc.weight",
                 "visual.blocks.2.adaLN_modulation.1.weight", "visual.ln_post.bias",
                 "visual.final_adaLN_modulation.1.bias", "visual.t_embedder.linear_1.weight", "visual.proj.weight",
                 "text.token_embedding.weight", "text.position_embedding.weight", "text.blocks.0.mlp.c_proj.bias",
                 "text.ln_final.weight", "text.text_projection.weight", "logit_scale"})
    CHECK_MESSAGE(names.contains(n), n);
  CHECK(cond.logit_scale().value[0] == doctest::Approx(2.6592600369327779));

  // float forward + backward at B = 4 runs and gives finite scores
  const auto tok = text::fashion_tokenizer(8);
  Rows ids;
  for (int i = 0; i < 4; ++i) ids.push_back(tok.encode(text::fashion_prompt(i, static_cast<std::size_t>(i))));
  const auto x = randn<float>(Shape{4, 1, 32, 32}, gen);
  const Tensor<float> t(Shape{4}, {0.f, 251.f, 501.f, 951.f});
  const auto s = cond.forward(x, t, ids);
  for (std::int64_t b = 0; b < 4; ++b) CHECK(std::isfinite(s[b]));
  const auto dx = cond.backward(Tensor<float>(Shape{4}, {1.f, -1.f, 0.5f, 0.f}));
  CHECK(dx.shape() == Shape{4, 1, 32, 32});
}

TEST_CASE("PreferenceNetworkConfig round-trips through JSON") {
  const auto j = io::json::parse(R"({"image": {"resolution": 32, "channels": 1, "patch_size": 4, "width": 64,
    "depth": 4, "heads": 4, "embed_dim": 64}, "text_width": 64, "text_heads": 4, "text_max_length": 8,
    "init_logit_scale": 2.6592600369327779})");
  const auto c = io::from_json<spm::PreferenceNetworkConfig>(j, "spm.json");
  CHECK(c.image.depth == 4);
  CHECK(io::to_json(c) == j);
  auto missing = j;
  missing["image"].erase("heads");
  CHECK_THROWS_WITH_AS(io::from_json<spm::PreferenceNetworkConfig>(missing, "spm.json"),
                       doctest::Contains("image.heads: missing key"), error);
}

TEST_CASE("Shape errors name the shapes") {
  spm::PreferenceNetwork<double, spm::StepConditioned> net(tiny_network(), 7);
  const Tensor<double> t(Shape{2}, {1.0, 2.0});
  CHECK_THROWS_WITH_AS(net.forward(Tensor<double>(Shape{2, 1, 4, 4}), t, tiny_rows()),
                       doctest::Contains("image shape [2, 1, 4, 4] is not [B, 2, 4, 4]"), error);
  CHECK_THROWS_WITH_AS(net.forward(Tensor<double>(Shape{2, 2, 4, 4}), Tensor<double>(Shape{3}), tiny_rows()),
                       doctest::Contains("timestep shape [3] is not [2]"), error);
  CHECK_THROWS_WITH_AS(net.forward(Tensor<double>(Shape{3, 2, 4, 4}), t, tiny_rows()),
                       doctest::Contains("2 token rows for image shape [3, 2, 4, 4]"), error);
  net.forward(Tensor<double>(Shape{2, 2, 4, 4}), t, tiny_rows());
  CHECK_THROWS_WITH_AS(net.backward(Tensor<double>(Shape{3})),
                       doctest::Contains("gradient shape [3] does not match scores shape [2]"), error);
  using Plain = spm::ImageEncoder<double, spm::Unconditioned>;
  CHECK_THROWS_WITH_AS(Plain(spm::ImageEncoderConfig{30, 1, 4, 8, 1, 2, 4}),
                       doctest::Contains("network.image.patch_size: 4 does not divide resolution 30"), error);

  spm::AdaLNBlock<double, spm::StepConditioned> block(8, 2);
  CHECK_THROWS_WITH_AS(block.forward(Tensor<double>(Shape{2, 3, 8}), Tensor<double>(Shape{2, 4})),
                       doctest::Contains("t_emb shape [2, 4] is not [2, 8] for input shape [2, 3, 8]"), error);
  CHECK_THROWS_WITH_AS(block.forward(Tensor<double>(Shape{2, 3, 6}), Tensor<double>(Shape{2, 8})),
                       doctest::Contains("input shape [2, 3, 6] is not [B, N, 8]"), error);
  block.forward(Tensor<double>(Shape{2, 3, 8}), Tensor<double>(Shape{2, 8}));
  CHECK_THROWS_WITH_AS(block.backward(Tensor<double>(Shape{2, 4, 8})),
                       doctest::Contains("gradient shape [2, 4, 8] does not match output shape [2, 3, 8]"), error);
}
