// SPDX-License-Identifier: MIT
#include "spo/loss/cross_entropy.hpp"

#include <doctest/doctest.h>

#include "spo/judge/classifier.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;

TEST_CASE("cross-entropy: value by hand, gradient by finite differences") {
  Tensor<double> logits(Shape{2, 3}, {1.0, 2.0, 3.0, 0.5, 0.5, -1.0});
  std::vector<std::int64_t> labels{2, 0};
  auto r = loss::cross_entropy(logits, labels);
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  const double l1 = std::log(2 * std::exp(0.5) + std::exp(-1.0)) - 0.5;
  CHECK(r.loss == doctest::Approx((l0 + l1) / 2).epsilon(1e-14));
  CHECK(r.correct == 2);
  Tensor<double> grad;
  auto res =
      testing::gradcheck_function([&] { return Tensor<double>(Shape{1}, {loss::cross_entropy(logits, labels).loss}); },
                                  [&](const Tensor<double>& dy) {
                                    grad = loss::cross_entropy(logits, labels).grad;
                                    as_array(grad.view()) *= dy[0];
                                  },
                                  {{"logits", &logits, &grad}});
  CHECK(res.ok);
  CHECK_THROWS_AS(loss::cross_entropy(logits, std::vector<std::int64_t>{3, 0}), spo::error);
}

TEST_CASE("GlobalAvgPool and the judge classifier pass the gradient check") {
  Generator g{5, 0};
  nn::GlobalAvgPool<double> pool;
  auto r = testing::gradcheck(pool, randn<double>(Shape{2, 3, 4, 5}, g));
  CHECK(r.ok);
  auto net = judge::make_classifier<double>(4, g);
  auto rc = testing::gradcheck(net, randn<double>(Shape{2, 1, 16, 16}, g), {.max_coords = 8});
  INFO(rc.report << rc.worst);
  CHECK(rc.ok);
  std::vector<std::string> names;
  net.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, {});
  CHECK(names.front() == "features.0.conv.weight");
  CHECK(names.back() == "head.bias");
}
