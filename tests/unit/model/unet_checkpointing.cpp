// SPDX-License-Identifier: MIT
// Activation checkpointing as a model policy: a UNet whose resnet and transformer blocks recompute their activations
// in backward gives the same output and bitwise the same input and parameter gradients as the plain UNet (plain and
// LoRA projections, two backward passes in a row), and keeps only its inputs between forward and backward.
#include <map>
#include <string>
#include <string_view>
#include <type_traits>

#include <doctest/doctest.h>

#include "spo/model/unet_2d_condition.hpp"
#include "spo/nn/checkpoint.hpp"
#include "spo/nn/lora.hpp"

#include "support/tiny_model.hpp"

using namespace spo;

namespace {

template <class UNet>
UNet make_unet(bool lora) {
  UNet u(test_support::tiny_unet);
  Generator g{31, 0};
  u.reset_parameters(g);
  if constexpr (requires { u.attach_lora(2, 2.0, g); }) {
    if (lora) {
      Generator lg{32, 0};
      u.attach_lora(2, 2.0, lg);
    }
  }
  return u;
}

/// Every trainable parameter's gradient by name.
template <class UNet>
std::map<std::string, Tensor<double>> gradients(UNet& u) {
  std::map<std::string, Tensor<double>> g;
  u.visit_parameters(
      [&](std::string_view name, nn::Parameter<double>& p) {
        if (p.trainable) g.emplace(std::string(name), p.grad);
      },
      {});
  return g;
}

bool same_bits(const Tensor<double>& a, const Tensor<double>& b) {
  if (a.shape() != b.shape()) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

template <class Proj>
void check_bitwise_equal(bool lora) {
  using Plain = model::UNet2DCondition<double, cpu, Proj>;
  using Ckpt = model::UNet2DCondition<double, cpu, Proj, nn::BlockCheckpointing>;
  static_assert(!Plain::checkpoint_policy::enabled && Ckpt::checkpoint_policy::enabled);
  static_assert(std::is_same_v<typename Ckpt::resnet_type, nn::Checkpointed<model::ResnetBlock2D<double>>>);
  static_assert(std::is_same_v<typename Plain::attention_type, model::Transformer2D<double, cpu, Proj>>);
  auto plain = make_unet<Plain>(lora);
  auto ckpt = make_unet<Ckpt>(lora);
  Generator g{5, 0};
  const auto x = randn<double>(Shape{2, 4, 8, 8}, g);                  // [2, 4, 8, 8]
  const auto ctx = randn<double>(Shape{2, 6, 8}, g);                   // [2, 6, 8]
  const auto dy = randn<double>(Shape{2, 4, 8, 8}, g);                 // [2, 4, 8, 8]
  const Tensor<double> t(Shape{2}, std::vector<double>{17.0, 503.0});  // [2]
  nn::zero_grad(plain);
  nn::zero_grad(ckpt);
  for (int pass = 0; pass < 2; ++pass) {  // gradients accumulate over two passes in both
    const auto y0 = plain.forward(x, t, ctx);
    const auto y1 = ckpt.forward(x, t, ctx);
    CHECK(same_bits(y0, y1));
    const auto g0 = plain.backward(dy);
    const auto g1 = ckpt.backward(dy);
    CHECK(same_bits(g0.dsample, g1.dsample));
    CHECK(same_bits(g0.dcontext, g1.dcontext));
  }
  const auto p0 = gradients(plain), p1 = gradients(ckpt);
  REQUIRE(p0.size() == p1.size());
  REQUIRE(!p0.empty());
  for (const auto& [name, grad] : p0) {
    INFO("parameter " << name);
    CHECK(same_bits(grad, p1.at(name)));
  }
}

}  // namespace

TEST_CASE("checkpointed UNet: bitwise the same output and gradients, every parameter trainable") {
  check_bitwise_equal<nn::Linear<double>>(false);
}

TEST_CASE("checkpointed UNet with LoRA projections: bitwise the same adapter gradients") {
  check_bitwise_equal<nn::LoRA<nn::Linear<double>>>(true);
}

TEST_CASE("a checkpointed block keeps nothing outside grad mode and refuses a backward without a forward") {
  using Block = nn::Checkpointed<model::ResnetBlock2D<double>>;
  Block b(8, 8, 16, 4, 1e-5);
  Generator g{9, 0};
  b.reset_parameters(g);
  const auto x = randn<double>(Shape{1, 8, 4, 4}, g);  // [1, 8, 4, 4]
  const auto temb = randn<double>(Shape{1, 16}, g);    // [1, 16]
  {
    const nn::no_grad_guard ng;
    b.forward(x, temb);
  }
  CHECK_THROWS_WITH_AS(b.backward(x), doctest::Contains("without a forward in grad mode"), spo::error);
  // The plain block gives the same output in either mode.
  model::ResnetBlock2D<double> plain(8, 8, 16, 4, 1e-5);
  Generator g2{9, 0};
  plain.reset_parameters(g2);
  CHECK(same_bits(plain.forward(x, temb), b.forward(x, temb)));
}
