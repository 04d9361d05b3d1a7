// SPDX-License-Identifier: MIT
#include "spo/nn/group_norm.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::GroupNorm<double>>);
static_assert(nn::Layer<nn::GroupNorm<float>>);

namespace {

/// Naive two-pass reference over [B, C, S] with double accumulation.
std::vector<double> naive_group_norm(const std::vector<double>& x, const std::vector<double>& gamma,
                                     const std::vector<double>& beta, int b, int c, int s, int groups, double eps) {
  std::vector<double> y(x.size());
  const int cg = c / groups;
  for (int bi = 0; bi < b; ++bi) {
    for (int g = 0; g < groups; ++g) {
      double mean = 0;
      for (int ci = g * cg; ci < (g + 1) * cg; ++ci)
        for (int si = 0; si < s; ++si) mean += x[(bi * c + ci) * s + si];
      mean /= cg * s;
      double var = 0;
      for (int ci = g * cg; ci < (g + 1) * cg; ++ci)
        for (int si = 0; si < s; ++si) var += (x[(bi * c + ci) * s + si] - mean) * (x[(bi * c + ci) * s + si] - mean);
      var /= cg * s;
      for (int ci = g * cg; ci < (g + 1) * cg; ++ci)
        for (int si = 0; si < s; ++si) {
          const int i = (bi * c + ci) * s + si;
          y[i] = (x[i] - mean) / std::sqrt(var + eps) * gamma[ci] + beta[ci];
        }
    }
  }
  return y;
}

std::vector<double> to_vector(const Tensor<double>& t) { return std::vector<double>(t.data(), t.data() + t.numel()); }

}  // namespace

TEST_CASE("GroupNorm forward on a hand-computed group") {
  nn::GroupNorm<double> gn(1, 2, 0.0);
  // one group over 2 channels x 2 positions: mean 2.5, biased var 1.25
  Tensor<double> x(Shape{1, 2, 2}, {1, 2, 3, 4});
  auto y = gn.forward(x);
  const double r = 1.0 / std::sqrt(1.25);
  CHECK(y[0] == doctest::Approx(-1.5 * r));
  CHECK(y[1] == doctest::Approx(-0.5 * r));
  CHECK(y[2] == doctest::Approx(0.5 * r));
  CHECK(y[3] == doctest::Approx(1.5 * r));
}

TEST_CASE("GroupNorm forward matches a naive two-pass loop") {
  const std::uint64_t seed = 21;
  INFO("seed " << seed);
  Generator g{seed, 0};
  const int B = 3, C = 6, H = 4, W = 5, G = 3;
  for (double eps : {1e-5, 1e-6}) {
    nn::GroupNorm<double> gn(G, C, eps);
    gn.weight().value = randn<double>(Shape{C}, g);
    gn.bias().value = randn<double>(Shape{C}, g);
    auto x = randn<double>(Shape{B, C, H, W}, g);
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = 3.0 + 2.0 * x[i];  // offset mean, non-unit variance
    auto y = gn.forward(x);
    CHECK(y.shape() == x.shape());
    auto ref =
        naive_group_norm(to_vector(x), to_vector(gn.weight().value), to_vector(gn.bias().value), B, C, H * W, G, eps);
    double err = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) err = std::max(err, std::abs(y[i] - ref[static_cast<std::size_t>(i)]));
    CHECK(err < 1e-12);

    // float agrees with the double reference to float rounding
    nn::GroupNorm<float> gnf(G, C, eps);
    gnf.weight().value = cast<float>(gn.weight().value);
    gnf.bias().value = cast<float>(gn.bias().value);
    auto yf = gnf.forward(cast<float>(x));
    CHECK(max_abs_diff<double>(cast<double>(yf).view(), y.view()) < 1e-5);
  }
}

TEST_CASE("GroupNorm accepts [B, C] and [B, C, L] inputs") {
  Generator g{3, 0};
  nn::GroupNorm<double> gn(2, 4, 1e-5, false);
  auto x2 = randn<double>(Shape{5, 4}, g);
  auto y2 = gn.forward(x2);
  std::vector<double> ones(4, 1.0), zeros(4, 0.0);
  auto ref2 = naive_group_norm(to_vector(x2), ones, zeros, 5, 4, 1, 2, 1e-5);
  for (std::int64_t i = 0; i < y2.numel(); ++i) CHECK(y2[i] == doctest::Approx(ref2[static_cast<std::size_t>(i)]));
  auto x3 = randn<double>(Shape{2, 4, 7}, g);
  auto y3 = gn.forward(x3);
  auto ref3 = naive_group_norm(to_vector(x3), ones, zeros, 2, 4, 7, 2, 1e-5);
  for (std::int64_t i = 0; i < y3.numel(); ++i) CHECK(y3[i] == doctest::Approx(ref3[static_cast<std::size_t>(i)]));
}

TEST_CASE("GroupNorm gradients match finite differences") {
  const std::uint64_t seed = 8;
  INFO("seed " << seed);
  Generator g{seed, 0};
  for (bool affine : {true, false}) {
    for (int groups : {1, 2, 4}) {
      nn::GroupNorm<double> gn(groups, 4, 1e-6, affine);
      if (affine) {
        gn.weight().value = randn<double>(Shape{4}, g);
        gn.bias().value = randn<double>(Shape{4}, g);
      }
      auto r = testing::gradcheck(gn, randn<double>(Shape{2, 4, 3, 3}, g));
      INFO("affine " << affine << " groups " << groups << "\n" << r.report << r.worst);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("GroupNorm parameter names, init, frozen parameters and shape errors") {
  nn::GroupNorm<float> gn(2, 4);
  std::vector<std::string> names;
  gn.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "norm1");
  CHECK(names == std::vector<std::string>{"norm1.weight", "norm1.bias"});
  CHECK(gn.weight().value[3] == 1.0f);
  CHECK(gn.bias().value[3] == 0.0f);
  nn::GroupNorm<float> plain(2, 4, 1e-5, false);
  CHECK(nn::parameter_count(plain) == 0);

  CHECK_THROWS_WITH_AS(nn::GroupNorm<float>(3, 4), doctest::Contains("not divisible"), spo::error);
  CHECK_THROWS_WITH_AS(gn.forward(Tensor<float>(Shape{2, 5, 3})), doctest::Contains("[2, 5, 3]"), spo::error);

  Generator g{2, 0};
  gn.forward(randn<float>(Shape{2, 4, 3}, g));
  CHECK_THROWS_WITH_AS(gn.backward(Tensor<float>(Shape{2, 4, 2})),
                       doctest::Contains("[2, 4, 2] does not match [2, 4, 3]"), spo::error);

  nn::set_trainable(gn, false);
  gn.forward(randn<float>(Shape{2, 4, 3}, g));
  auto dx = gn.backward(randn<float>(Shape{2, 4, 3}, g));
  CHECK(dx.shape() == Shape{2, 4, 3});
  CHECK(gn.weight().grad.empty());

  {
    nn::no_grad_guard guard;
    gn.forward(randn<float>(Shape{2, 4, 3}, g));
  }
  CHECK_THROWS_WITH_AS(gn.backward(Tensor<float>(Shape{2, 4, 3})), doctest::Contains("without a forward"), spo::error);
}
