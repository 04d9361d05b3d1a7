// SPDX-License-Identifier: MIT
#include "spo/nn/norm_act_conv.hpp"

#include <string>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/tensor/ops.hpp"

#include "support/tensor_checks.hpp"

using namespace spo;

static_assert(nn::FusedNormActConvKernel<nn::SiLUFunction, float, cpu>);
static_assert(nn::FusedNormActConvKernel<nn::GELUFunction, float, cpu>);
static_assert(!nn::FusedNormActConvKernel<nn::SiLUFunction, double, cpu>);

namespace {

struct Case {
  std::string name;
  Shape x;
  std::int64_t groups, out, kernel, stride, padding;
  bool affine = true;
};

/// The layers of one case with random parameters (GroupNorm's too, so that scale and shift are not trivial).
struct Block {
  nn::GroupNorm<float> norm;
  nn::SiLU<float> act;
  nn::Conv2d<float> conv;

  Block(const Case& c, Generator& gen)
      : norm(c.groups, c.x[1], 1e-6, c.affine), conv(c.x[1], c.out, c.kernel, c.stride, c.padding) {
    conv.reset_parameters(gen);
    if (c.affine) {
      fill_uniform(norm.weight().value.view(), gen, 0.5f, 1.5f);
      fill_uniform(norm.bias().value.view(), gen, -0.5f, 0.5f);
    }
  }
  Tensor<float, cpu> layered(const Tensor<float, cpu>& x) { return conv.forward(act.forward(norm.forward(x))); }
};

}  // namespace

TEST_CASE("norm_act_conv without grad mode is bitwise the three layers one after another") {
  const Case cases[] = {
      {"3x3 at 8x8, 64 channels in 32 groups", Shape{2, 64, 8, 8}, 32, 48, 3, 1, 1},
      {"3x3 at 28x28 (a multiple of 16 positions, rows are not)", Shape{1, 32, 28, 28}, 8, 32, 3, 1, 1},
      {"40 channels: the last channel block is padded", Shape{2, 40, 16, 16}, 8, 24, 3, 1, 1},
      {"3 output channels (conv_out)", Shape{1, 32, 32, 32}, 32, 3, 3, 1, 1},
      {"stride 2", Shape{1, 32, 16, 16}, 4, 16, 3, 2, 1},
      {"1x1: formed in NCHW, then a GEMM", Shape{2, 32, 16, 16}, 8, 16, 1, 1, 0},
      {"no affine", Shape{1, 16, 16, 16}, 4, 16, 3, 1, 1, false},
      {"more positions than one chunk, not a multiple of it", Shape{1, 16, 48, 40}, 4, 8, 3, 1, 1},
  };
  Generator gen(7);
  for (const auto& c : cases) {
    CAPTURE(c.name);
    Block block(c, gen);
    const auto x = test_support::random_normal(c.x, gen, 0.3f, 2.0f);
    nn::no_grad_guard no_grad;
    const auto expected = block.layered(x);
    nn::ComputeMeter meter;
    Tensor<float, cpu> fused;
    {
      nn::MeterScope scope(meter);
      fused = nn::norm_act_conv(block.norm, block.act, block.conv, x);
    }
    CHECK(test_support::bitwise_equal(fused, expected));
    const auto s = block.conv.geometry(c.x);
    // oneDNN reads these sources blocked by channels on every x86 SIMD level, so the fused pass is the one tested.
    if (s.kernel_h == 3) CHECK(cpu_kernels::detail::conv2d_forward_entry(s, true).x_block > 0);
    CHECK(meter.at("other").forward_flops == s.flops());
  }
}

TEST_CASE("norm_act_conv falls back to the layers where the fused kernel does not apply") {
  Generator gen(11);
  SUBCASE("14x14 positions are not a multiple of 16") {
    const Case c{"14x14", Shape{1, 32, 14, 14}, 8, 16, 3, 1, 1};
    Block block(c, gen);
    const auto x = test_support::random_normal(c.x, gen, 0.3f, 2.0f);
    nn::no_grad_guard no_grad;
    CHECK(test_support::bitwise_equal(nn::norm_act_conv(block.norm, block.act, block.conv, x), block.layered(x)));
  }
  SUBCASE("grad mode keeps what backward needs, and backward runs") {
    const Case c{"grad", Shape{1, 16, 8, 8}, 4, 8, 3, 1, 1};
    Block block(c, gen);
    const auto x = test_support::random_normal(c.x, gen, 0.3f, 2.0f);
    const auto y = nn::norm_act_conv(block.norm, block.act, block.conv, x);
    const auto dx = block.norm.backward(block.act.backward(block.conv.backward(Tensor<float, cpu>(y.shape()))));
    CHECK(dx.shape() == c.x);
  }
  SUBCASE("a fused call forgets an earlier grad-mode forward, as the layers' own no-grad forward does") {
    const Case c{"forget", Shape{1, 16, 8, 8}, 4, 8, 3, 1, 1};
    Block block(c, gen);
    const auto x = test_support::random_normal(c.x, gen, 0.3f, 2.0f);
    const auto y = nn::norm_act_conv(block.norm, block.act, block.conv, x);
    {
      nn::no_grad_guard no_grad;
      (void)nn::norm_act_conv(block.norm, block.act, block.conv, x);
    }
    CHECK_THROWS_WITH(block.conv.backward(Tensor<float, cpu>(y.shape())),
                      doctest::Contains("without a forward in grad mode"));
  }
  SUBCASE("mismatched channels are named") {
    const Case c{"channels", Shape{1, 16, 8, 8}, 4, 8, 3, 1, 1};
    Block block(c, gen);
    nn::no_grad_guard no_grad;
    CHECK_THROWS_WITH(
        (void)nn::norm_act_conv(block.norm, block.act, block.conv, Tensor<float, cpu>(Shape{1, 32, 8, 8})),
        doctest::Contains("GroupNorm of 16 channels"));
  }
}

TEST_CASE("conv2d_forward_transformed is the convolution of the transformed input") {
  Generator gen(3);
  for (const auto& [shape, kernel] :
       {std::pair{Shape{2, 24, 12, 20}, 3}, std::pair{Shape{1, 16, 9, 7}, 3}, std::pair{Shape{1, 16, 9, 7}, 1}}) {
    CAPTURE(shape);
    nn::Conv2d<float> conv(shape[1], 20, kernel, 1, kernel / 2);
    conv.reset_parameters(gen);
    const auto x = test_support::random_normal(shape, gen, 0.3f, 2.0f);
    auto tx = Tensor<float, cpu>::uninitialized(shape);  // 2 x - 1
    for (std::int64_t i = 0; i < x.numel(); ++i) tx[i] = 2.f * x[i] - 1.f;
    const auto s = conv.geometry(shape);
    auto y = Tensor<float, cpu>::uninitialized(Shape{s.batch, s.out_channels, s.out_h(), s.out_w()});
    const std::int64_t hw = shape[2] * shape[3];
    cpu_kernels::conv2d_forward_transformed(
        s,
        [&](std::int64_t n, std::int64_t c, std::int64_t p0, std::int64_t len, float* out) {
          for (std::int64_t p = 0; p < len; ++p) out[p] = 2.f * x[(n * shape[1] + c) * hw + p0 + p] - 1.f;
        },
        conv.weight().value.data(), conv.bias().value.data(), y.data());
    nn::no_grad_guard no_grad;
    CHECK(test_support::bitwise_equal(y, conv.forward(tx)));
  }
}
