// SPDX-License-Identifier: MIT
#include "spo/nn/upsample.hpp"

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::Upsample2x<double>>);
static_assert(nn::Layer<nn::Upsample2x<float>>);

TEST_CASE("Upsample2x repeats every pixel into a 2x2 block") {
  nn::Upsample2x<float> up;
  auto y = up.forward(Tensor<float>(Shape{1, 1, 2, 3}, {1, 2, 3, 4, 5, 6}));
  CHECK(y.shape() == Shape{1, 1, 4, 6});
  const std::vector<float> expected{1, 1, 2, 2, 3, 3,  //
                                    1, 1, 2, 2, 3, 3,  //
                                    4, 4, 5, 5, 6, 6,  //
                                    4, 4, 5, 5, 6, 6};
  for (std::size_t i = 0; i < expected.size(); ++i) CHECK(y[static_cast<std::int64_t>(i)] == expected[i]);
}

TEST_CASE("Upsample2x backward sums 2x2 blocks") {
  nn::Upsample2x<double> up;
  up.forward(Tensor<double>(Shape{1, 2, 1, 1}));
  auto dx = up.backward(Tensor<double>(Shape{1, 2, 2, 2}, {1, 2, 3, 4, 10, 20, 30, 40}));
  CHECK(dx.shape() == Shape{1, 2, 1, 1});
  CHECK(dx[0] == 10.0);
  CHECK(dx[1] == 100.0);
}

TEST_CASE("Upsample2x gradients and shape errors") {
  Generator g{7, 0};
  nn::Upsample2x<double> up;
  auto r = testing::gradcheck(up, randn<double>(Shape{2, 3, 3, 5}, g));
  INFO(r.report << r.worst);
  CHECK(r.ok);
  CHECK_THROWS_WITH_AS(up.forward(Tensor<double>(Shape{2, 3, 4})), doctest::Contains("[2, 3, 4]"), spo::error);
  up.forward(Tensor<double>(Shape{1, 1, 2, 2}));
  CHECK_THROWS_WITH_AS(up.backward(Tensor<double>(Shape{1, 1, 2, 2})),
                       doctest::Contains("[1, 1, 2, 2] does not match [1, 1, 4, 4]"), spo::error);
  CHECK(nn::parameter_count(up) == 0);
}
