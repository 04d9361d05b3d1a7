// SPDX-License-Identifier: MIT
#include "spo/nn/timestep_embedding.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::Timesteps<double>>);
static_assert(nn::Layer<nn::TimestepEmbedding<float>>);

namespace {

const std::vector<double> t_values{0, 1, 500, 999};

// Generated from the get_timestep_embedding formula in numpy float64 (t = 0, 1, 500, 999), dim 8, cos first, shift 0.
const std::vector<std::vector<double>> cos_first_8{
    {1, 1, 1, 1, 0, 0, 0, 0},
    {0.54030230586813965, 0.9950041652780256, 0.99995000041666537, 0.99999950000004167, 0.8414709848078965,
     0.099833416646828183, 0.0099998333341666679, 0.0009999998333333419},
    {-0.88384927343147779, 0.96496602849211532, 0.28366218546322802, 0.87758256189037254, -0.46777180532247609,
     -0.26237485370392194, -0.95892427466313812, 0.47942553860420306},
    {0.99964985298082676, 0.80745865769955849, -0.84446969628877044, 0.54114350656157184, -0.026460752737064129,
     -0.58992416131739112, -0.53560333461429432, 0.84093026185662156}};
// Same generator, dim 8, sin first, shift 1 (get_timestep_embedding's defaults).
const std::vector<std::vector<double>> sin_first_8{
    {0, 0, 0, 0, 1, 1, 1, 1},
    {0.8414709848078965, 0.046399223464731278, 0.0021544330233656045, 9.9999999833333425e-05, 0.54030230586813965,
     0.99892297604063052, 0.99999767920648086, 0.99999999500000003},
    {-0.46777180532247609, -0.93799335590891364, 0.88064284978396978, 0.049979169270678372, -0.88384927343147779,
     -0.34665323346354932, 0.47378072050724934, 0.99875026039496628},
    {-0.026460752737064129, 0.68486422935785363, 0.83564850088584475, 0.099733915731299194, 0.99964985298082676,
     -0.72867069883869584, -0.54926458375471499, 0.99501414364465279}};
// Same generator, dim 7 (zero-padded), cos first, shift 0.
const std::vector<std::vector<double>> cos_first_7{
    {1, 1, 1, 0, 0, 0, 0},
    {0.54030230586813965, 0.99892297604063052, 0.99999767920648086, 0.8414709848078965, 0.046399223464731278,
     0.0021544330233656045, 0},
    {-0.88384927343147779, -0.34665323346354932, 0.47378072050724934, -0.46777180532247609, -0.93799335590891364,
     0.88064284978396978, 0},
    {0.99964985298082676, -0.72867069883869584, -0.54926458375471499, -0.026460752737064129, 0.68486422935785363,
     0.83564850088584475, 0}};
// diffusers 0.26.1 get_timestep_embedding(t, 8, flip_sin_to_cos=True, downscale_freq_shift=0) on torch 1.13, which
// computes in float32; rows t = 500, 999 (9 significant digits).
const std::vector<std::vector<double>> diffusers_cos_first_8_f32{
    {-0.883849263, 0.964965045, 0.2836622, 0.87758255, -0.467771798, -0.262378544, -0.958924294, 0.47942552},
    {0.999649823, 0.807455063, -0.844469845, 0.541143537, -0.0264607519, -0.589929104, -0.535603166, 0.840930223}};

template <class T>
void check_table(const nn::SinusoidalEmbeddingOptions& o, const std::vector<std::vector<double>>& ref, double tol) {
  std::vector<T> ts(t_values.begin(), t_values.end());
  auto emb = nn::timestep_embedding(Tensor<T>(Shape{4}, ts), o);
  REQUIRE(emb.shape() == Shape{4, o.embedding_dim});
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < o.embedding_dim; ++k) {
      INFO("t = " << t_values[static_cast<std::size_t>(i)] << ", k = " << k);
      CHECK(std::abs(static_cast<double>(emb[i * o.embedding_dim + k]) -
                     ref[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)]) < tol);
    }
}

}  // namespace

