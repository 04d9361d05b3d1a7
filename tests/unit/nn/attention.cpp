// SPDX-License-Identifier: MIT
#include "spo/nn/attention.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/lora.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::Attention<double>>);
static_assert(nn::Layer<nn::Attention<float>>);
static_assert(nn::ContextLayer<nn::Attention<double>>);
static_assert(nn::ContextLayer<nn::Attention<float>>);
static_assert(!nn::ContextLayer<nn::Linear<float>>);

namespace {

/// The whole layer with plain loops in double: projections, per-head softmax attention, head merge, to_out.0.
template <class T>
std::vector<double> loop_layer(nn::Attention<T>& attn, const Tensor<T>& x, const Tensor<T>& ctx) {
  const std::int64_t batch = x.shape()[0], n = x.shape()[1], m = ctx.shape()[1];
  const std::int64_t cq = attn.query_dim(), cc = attn.context_dim(), heads = attn.heads(), dh = attn.dim_head();
  const std::int64_t inner = heads * dh;
  auto project = [](const Tensor<T>& in, std::int64_t rows, std::int64_t cin, const Tensor<T>& w, std::int64_t cout) {
    std::vector<double> out(rows * cout, 0.0);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < cout; ++j)
        for (std::int64_t c = 0; c < cin; ++c) out[r * cout + j] += double(in[r * cin + c]) * double(w[j * cin + c]);
    return out;
  };
  auto q = project(x, batch * n, cq, attn.to_q().weight().value, inner);
  auto k = project(ctx, batch * m, cc, attn.to_k().weight().value, inner);
  auto v = project(ctx, batch * m, cc, attn.to_v().weight().value, inner);
  std::vector<double> merged(batch * n * inner, 0.0), p(m);
  const double scale = 1.0 / std::sqrt(double(dh));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < n; ++i) {
        double z = 0;
        for (std::int64_t j = 0; j < m; ++j) {
          double s = 0;
          for (std::int64_t c = 0; c < dh; ++c)
            s += q[(b * n + i) * inner + h * dh + c] * k[(b * m + j) * inner + h * dh + c];
          z += (p[j] = std::exp(s * scale));
        }
        for (std::int64_t j = 0; j < m; ++j)
          for (std::int64_t c = 0; c < dh; ++c)
            merged[(b * n + i) * inner + h * dh + c] += p[j] / z * v[(b * m + j) * inner + h * dh + c];
      }
  const auto& wo = attn.to_out().weight().value;
  const auto& bo = attn.to_out().bias().value;
  std::vector<double> y(batch * n * cq);
  for (std::int64_t r = 0; r < batch * n; ++r)
    for (std::int64_t j = 0; j < cq; ++j) {
      double s = double(bo[j]);
      for (std::int64_t c = 0; c < inner; ++c) s += merged[r * inner + c] * double(wo[j * inner + c]);
      y[r * cq + j] = s;
    }
  return y;
}

template <class T>
double max_diff(const Tensor<T>& a, const std::vector<double>& b) {
  REQUIRE(static_cast<std::size_t>(a.numel()) == b.size());
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

/// Identity projections and to_out.0 = (I, bias) on a 2-wide, 1-head layer.
nn::Attention<double> identity_attention(std::int64_t context_dim = 0) {
  nn::Attention<double> attn(2, 1, 2, context_dim);
  const Tensor<double> eye(Shape{2, 2}, {1, 0, 0, 1});
  attn.to_q().weight().value = eye;
  attn.to_k().weight().value = eye;
  attn.to_v().weight().value = eye;
  attn.to_out().weight().value = eye;
  attn.to_out().bias().value = Tensor<double>(Shape{2}, {0.5, -1});
  return attn;
}

}  // namespace

