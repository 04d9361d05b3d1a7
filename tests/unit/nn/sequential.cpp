// SPDX-License-Identifier: MIT
#include "spo/nn/sequential.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/activation.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;

namespace {
template <class L>
std::vector<std::string> names_of(L& layer, std::string_view prefix = {}) {
  std::vector<std::string> names;
  layer.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, prefix);
  return names;
}

struct NotALayer {
  using scalar_type = double;
  using device_type = cpu;
};
}  // namespace

using NormAct = nn::Sequential<nn::Named<"norm", nn::GroupNorm<double>>, nn::Named<"act", nn::SiLU<double>>>;
using Mlp = nn::Sequential<nn::Linear<double>, nn::SiLU<double>, nn::Linear<double>>;

static_assert(nn::Layer<NormAct>);
static_assert(nn::Layer<Mlp>);
static_assert(nn::Layer<nn::Repeat<3, nn::Linear<float>>>);
static_assert(nn::Layer<nn::Named<"proj", nn::Linear<float>>>);
static_assert(!nn::Layer<NotALayer>);
static_assert(std::same_as<NormAct::scalar_type, double>);
// Sequential<nn::Linear<double>, NotALayer> fails with
//   "spo::nn::Sequential: every child must satisfy the concept spo::nn::Layer";
// Sequential<nn::Linear<double>, nn::Linear<float>> fails with "... must have the same scalar_type ...".

TEST_CASE("Sequential names children by index like torch.nn.Sequential, or by Named key") {
  Mlp mlp(nn::Linear<double>(3, 4), nn::SiLU<double>{}, nn::Linear<double>(4, 2));
  CHECK(names_of(mlp) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(names_of(mlp, "time_mlp") ==
        std::vector<std::string>{"time_mlp.0.weight", "time_mlp.0.bias", "time_mlp.2.weight", "time_mlp.2.bias"});
  NormAct na(nn::GroupNorm<double>(2, 4), nn::SiLU<double>{});
  CHECK(names_of(na) == std::vector<std::string>{"norm.weight", "norm.bias"});
  CHECK(names_of(na, "block") == std::vector<std::string>{"block.norm.weight", "block.norm.bias"});
  CHECK(na.get<0>().num_groups() == 2);
  CHECK(mlp.get<2>().out_features() == 2);

  nn::Named<"proj", nn::Linear<double>> proj(5, 6);
  CHECK(names_of(proj, "ff") == std::vector<std::string>{"ff.proj.weight", "ff.proj.bias"});

  nn::Sequential<nn::Linear<double>, nn::GroupNorm<double>> piecewise(std::piecewise_construct, std::tuple{3, 4},
                                                                      std::tuple{2, 4, 1e-6});
  CHECK(piecewise.get<1>().eps() == 1e-6);
  CHECK(piecewise.get<0>().in_features() == 3);
}

TEST_CASE("Sequential forward chains the children and backward runs them in reverse") {
  Generator g{2, 0};
  Mlp mlp(nn::Linear<double>(3, 4), nn::SiLU<double>{}, nn::Linear<double>(4, 2));
  mlp.get<0>().reset_parameters(g);
  mlp.get<2>().reset_parameters(g);
  auto x = randn<double>(Shape{5, 3}, g);
  auto y = mlp.forward(x);
  nn::Linear<double> a = mlp.get<0>(), b = mlp.get<2>();
  nn::SiLU<double> act;
  auto ref = b.forward(act.forward(a.forward(x)));
  CHECK(max_abs_diff<double>(y.view(), ref.view()) == 0.0);
  auto r = testing::gradcheck(mlp, x);
  INFO(r.report << r.worst);
  CHECK(r.ok);

  NormAct na(nn::GroupNorm<double>(2, 4), nn::SiLU<double>{});
  na.get<0>().weight().value = randn<double>(Shape{4}, g);
  auto rn = testing::gradcheck(na, randn<double>(Shape{2, 4, 3}, g));
  INFO(rn.report << rn.worst);
  CHECK(rn.ok);
  CHECK_THROWS_WITH_AS(mlp.forward(Tensor<double>(Shape{5, 4})), doctest::Contains("[5, 4]"), spo::error);
}

TEST_CASE("Repeat names blocks 0., 1., ... and chains them") {
  Generator g{3, 0};
  nn::Repeat<3, nn::Linear<double>> rep(4, 4);
  for (std::size_t i = 0; i < 3; ++i) rep[i].reset_parameters(g);
  CHECK(names_of(rep, "layers") == std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                                            "layers.1.bias", "layers.2.weight", "layers.2.bias"});
  auto x = randn<double>(Shape{2, 4}, g);
  auto y = rep.forward(x);
  nn::Linear<double> l0 = rep[0], l1 = rep[1], l2 = rep.get<2>();
  auto ref = l2.forward(l1.forward(l0.forward(x)));
  CHECK(max_abs_diff<double>(y.view(), ref.view()) == 0.0);
  auto r = testing::gradcheck(rep, x);
  INFO(r.report << r.worst);
  CHECK(r.ok);

  nn::Repeat<2, NormAct> blocks(NormAct(nn::GroupNorm<double>(2, 4), nn::SiLU<double>{}));
  CHECK(names_of(blocks) == std::vector<std::string>{"0.norm.weight", "0.norm.bias", "1.norm.weight", "1.norm.bias"});
}