TEST_CASE("sinusoidal embedding matches the formula for t = 0, 1, 500, 999") {
  check_table<double>(nn::SinusoidalEmbeddingOptions::cos_first(8), cos_first_8, 1e-12);
  check_table<double>(nn::SinusoidalEmbeddingOptions::sin_first(8), sin_first_8, 1e-12);
  check_table<double>(nn::SinusoidalEmbeddingOptions::cos_first(7), cos_first_7, 1e-12);
  check_table<float>(nn::SinusoidalEmbeddingOptions::cos_first(8), cos_first_8, 1e-7);
}

TEST_CASE("sinusoidal embedding agrees with diffusers' float32 output to its rounding") {
  auto emb =
      nn::timestep_embedding(Tensor<float>(Shape{2}, {500.0f, 999.0f}), nn::SinusoidalEmbeddingOptions::cos_first(8));
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 8; ++k) CHECK(std::abs(emb[i * 8 + k] - diffusers_cos_first_8_f32[i][k]) < 2e-5);
}

TEST_CASE("SPM embedding: half = 128, f_k = exp(-ln(10000) k / 128), cos first") {
  nn::Timesteps<double> tp(256, true, 0.0);
  auto emb = tp.forward(Tensor<double>(Shape{1}, {37.5}));
  REQUIRE(emb.shape() == Shape{1, 256});
  for (int k : {0, 1, 64, 127}) {
    const double f = std::exp(-std::log(10000.0) * k / 128.0);
    CHECK(emb[k] == doctest::Approx(std::cos(37.5 * f)).epsilon(1e-13));
    CHECK(emb[128 + k] == doctest::Approx(std::sin(37.5 * f)).epsilon(1e-13));
  }
}

TEST_CASE("Timesteps is differentiable in t") {
  Generator g{9, 0};
  for (auto o : {nn::SinusoidalEmbeddingOptions::cos_first(9), nn::SinusoidalEmbeddingOptions::sin_first(8),
                 nn::SinusoidalEmbeddingOptions{6, true, 0.0, 2.5, 100.0}}) {
    nn::Timesteps<double> tp(o);
    auto t = randn<double>(Shape{5}, g, 3.0);
    auto r = testing::gradcheck(tp, t);
    INFO(r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("Timesteps shape errors") {
  nn::Timesteps<double> tp(8, true, 0.0);
  CHECK_THROWS_WITH_AS(tp.forward(Tensor<double>(Shape{2, 1})), doctest::Contains("[2, 1]"), spo::error);
  CHECK_THROWS_AS(nn::timestep_embedding(Tensor<double>(Shape{2}), {2, false, 1.0}), spo::error);
  tp.forward(Tensor<double>(Shape{3}));
  CHECK_THROWS_WITH_AS(tp.backward(Tensor<double>(Shape{3, 4})), doctest::Contains("[3, 4] does not match [3, 8]"),
                       spo::error);
}

TEST_CASE("TimestepEmbedding: linear_2(silu(linear_1(x))), names and gradients") {
  nn::TimestepEmbedding<double> te(3, 4, 2);
  std::vector<std::string> names;
  te.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "time_embedding");
  CHECK(names == std::vector<std::string>{"time_embedding.linear_1.weight", "time_embedding.linear_1.bias",
                                          "time_embedding.linear_2.weight", "time_embedding.linear_2.bias"});
  Generator g{10, 0};
  te.reset_parameters(g);
  auto x = randn<double>(Shape{2, 3}, g);
  auto y = te.forward(x);
  REQUIRE(y.shape() == Shape{2, 2});
  auto& l1 = te.linear_1();
  auto& l2 = te.linear_2();
  for (int b = 0; b < 2; ++b)
    for (int o = 0; o < 2; ++o) {
      double acc = l2.bias().value[o];
      for (int j = 0; j < 4; ++j) {
        double h = l1.bias().value[j];
        for (int i = 0; i < 3; ++i) h += l1.weight().value[j * 3 + i] * x[b * 3 + i];
        acc += l2.weight().value[o * 4 + j] * h / (1 + std::exp(-h));
      }
      CHECK(y[b * 2 + o] == doctest::Approx(acc).epsilon(1e-13));
    }
  auto r = testing::gradcheck(te, x);
  INFO(r.report << r.worst);
  CHECK(r.ok);
}
