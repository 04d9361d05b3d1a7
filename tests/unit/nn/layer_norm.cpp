// SPDX-License-Identifier: MIT
#include "spo/nn/layer_norm.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::LayerNorm<double>>);
static_assert(nn::Layer<nn::LayerNorm<float>>);

TEST_CASE("LayerNorm forward on a hand-computed row") {
  nn::LayerNorm<double> ln(4, 0.0);
  ln.weight().value = Tensor<double>(Shape{4}, {1, 2, 1, 2});
  ln.bias().value = Tensor<double>(Shape{4}, {0, 0, 1, 1});
  // row [1, 2, 3, 4]: mean 2.5, biased var 1.25
  auto y = ln.forward(Tensor<double>(Shape{1, 4}, {1, 2, 3, 4}));
  const double r = 1.0 / std::sqrt(1.25);
  CHECK(y[0] == doctest::Approx(-1.5 * r));
  CHECK(y[1] == doctest::Approx(-1.0 * r));
  CHECK(y[2] == doctest::Approx(0.5 * r + 1));
  CHECK(y[3] == doctest::Approx(3.0 * r + 1));
}

TEST_CASE("LayerNorm forward matches a naive loop over every row") {
  const std::uint64_t seed = 4;
  INFO("seed " << seed);
  Generator g{seed, 0};
  const int rows = 2 * 3, dim = 10;
  nn::LayerNorm<double> ln(dim);
  ln.weight().value = randn<double>(Shape{dim}, g);
  ln.bias().value = randn<double>(Shape{dim}, g);
  auto x = randn<double>(Shape{2, 3, dim}, g);
  auto y = ln.forward(x);
  for (int r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int j = 0; j < dim; ++j) mean += x[r * dim + j] / dim;
    for (int j = 0; j < dim; ++j) var += (x[r * dim + j] - mean) * (x[r * dim + j] - mean) / dim;
    for (int j = 0; j < dim; ++j) {
      const double ref = (x[r * dim + j] - mean) / std::sqrt(var + 1e-5) * ln.weight().value[j] + ln.bias().value[j];
      CHECK(y[r * dim + j] == doctest::Approx(ref).epsilon(1e-12));
    }
  }
  nn::LayerNorm<float> lnf(dim);
  lnf.weight().value = cast<float>(ln.weight().value);
  lnf.bias().value = cast<float>(ln.bias().value);
  CHECK(max_abs_diff<double>(cast<double>(lnf.forward(cast<float>(x))).view(), y.view()) < 1e-5);
  nn::no_grad_guard guard;
  CHECK(max_abs_diff<double>(ln.forward(x).view(), y.view()) == 0.0);
}

TEST_CASE("LayerNorm gradients match finite differences") {
  Generator g{6, 0};
  for (bool affine : {true, false}) {
    nn::LayerNorm<double> ln(7, 1e-5, affine);
    if (affine) {
      ln.weight().value = randn<double>(Shape{7}, g);
      ln.bias().value = randn<double>(Shape{7}, g);
    }
    auto r = testing::gradcheck(ln, randn<double>(Shape{3, 2, 7}, g));
    INFO("affine " << affine << "\n" << r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("LayerNorm names, frozen parameters and shape errors") {
  nn::LayerNorm<float> ln(4);
  std::vector<std::string> names;
  ln.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "norm1");
  CHECK(names == std::vector<std::string>{"norm1.weight", "norm1.bias"});
  CHECK(ln.weight().value[0] == 1.0f);
  nn::LayerNorm<float> plain(4, 1e-5, false);
  CHECK(nn::parameter_count(plain) == 0);
  CHECK_THROWS_WITH_AS(ln.forward(Tensor<float>(Shape{2, 5})), doctest::Contains("[2, 5]"), spo::error);
  Generator g{1, 0};
  ln.forward(randn<float>(Shape{2, 4}, g));
  CHECK_THROWS_WITH_AS(ln.backward(Tensor<float>(Shape{3, 4})), doctest::Contains("[3, 4] does not match [2, 4]"),
                       spo::error);
  nn::set_trainable(ln, false);
  ln.forward(randn<float>(Shape{2, 4}, g));
  CHECK(ln.backward(randn<float>(Shape{2, 4}, g)).shape() == Shape{2, 4});
  CHECK(ln.weight().grad.empty());
}