TEST_CASE("Attention forward on a hand-computed case") {
  SUBCASE("self-attention: x = I, scores dim_head^-0.5 * I") {
    auto attn = identity_attention();
    // row 0: softmax([1/sqrt(2), 0]) = [p, 1 - p], p = sigmoid(1/sqrt(2)); o = [[p, 1 - p], [1 - p, p]]
    const double p = 0.6697615493266569;
    auto y = attn.forward(Tensor<double>(Shape{1, 2, 2}, {1, 0, 0, 1}));
    REQUIRE(y.shape() == Shape{1, 2, 2});
    CHECK(y[0] == doctest::Approx(p + 0.5));
    CHECK(y[1] == doctest::Approx(1 - p - 1));
    CHECK(y[2] == doctest::Approx(1 - p + 0.5));
    CHECK(y[3] == doctest::Approx(p - 1));
  }
  SUBCASE("cross-attention: one query [1, 0] to three context tokens [1, 0], [0, 1], [1, 1]") {
    auto attn = identity_attention(2);
    // scores [s, 0, s], s = 1/sqrt(2): probabilities [a, c, a], a = e^s / (2 e^s + 1), c = 1 / (2 e^s + 1)
    const double a = 0.4011120926797859, c = 0.1977758146404282;
    auto y = attn.forward(Tensor<double>(Shape{1, 1, 2}, {1, 0}), Tensor<double>(Shape{1, 3, 2}, {1, 0, 0, 1, 1, 1}));
    REQUIRE(y.shape() == Shape{1, 1, 2});
    CHECK(y[0] == doctest::Approx(2 * a + 0.5));
    CHECK(y[1] == doctest::Approx(c + a - 1));
  }
}

TEST_CASE_TEMPLATE("Attention matches plain loops for several head splits, self and cross", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  struct Config {
    std::int64_t batch, n, m, query_dim, context_dim, heads, dim_head;
  };
  for (Config c : {Config{2, 5, 5, 6, 0, 1, 6}, Config{2, 70, 70, 8, 0, 2, 4}, Config{1, 9, 9, 12, 0, 4, 3},
                   Config{2, 70, 9, 8, 5, 2, 3}, Config{1, 3, 300, 4, 6, 3, 5}}) {
    Generator g{static_cast<std::uint64_t>(c.n * 10 + c.heads), 0};
    INFO("seed " << g.seed << " batch " << c.batch << " n " << c.n << " m " << c.m << " heads " << c.heads);
    nn::Attention<T> attn(c.query_dim, c.heads, c.dim_head, c.context_dim);
    attn.reset_parameters(g);
    fill_normal(attn.to_out().bias().value.view(), g);
    auto x = randn<T>(Shape{c.batch, c.n, c.query_dim}, g);
    if (c.context_dim == 0) {
      auto y = attn.forward(x);
      CHECK(y.shape() == x.shape());
      CHECK(max_diff(y, loop_layer(attn, x, x)) < tol);
    } else {
      auto ctx = randn<T>(Shape{c.batch, c.m, c.context_dim}, g);
      auto y = attn.forward(x, ctx);
      CHECK(y.shape() == x.shape());
      CHECK(max_diff(y, loop_layer(attn, x, ctx)) < tol);
    }
  }
}

