// SPDX-License-Identifier: MIT
#include "spo/nn/activation.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::SiLU<double>>);
static_assert(nn::Layer<nn::GELU<float>>);
static_assert(nn::Layer<nn::GELUTanh<float>>);
static_assert(nn::Layer<nn::QuickGELU<float>>);
static_assert(nn::Layer<nn::GEGLU<float>>);

namespace {
const std::vector<double> points{-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0};

// Generated with torch 1.13 in float64: F.silu(x), F.gelu(x), F.gelu(x, approximate="tanh") at `points`.
const std::vector<double> silu_ref{-0.14227761953270035, -0.2689414213699951, -0.1887703343990727, 0.0,
                                   0.3112296656009273,   0.7310585786300049,  1.7615941559557646,  2.8577223804672998};
const std::vector<double> gelu_ref{-0.00404969409489031, -0.15865525393145702, -0.15426876936299344, 0.0,
                                   0.34573123063700656,  0.841344746068543,    1.9544997361036416,   2.99595030590511};
const std::vector<double> gelu_tanh_ref{
    -0.0036373920817729943, -0.1588080093917233, -0.15428599017485606, 0.0,
    0.34571400982514394,    0.8411919906082768,  1.954597694087775,    2.996362607918227};
// transformers 4.47.1 QuickGELUActivation (x * sigmoid(1.702 x)) in float64 at `points`.
const std::vector<double> quick_gelu_ref{
    -0.01807130970778597, -0.1542042340671787, -0.1496115633936199, 0.0,
    0.35038843660638014,  0.8457957659328212,  1.9356586231442083,  2.981928690292214};

template <class Act>
void check_values(const std::vector<double>& ref, double tol) {
  using T = typename Act::scalar_type;
  Act act;
  std::vector<T> xs(points.begin(), points.end());
  auto y = act.forward(Tensor<T>(Shape{static_cast<std::int64_t>(xs.size())}, xs));
  for (std::size_t i = 0; i < ref.size(); ++i) {
    INFO("x = " << points[i]);
    CHECK(static_cast<double>(y[static_cast<std::int64_t>(i)]) == doctest::Approx(ref[i]).epsilon(tol));
  }
}
}  // namespace

TEST_CASE("Activations match torch values") {
  check_values<nn::SiLU<double>>(silu_ref, 1e-14);
  check_values<nn::GELU<double>>(gelu_ref, 1e-14);
  check_values<nn::GELUTanh<double>>(gelu_tanh_ref, 1e-14);
  check_values<nn::SiLU<float>>(silu_ref, 2e-6);
  check_values<nn::GELU<float>>(gelu_ref, 2e-6);
  check_values<nn::GELUTanh<float>>(gelu_tanh_ref, 2e-6);
  check_values<nn::QuickGELU<double>>(quick_gelu_ref, 1e-14);
  check_values<nn::QuickGELU<float>>(quick_gelu_ref, 2e-6);
}

TEST_CASE("float activations stay close to double over a wide range and across block boundaries") {
  const std::int64_t n = 3 * nn::activation_block + 17;
  Tensor<double> x(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) x[i] = -20.0 + 40.0 * static_cast<double>(i) / static_cast<double>(n - 1);
  auto dy = Tensor<double>(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) dy[i] = 1.0;
  auto compare = [&](auto act_d, auto act_f) {
    auto yd = act_d.forward(x);
    auto yf = act_f.forward(cast<float>(x));
    auto gd = act_d.backward(dy);
    auto gf = act_f.backward(cast<float>(dy));
    for (std::int64_t i = 0; i < n; ++i) {
      INFO("x = " << x[i]);
      CHECK(std::abs(yf[i] - yd[i]) <= 1e-6 * std::max(1.0, std::abs(yd[i])));
      // SiLU's 1 - sigmoid(x) loses digits in float for large x (as torch's formula does): 4e-6 at x ~ 16
      CHECK(std::abs(gf[i] - gd[i]) <= 4e-6 * std::max(1.0, std::abs(gd[i])));
    }
  };
  compare(nn::SiLU<double>{}, nn::SiLU<float>{});
  compare(nn::GELU<double>{}, nn::GELU<float>{});
  compare(nn::GELUTanh<double>{}, nn::GELUTanh<float>{});
  compare(nn::QuickGELU<double>{}, nn::QuickGELU<float>{});
}

TEST_CASE("Activation gradients match finite differences") {
  Generator g{11, 0};
  auto x = randn<double>(Shape{3, 5, 4}, g, 2.0);
  nn::SiLU<double> silu;
  nn::GELU<double> gelu;
  nn::GELUTanh<double> gelu_tanh;
  nn::QuickGELU<double> quick_gelu;
  for (auto r : {testing::gradcheck(silu, x), testing::gradcheck(gelu, x), testing::gradcheck(gelu_tanh, x),
                 testing::gradcheck(quick_gelu, x)}) {
    INFO(r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("Activation backward checks shapes and the grad mode") {
  nn::SiLU<float> act;
  act.forward(Tensor<float>(Shape{2, 3}));
  CHECK_THROWS_WITH_AS(act.backward(Tensor<float>(Shape{3, 2})), doctest::Contains("[3, 2] does not match [2, 3]"),
                       spo::error);
  {
    nn::no_grad_guard guard;
    act.forward(Tensor<float>(Shape{2, 3}));
  }
  CHECK_THROWS_WITH_AS(act.backward(Tensor<float>(Shape{2, 3})), doctest::Contains("without a forward"), spo::error);
  CHECK(nn::parameter_count(act) == 0);
}

TEST_CASE("GEGLU forward is hidden * gelu(gate) with hidden first") {
  nn::GEGLU<double> geglu(2, 2);
  // proj: rows 0-1 give the hidden half, rows 2-3 the gate half
  geglu.proj().weight().value = Tensor<double>(Shape{4, 2}, {1, 0, 0, 1, 1, 1, 0, -1});
  geglu.proj().bias().value = Tensor<double>(Shape{4}, {0, 0, 0, 1});
  auto y = geglu.forward(Tensor<double>(Shape{1, 2}, {2, -1}));
  // h = [2, -1, 1, 2]; y = [2 * gelu(1), -1 * gelu(2)]
  CHECK(y.shape() == Shape{1, 2});
  CHECK(y[0] == doctest::Approx(2 * gelu_ref[5]));
  CHECK(y[1] == doctest::Approx(-1 * gelu_ref[6]));
  std::vector<std::string> names;
  geglu.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "ff.net.0");
  CHECK(names == std::vector<std::string>{"ff.net.0.proj.weight", "ff.net.0.proj.bias"});
  CHECK_THROWS_WITH_AS(geglu.forward(Tensor<double>(Shape{1, 3})), doctest::Contains("[1, 3]"), spo::error);
}

TEST_CASE("GEGLU gradients match finite differences") {
  Generator g{12, 0};
  nn::GEGLU<double> geglu(5, 3);
  geglu.reset_parameters(g);
  auto r = testing::gradcheck(geglu, randn<double>(Shape{2, 4, 5}, g));
  INFO(r.report << r.worst);
  CHECK(r.ok);
  // a row wider than one activation block
  nn::GEGLU<double> wide(3, nn::activation_block + 5);
  wide.reset_parameters(g);
  testing::GradcheckOptions opt;
  opt.max_coords = 24;
  auto rw = testing::gradcheck(wide, randn<double>(Shape{2, 3}, g), opt);
  INFO(rw.report << rw.worst);
  CHECK(rw.ok);
}
