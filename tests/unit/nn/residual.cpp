// SPDX-License-Identifier: MIT
#include "spo/nn/residual.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/activation.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/sequential.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;

using Block = nn::Sequential<nn::Named<"norm", nn::GroupNorm<double>>, nn::Named<"act", nn::SiLU<double>>>;
static_assert(nn::Layer<nn::Residual<Block>>);
static_assert(nn::Layer<nn::Residual<nn::Linear<float>>>);

TEST_CASE("Residual adds the input to the block output and keeps the block's names") {
  Generator g{2, 0};
  nn::Residual<nn::Linear<double>> res(3, 3);
  res.block().reset_parameters(g);
  auto x = randn<double>(Shape{4, 3}, g);
  auto y = res.forward(x);
  nn::Linear<double> lin = res.block();
  auto ref = lin.forward(x);
  for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(y[i] == doctest::Approx(ref[i] + x[i]).epsilon(1e-15));
  std::vector<std::string> names;
  res.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "proj");
  CHECK(names == std::vector<std::string>{"proj.weight", "proj.bias"});
  auto r = testing::gradcheck(res, x);
  INFO(r.report << r.worst);
  CHECK(r.ok);
}

TEST_CASE("Residual around a Sequential block passes gradcheck") {
  Generator g{3, 0};
  nn::Residual<Block> res(Block(nn::GroupNorm<double>(2, 4), nn::SiLU<double>{}));
  res.block().get<0>().weight().value = randn<double>(Shape{4}, g);
  res.block().get<0>().bias().value = randn<double>(Shape{4}, g);
  auto r = testing::gradcheck(res, randn<double>(Shape{2, 4, 5}, g));
  INFO(r.report << r.worst);
  CHECK(r.ok);
}

TEST_CASE("Residual rejects a block that changes the shape, naming both shapes") {
  nn::Residual<nn::Linear<double>> res(3, 2);
  CHECK_THROWS_WITH_AS(res.forward(Tensor<double>(Shape{4, 3})), doctest::Contains("[4, 2] does not match [4, 3]"),
                       spo::error);
}