TEST_CASE("Attention self-attention gradients match finite differences (input and all parameters)") {
  Generator g{21, 0};
  for (std::int64_t heads : {1, 2}) {
    nn::Attention<double> attn(5, heads, 3);
    attn.reset_parameters(g);
    auto r = testing::gradcheck(attn, randn<double>(Shape{2, 4, 5}, g));
    INFO("heads " << heads << "\n" << r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("Attention cross-attention gradients match finite differences (input, context and all parameters)") {
  Generator g{22, 0};
  struct Config {
    std::int64_t batch, n, m, heads;
  };
  // the second configuration spans several query and key blocks of the fused kernels
  for (Config c : {Config{2, 4, 3, 2}, Config{1, 70, 260, 2}}) {
    nn::Attention<double> attn(4, c.heads, 3, 6);
    attn.reset_parameters(g);
    fill_normal(attn.to_out().bias().value.view(), g);
    auto x = randn<double>(Shape{c.batch, c.n, 4}, g);
    auto ctx = randn<double>(Shape{c.batch, c.m, 6}, g);
    nn::ContextGradients<double, cpu> grads;
    std::vector<testing::GradcheckTarget> targets{{"input", &x, &grads.dx}, {"context", &ctx, &grads.dcontext}};
    attn.visit_parameters(
        [&](std::string_view name, nn::Parameter<double>& p) {
          targets.push_back({std::string(name), &p.value, &p.grad});
        },
        {});
    testing::GradcheckOptions opt;
    opt.max_coords = c.n > 10 ? 16 : 48;
    if (c.n > 10) opt.step = 1e-5;  // f sums 280 outputs: h = 1e-6 leaves ~2e-9 of round-off in the difference
    auto r = testing::gradcheck_function([&] { return attn.forward(x, ctx); },
                                         [&](const Tensor<double>& dy) {
                                           nn::zero_grad(attn);
                                           grads = attn.backward_context(dy);
                                         },
                                         targets, opt);
    INFO("n " << c.n << " m " << c.m << "\n" << r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("forward(x, x) equals forward(x), and dx + dcontext equals the self-attention dx") {
  Generator g{23, 0};
  nn::Attention<double> a(6, 2, 4), b;
  a.reset_parameters(g);
  b = a;
  auto x = randn<double>(Shape{3, 11, 6}, g);
  auto dy = randn<double>(x.shape(), g);
  auto y_self = a.forward(x);
  auto dx_self = a.backward(dy);
  auto y_cross = b.forward(x, x);
  auto grads = b.backward_context(dy);
  CHECK(max_abs_diff<double>(y_self.view(), y_cross.view()) < 1e-14);
  as_array(grads.dx) += as_array(grads.dcontext);
  CHECK(max_abs_diff<double>(dx_self.view(), grads.dx.view()) < 1e-13);
  CHECK(max_abs_diff<double>(a.to_k().weight().grad.view(), b.to_k().weight().grad.view()) < 1e-13);
}

TEST_CASE("Attention parameter keys follow diffusers and shapes follow heads * dim_head") {
  nn::Attention<float> attn(8, 2, 3, 5);
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  attn.visit_parameters(
      [&](std::string_view n, nn::Parameter<float>& p) {
        names.emplace_back(n);
        shapes.push_back(p.shape());
      },
      "attn2");
  CHECK(names == std::vector<std::string>{"attn2.to_q.weight", "attn2.to_k.weight", "attn2.to_v.weight",
                                          "attn2.to_out.0.weight", "attn2.to_out.0.bias"});
  CHECK(shapes == std::vector<Shape>{Shape{6, 8}, Shape{6, 5}, Shape{6, 5}, Shape{8, 6}, Shape{8}});
  CHECK(attn.scale() == doctest::Approx(1.0 / std::sqrt(3.0)));
}

TEST_CASE("Attention errors name the shapes") {
  nn::Attention<float> self_attn(8, 2, 4);
  nn::Attention<float> cross_attn(8, 2, 4, 5);
  CHECK_THROWS_WITH_AS(self_attn.forward(Tensor<float>(Shape{2, 3, 7})),
                       doctest::Contains("input shape [2, 3, 7] must be [B, N, 8]"), spo::error);
  CHECK_THROWS_WITH_AS(self_attn.forward(Tensor<float>(Shape{3, 8})), doctest::Contains("[3, 8]"), spo::error);
  CHECK_THROWS_WITH_AS(cross_attn.forward(Tensor<float>(Shape{2, 3, 8}), Tensor<float>(Shape{2, 4, 6})),
                       doctest::Contains("context shape [2, 4, 6] must be [2, M, 5] for input shape [2, 3, 8]"),
                       spo::error);
  CHECK_THROWS_WITH_AS(cross_attn.forward(Tensor<float>(Shape{2, 3, 8}), Tensor<float>(Shape{1, 4, 5})),
                       doctest::Contains("context shape [1, 4, 5]"), spo::error);
  CHECK_THROWS_WITH_AS(cross_attn.forward(Tensor<float>(Shape{2, 3, 8})), doctest::Contains("pass a context"),
                       spo::error);
  CHECK_THROWS_WITH_AS(self_attn.backward(Tensor<float>(Shape{2, 3, 8})),
                       doctest::Contains("backward without a forward"), spo::error);
  self_attn.forward(Tensor<float>(Shape{2, 3, 8}));
  CHECK_THROWS_WITH_AS(self_attn.backward(Tensor<float>(Shape{2, 4, 8})),
                       doctest::Contains("gradient shape [2, 4, 8] does not match output shape [2, 3, 8]"), spo::error);
  cross_attn.forward(Tensor<float>(Shape{2, 3, 8}), Tensor<float>(Shape{2, 4, 5}));
  CHECK_THROWS_WITH_AS(cross_attn.backward(Tensor<float>(Shape{2, 3, 8})), doctest::Contains("use backward_context"),
                       spo::error);
}

TEST_CASE("Attention keeps nothing under no_grad and frozen projections get no gradient") {
  Generator g{24, 0};
  nn::Attention<float> attn(8, 2, 4, 5);
  attn.reset_parameters(g);
  auto x = randn<float>(Shape{2, 3, 8}, g);
  auto ctx = randn<float>(Shape{2, 4, 5}, g);
  {
    nn::no_grad_guard guard;
    attn.forward(x, ctx);
  }
  CHECK_THROWS_AS(attn.backward_context(randn<float>(x.shape(), g)), spo::error);
  nn::set_trainable(attn, false);
  attn.to_k().weight().set_trainable(true);
  nn::zero_grad(attn);
  attn.forward(x, ctx);
  auto grads = attn.backward_context(randn<float>(x.shape(), g));
  CHECK(grads.dx.shape() == x.shape());
  CHECK(grads.dcontext.shape() == ctx.shape());
  CHECK(attn.to_q().weight().grad.empty());
  CHECK(attn.to_out().bias().grad.empty());
  CHECK(as_array(attn.to_k().weight().grad).abs().sum() > 0);
}

using LoRAAttention = nn::Attention<double, cpu, nn::LoRA<nn::Linear<double>>>;
static_assert(nn::Layer<LoRAAttention>);
static_assert(nn::ContextLayer<LoRAAttention>);

TEST_CASE("Attention over LoRA projections: keys, frozen base, gradients and equality with merged weights") {
  Generator g{25, 0};
  LoRAAttention attn(6, 2, 3, 4);
  attn.reset_parameters(g);
  for (auto* proj : {&attn.to_q(), &attn.to_k(), &attn.to_v(), &attn.to_out()}) {
    proj->attach(2, 4.0, g);
    fill_normal(proj->lora_B().value.view(), g, 0.0, 0.5);  // B = 0 at attach; make the update visible
  }
  std::vector<std::string> names;
  attn.visit_parameters(
      [&](std::string_view n, auto& p) {
        if (p.trainable) names.emplace_back(n);
      },
      "attn2");
  CHECK(names == std::vector<std::string>{"attn2.to_q.lora_A.weight", "attn2.to_q.lora_B.weight",
                                          "attn2.to_k.lora_A.weight", "attn2.to_k.lora_B.weight",
                                          "attn2.to_v.lora_A.weight", "attn2.to_v.lora_B.weight",
                                          "attn2.to_out.0.lora_A.weight", "attn2.to_out.0.lora_B.weight"});

  auto x = randn<double>(Shape{2, 5, 6}, g);
  auto ctx = randn<double>(Shape{2, 3, 4}, g);
  LoRAAttention merged = attn;
  for (auto* proj : {&merged.to_q(), &merged.to_k(), &merged.to_v(), &merged.to_out()}) proj->merge();
  auto y = attn.forward(x, ctx);
  CHECK(max_abs_diff<double>(y.view(), merged.forward(x, ctx).view()) < 1e-12);

  nn::zero_grad(attn);
  attn.forward(x, ctx);
  attn.backward_context(randn<double>(x.shape(), g));
  CHECK(attn.to_q().weight().grad.empty());
  CHECK(attn.to_out().bias().grad.empty());
  CHECK(as_array(attn.to_v().lora_A().grad).abs().sum() > 0);

  nn::ContextGradients<double, cpu> grads;
  std::vector<testing::GradcheckTarget> targets{{"input", &x, &grads.dx}, {"context", &ctx, &grads.dcontext}};
  attn.visit_parameters(
      [&](std::string_view name, nn::Parameter<double>& p) {
        if (p.trainable) targets.push_back({std::string(name), &p.value, &p.grad});
      },
      {});
  auto r = testing::gradcheck_function([&] { return attn.forward(x, ctx); },
                                       [&](const Tensor<double>& dy) {
                                         nn::zero_grad(attn);
                                         grads = attn.backward_context(dy);
                                       },
                                       targets);
  INFO(r.report << r.worst);
  CHECK(r.ok);
}
