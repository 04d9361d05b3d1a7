// SPDX-License-Identifier: MIT
#include "spo/nn/lora.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/linear.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::LoRA<nn::Linear<double>>>);
static_assert(nn::LoRABase<nn::LoRA<nn::Linear<float>>>);

namespace {
/// A template holding a projection type, as an attention block would.
template <class Proj>
struct Holder {
  Proj to_q{4, 3, false};
  Proj to_k = Proj(4, 3);
};

std::vector<std::string> names_of(nn::LoRA<nn::Linear<double>>& l) {
  std::vector<std::string> names;
  l.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "to_q");
  return names;
}
}  // namespace

TEST_CASE("LoRA is constructed like Linear and equals it without an adapter or with B = 0") {
  Holder<nn::Linear<double>> plain;
  Holder<nn::LoRA<nn::Linear<double>>> lora;
  CHECK(lora.to_q.in_features() == 4);
  CHECK(lora.to_k.out_features() == 3);

  Generator g{3, 0};
  nn::LoRA<nn::Linear<double>> l(5, 4);
  l.reset_parameters(g);
  nn::Linear<double> base = l.base();
  auto x = randn<double>(Shape{2, 3, 5}, g);
  auto y_base = base.forward(x);
  CHECK(max_abs_diff<double>(l.forward(x).view(), y_base.view()) == 0.0);
  CHECK(names_of(l) == std::vector<std::string>{"to_q.weight", "to_q.bias"});

  l.attach(2, 4.0, g);
  CHECK(l.scale() == 2.0);
  CHECK(names_of(l) ==
        std::vector<std::string>{"to_q.weight", "to_q.bias", "to_q.lora_A.weight", "to_q.lora_B.weight"});
  CHECK(l.lora_A().shape() == Shape{2, 5});
  CHECK(l.lora_B().shape() == Shape{4, 2});
  CHECK(max_abs_diff<double>(l.forward(x).view(), y_base.view()) < 1e-15);  // B = 0 at init
  // A ~ N(0, 1/r^2): std 0.5 for r = 2
  nn::LoRA<nn::Linear<double>> big(400, 4);
  big.attach(2, 2.0, g);
  double ss = 0;
  for (std::int64_t i = 0; i < big.lora_A().value.numel(); ++i) ss += big.lora_A().value[i] * big.lora_A().value[i];
  CHECK(std::sqrt(ss / 800.0) == doctest::Approx(0.5).epsilon(0.1));
}

TEST_CASE("LoRA forward is base(x) + (alpha / r) x A^T B^T") {
  nn::LoRA<nn::Linear<double>> l(2, 2, false);
  l.weight().value = Tensor<double>(Shape{2, 2}, {1, 0, 0, 1});
  Generator g{1, 0};
  l.attach(1, 3.0, g);
  l.lora_A().value = Tensor<double>(Shape{1, 2}, {1, 2});
  l.lora_B().value = Tensor<double>(Shape{2, 1}, {1, -1});
  auto y = l.forward(Tensor<double>(Shape{1, 2}, {1, 1}));
  // x A^T = 3; 3 * 3 * [1, -1] = [9, -9]; plus identity base
  CHECK(y[0] == doctest::Approx(10.0));
  CHECK(y[1] == doctest::Approx(-8.0));
}

TEST_CASE("LoRA gradients match finite differences with the adapter attached and B non-zero") {
  Generator g{4, 0};
  for (bool bias : {true, false}) {
    nn::LoRA<nn::Linear<double>> l(6, 5, bias);
    l.reset_parameters(g);
    l.attach(3, 6.0, g);
    fill_normal(l.lora_B().value.view(), g);
    auto r = testing::gradcheck(l, randn<double>(Shape{2, 4, 6}, g));
    INFO(r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("LoRA freezes the base: only A and B receive gradients") {
  Generator g{5, 0};
  nn::LoRA<nn::Linear<float>> l(6, 5);
  l.reset_parameters(g);
  l.attach(2, 2.0, g);
  fill_normal(l.lora_B().value.view(), g);
  CHECK(nn::parameter_count(l, true) == 2 * 6 + 5 * 2);
  CHECK_FALSE(l.weight().trainable);
  CHECK_FALSE(l.bias().trainable);
  nn::zero_grad(l);
  l.forward(randn<float>(Shape{3, 6}, g));
  auto dx = l.backward(randn<float>(Shape{3, 5}, g));
  CHECK(dx.shape() == Shape{3, 6});
  CHECK(l.weight().grad.empty());
  CHECK(l.bias().grad.empty());
  double ga = 0, gb = 0;
  for (std::int64_t i = 0; i < l.lora_A().grad.numel(); ++i) ga += std::abs(l.lora_A().grad[i]);
  for (std::int64_t i = 0; i < l.lora_B().grad.numel(); ++i) gb += std::abs(l.lora_B().grad[i]);
  CHECK(ga > 0);
  CHECK(gb > 0);

  l.detach();
  CHECK(l.weight().trainable);
  CHECK(nn::parameter_count(l) == 6 * 5 + 5);
}

TEST_CASE("LoRA merge folds the adapter into the base weight") {
  Generator g{6, 0};
  nn::LoRA<nn::Linear<double>> l(7, 3);
  l.reset_parameters(g);
  l.attach(2, 3.0, g);
  fill_normal(l.lora_B().value.view(), g);
  auto x = randn<double>(Shape{4, 7}, g);
  auto y = l.forward(x);
  l.merge();
  CHECK_FALSE(l.attached());
  CHECK(l.weight().trainable);
  CHECK(nn::parameter_count(l) == 7 * 3 + 3);
  CHECK(max_abs_diff<double>(l.forward(x).view(), y.view()) < 1e-12);
  CHECK_THROWS_WITH_AS(l.forward(Tensor<double>(Shape{4, 6})), doctest::Contains("[4, 6]"), spo::error);
}
