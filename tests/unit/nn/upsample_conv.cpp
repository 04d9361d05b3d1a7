// SPDX-License-Identifier: MIT
#include "spo/nn/upsample_conv.hpp"

#include <cstdint>
#include <utility>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/tensor/ops.hpp"

#include "support/tensor_checks.hpp"

using namespace spo;

static_assert(nn::FusedUpsampleConvKernel<float, cpu>);
static_assert(!nn::FusedUpsampleConvKernel<double, cpu>);

TEST_CASE("upsample_conv without grad mode is bitwise Upsample2x then Conv2d") {
  Generator gen(5);
  // 32 channels (whole blocks), 40 (a padded block), odd sizes, one plane larger than a transform chunk
  using Case = std::pair<Shape, std::int64_t>;  // input, output channels
  for (const auto& [shape, out] :
       {Case{Shape{2, 32, 8, 8}, 32}, Case{Shape{1, 40, 5, 7}, 40}, Case{Shape{1, 16, 20, 12}, 8}}) {
    CAPTURE(shape);
    nn::Upsample2x<float> up;
    nn::Conv2d<float> conv(shape[1], out, 3, 1, 1);
    conv.reset_parameters(gen);
    Tensor<float, cpu> x(shape);
    fill_normal(x.view(), gen, 0.f, 1.f);
    nn::no_grad_guard no_grad;
    const auto expected = conv.forward(up.forward(x));
    nn::ComputeMeter meter;
    Tensor<float, cpu> fused;
    {
      nn::MeterScope scope(meter);
      fused = nn::upsample_conv(up, conv, x);
    }
    CHECK(test_support::bitwise_equal(fused, expected));
    const Shape upsampled{shape[0], shape[1], 2 * shape[2], 2 * shape[3]};
    CHECK(meter.at("other").forward_flops == conv.geometry(upsampled).flops());
  }
}

TEST_CASE("upsample_conv in grad mode runs the layers, and a later fused call forgets their state") {
  Generator gen(6);
  nn::Upsample2x<float> up;
  nn::Conv2d<float> conv(16, 16, 3, 1, 1);
  conv.reset_parameters(gen);
  Tensor<float, cpu> x(Shape{1, 16, 4, 4});
  fill_normal(x.view(), gen, 0.f, 1.f);
  const auto y = nn::upsample_conv(up, conv, x);
  CHECK(up.backward(conv.backward(Tensor<float, cpu>(y.shape()))).shape() == x.shape());
  (void)nn::upsample_conv(up, conv, x);
  {
    nn::no_grad_guard no_grad;
    (void)nn::upsample_conv(up, conv, x);
  }
  CHECK_THROWS_WITH(conv.backward(Tensor<float, cpu>(y.shape())), doctest::Contains("without a forward in grad mode"));
}
