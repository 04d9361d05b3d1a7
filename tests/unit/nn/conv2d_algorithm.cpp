// SPDX-License-Identifier: MIT
#include <algorithm>
#include <cmath>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/norm_act_conv.hpp"
#include "spo/tensor/ops.hpp"

#include "support/tensor_checks.hpp"

using namespace spo;
using cpu_kernels::Conv2dAlgorithm;
using cpu_kernels::inference_conv2d_algorithm;
using cpu_kernels::inference_conv2d_algorithm_guard;

namespace {

/// max |a - b| / max |b|
double relative_difference(const Tensor<float, cpu>& a, const Tensor<float, cpu>& b) {
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

}  // namespace

TEST_CASE("inference_conv2d_algorithm_guard sets the thread's algorithm and restores the previous one") {
  CHECK(inference_conv2d_algorithm() == Conv2dAlgorithm::direct);
  {
    const inference_conv2d_algorithm_guard outer(Conv2dAlgorithm::winograd);
    CHECK(inference_conv2d_algorithm() == Conv2dAlgorithm::winograd);
    {
      const inference_conv2d_algorithm_guard inner(Conv2dAlgorithm::direct);
      CHECK(inference_conv2d_algorithm() == Conv2dAlgorithm::direct);
    }
    CHECK(inference_conv2d_algorithm() == Conv2dAlgorithm::winograd);
  }
  CHECK(inference_conv2d_algorithm() == Conv2dAlgorithm::direct);
}

TEST_CASE("Winograd convolutions: close to direct where oneDNN has them, direct everywhere else") {
  Generator gen(9);
  // 3x3 stride 1 at two channel counts (oneDNN's F(2x2, 3x3) and F(4x4, 3x3) kernels on AVX-512), then a stride-2
  // convolution (no Winograd kernel) and one with fewer output positions than winograd_min_positions.
  struct Case {
    Shape x;
    std::int64_t out, stride;
    bool direct;  // Winograd does not apply
  };
  static_assert(cpu_kernels::winograd_min_positions == 2 * 64 * 64);
  for (const auto& c : {Case{Shape{2, 32, 64, 64}, 32, 1, false}, Case{Shape{2, 256, 64, 64}, 256, 1, false},
                        Case{Shape{2, 32, 128, 128}, 32, 2, true}, Case{Shape{1, 32, 64, 64}, 32, 1, true}}) {
    CAPTURE(c.x);
    nn::Conv2d<float> conv(c.x[1], c.out, 3, c.stride, 1);
    conv.reset_parameters(gen);
    const auto x = test_support::random_normal(c.x, gen);
    const auto s = conv.geometry(c.x);
    Tensor<float, cpu> direct, winograd, training;
    {
      nn::no_grad_guard no_grad;
      direct = conv.forward(x);
      const inference_conv2d_algorithm_guard guard(Conv2dAlgorithm::winograd);
      winograd = conv.forward(x);
    }
    {
      const inference_conv2d_algorithm_guard guard(Conv2dAlgorithm::winograd);
      training = conv.forward(x);  // grad mode: the input is saved for backward, so the direct kernel runs
    }
    CHECK(test_support::bitwise_equal(training, direct));
    const auto algorithm = cpu_kernels::detail::conv2d_forward_entry(s, true, Conv2dAlgorithm::winograd).algorithm;
    if (c.direct) CHECK(algorithm == Conv2dAlgorithm::direct);
    if (algorithm == Conv2dAlgorithm::direct)
      CHECK(test_support::bitwise_equal(winograd, direct));
    else
      CHECK(relative_difference(winograd, direct) < 1e-5);  // measured: a few 1e-6
  }
}

TEST_CASE("the fused GroupNorm + SiLU + conv pass follows the inference algorithm") {
  Generator gen(10);
  nn::GroupNorm<float> norm(32, 64, 1e-6);
  nn::SiLU<float> act;
  nn::Conv2d<float> conv(64, 64, 3, 1, 1);
  conv.reset_parameters(gen);
  const auto x = test_support::random_normal(Shape{2, 64, 64, 64}, gen);
  nn::no_grad_guard no_grad;
  const inference_conv2d_algorithm_guard guard(Conv2dAlgorithm::winograd);
  CHECK(test_support::bitwise_equal(nn::norm_act_conv(norm, act, conv, x), conv.forward(act.forward(norm.forward(x)))));
}
