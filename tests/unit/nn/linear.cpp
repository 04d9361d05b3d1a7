// SPDX-License-Identifier: MIT
#include "spo/nn/linear.hpp"

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::Linear<double>>);
static_assert(nn::Layer<nn::Linear<float>>);
// The CPU headers declare the CPU kernels only: the spo::cuda overloads come with spo/cuda.hpp.
static_assert(kernels_declared<cpu> && !kernels_declared<cuda>);

TEST_CASE("Linear forward matches x W^T + b") {
  nn::Linear<double> lin(3, 2);
  lin.weight().value = Tensor<double>(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  lin.bias().value = Tensor<double>(Shape{2}, {0.5, -1});
  Tensor<double> x(Shape{1, 3}, {1, 0, -1});
  auto y = lin.forward(x);
  CHECK(y.shape() == Shape{1, 2});
  CHECK(y[0] == doctest::Approx(-1.5));
  CHECK(y[1] == doctest::Approx(-3.0));
  CHECK_THROWS_WITH_AS(lin.forward(Tensor<double>(Shape{1, 4})), doctest::Contains("[1, 4]"), spo::error);
}

TEST_CASE("Linear gradients match finite differences") {
  Generator g{5, 0};
  for (bool bias : {true, false}) {
    nn::Linear<double> lin(7, 5, bias);
    lin.reset_parameters(g);
    auto r = testing::gradcheck(lin, randn<double>(Shape{2, 3, 7}, g));
    INFO(r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("Linear parameter names follow torch keys and frozen parameters get no gradient") {
  nn::Linear<float> lin(4, 3);
  std::vector<std::string> names;
  lin.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "to_q");
  CHECK(names == std::vector<std::string>{"to_q.weight", "to_q.bias"});
  nn::set_trainable(lin, false);
  CHECK(nn::parameter_count(lin, true) == 0);
  CHECK(nn::parameter_count(lin) == 15);
  Generator g{1, 0};
  auto x = randn<float>(Shape{2, 4}, g);
  lin.forward(x);
  auto dx = lin.backward(randn<float>(Shape{2, 3}, g));
  CHECK(dx.shape() == Shape{2, 4});
  CHECK(lin.weight().grad.empty());
}
