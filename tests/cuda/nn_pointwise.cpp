// SPDX-License-Identifier: MIT
// The pointwise layers on spo::cuda against their CPU twins, float and double: SiLU / GELU / GELUTanh / QuickGELU
// (nn/activation.hpp), GEGLU, Upsample2x, GlobalAvgPool, Timesteps and TimestepEmbedding.
// Bounds, per element, |gpu - cpu| <= abs + rel |cpu|:
//   activations: the CPU float kernels use Eigen's approximations of logistic / erf / tanh / exp (a few ulp), the
//     device expf / erff / tanhf (<= 2 ulp); near the zeros of f and f' terms of size ~|x| cancel (QuickGELU is
//     SiLU's sigmoid at u = 1.702 x, u rounded alike on both sides, so it shares SiLU's error terms):
//     float forward abs 2e-6 rel 4e-6, backward abs 4e-6 (1 + |dy|) rel 4e-6; double abs 1e-14 (1 + |dy|) rel 1e-13.
//   GEGLU, TimestepEmbedding: Linear is a GEMM on both sides (oneDNN/Eigen vs cuBLAS, no TF32) with reductions of
//     k <= 106 terms of size ~1: float abs 1e-4 rel 1e-4, double abs 1e-12 rel 1e-12.
//   Upsample2x forward and backward (copies, and the same additions in the same order), GlobalAvgPool backward
//     (one product): exact.
//   GlobalAvgPool forward: a double sum (in another order) rounded to T, times 1/S: float rel 2^-22, double rel
//     1e-14 and abs 1e-15.
//   Timesteps: frequencies, arguments and sin/cos in double on both sides (device exp/log/sin/cos <= 2 ulp), rounded
//     once to T: forward float abs 1.5e-7, double abs 1e-11 (arguments up to 2500); backward (a sum of 160 terms
//     of size <= 2.5 |demb|) float abs 1e-5 rel 1e-6, double abs 1e-9.
// Shape errors on the cuda path name the layer and the offending shapes.
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/cuda/activation.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/cuda/pooling.hpp"
#include "spo/nn/cuda/timestep_embedding.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/cuda/upsample.hpp"
#include "spo/nn/pooling.hpp"
#include "spo/nn/timestep_embedding.hpp"
#include "spo/nn/upsample.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"

using namespace spo;

namespace {
/// The largest error / bound ratio checked in the current test case (reported, so the bounds' margins are visible).
double worst_seen = 0;
}  // namespace

#define CHECK_RATIO(...)                       \
  do {                                         \
    const double ratio_ = (__VA_ARGS__);       \
    worst_seen = std::max(worst_seen, ratio_); \
    CHECK(ratio_ <= 1.0);                      \
  } while (0)

namespace {

template <class T>
Tensor<T, cpu> random_host(const Shape& s, Generator& gen, T mean = T(0), T stddev = T(1)) {
  auto t = Tensor<T, cpu>::uninitialized(s);
  fill_normal(t.view(), gen, mean, stddev);
  return t;
}

template <class T>
bool exactly_equal(const Tensor<T, cpu>& a, const Tensor<T, cpu>& b) {
  if (!(a.shape() == b.shape())) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}

/// Largest |got - ref| / (abs (1 + |w_i|) + rel |ref_i|).
template <class T>
double worst_weighted(const Tensor<T, cpu>& got, const Tensor<T, cpu>& ref, const Tensor<T, cpu>& w, double abs,
                      double rel) {
  double worst = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
    const double r =
        d / (abs * (1 + std::abs(static_cast<double>(w[i]))) + rel * std::abs(static_cast<double>(ref[i])));
    if (!(r == r)) return INFINITY;
    worst = std::max(worst, r);
  }
  return worst;
}

/// Every parameter gradient of the device model against the CPU model's, by name.
template <class HostModel, class DevModel>
double worst_gradient(HostModel& host, DevModel& dev, double abs, double rel) {
  HostModel twin = host;
  nn::copy_gradients(dev, twin);
  double worst = 0;
  std::vector<std::pair<std::string, const void*>> ref;
  host.visit_parameters([&](std::string_view n, auto& p) { ref.emplace_back(std::string(n), &p); }, {});
  std::size_t k = 0;
  twin.visit_parameters(
      [&](std::string_view n, auto& p) {
        using P = std::remove_reference_t<decltype(p)>;
        REQUIRE(ref[k].first == n);
        const auto& r = *static_cast<const P*>(ref[k].second);
        ++k;
        if (!p.trainable) return;
        worst = std::max(worst, cuda_test::worst_ratio(p.grad, r.grad, abs, rel));
      },
      {});
  return worst;
}

template <class F, class T>
void check_activation(std::uint64_t seed) {
  constexpr bool is_float = std::is_same_v<T, float>;
  Generator gen{seed, 0};
  INFO(F::name << ", seed " << seed);
  const std::int64_t n = 100003;
  auto x = random_host<T>(Shape{n}, gen, T(0), T(3));
  const auto dy = random_host<T>(Shape{n}, gen);
  const std::vector<T> special{T(0),   T(-0.0), T(1),   T(-1), T(-0.75), T(-5), T(5),
                               T(-10), T(10),   T(-30), T(30), T(-80),   T(80)};
  for (std::size_t i = 0; i < special.size(); ++i) x[static_cast<std::int64_t>(i)] = special[i];
  nn::Activation<F, T, cpu> host;
  nn::Activation<F, T, cuda> dev;
  const auto y_ref = host.forward(x);
  const auto y = to_host(dev.forward(to_device(x)));
  CHECK_RATIO(cuda_test::worst_ratio(y, y_ref, is_float ? 2e-6 : 1e-14, is_float ? 4e-6 : 1e-13));
  const auto dx_ref = host.backward(dy);
  const auto dx = to_host(dev.backward(to_device(dy)));
  CHECK_RATIO(worst_weighted(dx, dx_ref, dy, is_float ? 4e-6 : 1e-14, is_float ? 4e-6 : 1e-13));
  {
    nn::no_grad_guard guard;  // no input kept
    CHECK_RATIO(cuda_test::worst_ratio(to_host(dev.forward(to_device(x))), y_ref, is_float ? 2e-6 : 1e-14,
                                       is_float ? 4e-6 : 1e-13));
  }
  CHECK_THROWS_WITH_AS(dev.backward(to_device(dy)), doctest::Contains("::backward without a forward in grad mode"),
                       spo::error);
  (void)dev.forward(Tensor<T, cuda>(Shape{3, 4}));
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{4, 3})),
                       doctest::Contains("shape [4, 3] does not match [3, 4]"), spo::error);
}

}  // namespace

TEST_CASE_TEMPLATE("SiLU / GELU / GELUTanh / QuickGELU on cuda == the CPU activations", T, float, double) {
  worst_seen = 0;
  check_activation<nn::SiLUFunction, T>(301);
  check_activation<nn::GELUFunction, T>(302);
  check_activation<nn::GELUTanhFunction, T>(303);
  check_activation<nn::QuickGELUFunction, T>(304);
  MESSAGE("largest error / bound ratio in this test case: " << worst_seen);
}

template <class F, class T>
void check_geglu(std::uint64_t seed) {
  constexpr bool is_float = std::is_same_v<T, float>;
  const double tol = is_float ? 1e-4 : 1e-12;
  Generator gen{seed, 0};
  INFO(F::name << ", seed " << seed);
  nn::GEGLU<T, cpu, F> host(37, 53);
  nn::GEGLU<T, cuda, F> dev(37, 53);
  host.reset_parameters(gen);
  nn::copy_parameters(host, dev);
  const auto x = random_host<T>(Shape{3, 5, 37}, gen);
  const auto dy = random_host<T>(Shape{3, 5, 53}, gen);
  const auto y_ref = host.forward(x);
  const auto y = to_host(dev.forward(to_device(x)));
  CHECK_RATIO(cuda_test::worst_ratio(y, y_ref, tol, tol));
  const auto dx_ref = host.backward(dy);
  const auto dx = to_host(dev.backward(to_device(dy)));
  CHECK_RATIO(cuda_test::worst_ratio(dx, dx_ref, tol, tol));
  CHECK_RATIO(worst_gradient(host, dev, tol, tol));
  CHECK_THROWS_WITH_AS(dev.backward(to_device(dy)), doctest::Contains("GEGLU::backward without a forward"), spo::error);
  (void)dev.forward(to_device(x));
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{3, 5, 54})),
                       doctest::Contains("shape [3, 5, 54] does not match [3, 5, 53]"), spo::error);
}

TEST_CASE_TEMPLATE("GEGLU<T, cuda> == GEGLU<T, cpu> (hidden first, then gate)", T, float, double) {
  worst_seen = 0;
  check_geglu<nn::GELUFunction, T>(311);
  check_geglu<nn::GELUTanhFunction, T>(312);
  nn::GEGLU<T, cuda> dev(4, 3);
  std::vector<std::string> names;
  dev.visit_parameters([&](std::string_view n, nn::Parameter<T, cuda>&) { names.emplace_back(n); }, "ff.net.0");
  CHECK(names == std::vector<std::string>{"ff.net.0.proj.weight", "ff.net.0.proj.bias"});
  MESSAGE("largest error / bound ratio in this test case: " << worst_seen);
}

TEST_CASE_TEMPLATE("Upsample2x<T, cuda> == Upsample2x<T, cpu>, exactly", T, float, double) {
  Generator gen{321, 0};
  INFO("seed 321");
  for (const Shape& s : {Shape{2, 3, 5, 7}, Shape{1, 1, 1, 1}, Shape{2, 64, 32, 32}, Shape{1, 2, 9, 1}}) {
    INFO(s);
    nn::Upsample2x<T, cpu> host;
    nn::Upsample2x<T, cuda> dev;
    const auto x = random_host<T>(s, gen);
    const auto dy = random_host<T>(Shape{s[0], s[1], 2 * s[2], 2 * s[3]}, gen);
    CHECK(exactly_equal(to_host(dev.forward(to_device(x))), host.forward(x)));
    CHECK(exactly_equal(to_host(dev.backward(to_device(dy))), host.backward(dy)));
  }
  nn::Upsample2x<T, cuda> dev;
  CHECK_THROWS_WITH_AS(dev.forward(Tensor<T, cuda>(Shape{2, 3, 4})),
                       doctest::Contains("Upsample2x: input shape [2, 3, 4] is not [B, C, H, W]"), spo::error);
  (void)dev.forward(Tensor<T, cuda>(Shape{1, 2, 3, 4}));
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{1, 2, 6, 9})),
                       doctest::Contains("shape [1, 2, 6, 9] does not match [1, 2, 6, 8]"), spo::error);
}

TEST_CASE_TEMPLATE("GlobalAvgPool<T, cuda> == GlobalAvgPool<T, cpu>", T, float, double) {
  worst_seen = 0;
  constexpr bool is_float = std::is_same_v<T, float>;
  Generator gen{331, 0};
  INFO("seed 331");
  for (const Shape& s :
       {Shape{2, 5, 9, 11}, Shape{3, 4, 1, 1}, Shape{2, 1280, 8, 8}, Shape{1, 3, 64, 64}, Shape{2, 3, 7}}) {
    INFO(s);
    nn::GlobalAvgPool<T, cpu> host;
    nn::GlobalAvgPool<T, cuda> dev;
    const auto x = random_host<T>(s, gen, T(1), T(2));
    const auto dy = random_host<T>(Shape{s[0], s[1]}, gen);
    const auto y = to_host(dev.forward(to_device(x)));
    CHECK_RATIO(cuda_test::worst_ratio(y, host.forward(x), is_float ? 1e-30 : 1e-15, is_float ? 0x1p-22 : 1e-14));
    CHECK(exactly_equal(to_host(dev.backward(to_device(dy))), host.backward(dy)));
  }
  nn::GlobalAvgPool<T, cuda> dev;
  CHECK_THROWS_WITH_AS(dev.forward(Tensor<T, cuda>(Shape{2, 3})),
                       doctest::Contains("GlobalAvgPool expects [B, C, ...], got [2, 3]"), spo::error);
  (void)dev.forward(Tensor<T, cuda>(Shape{2, 3, 4, 4}));
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{3, 2})),
                       doctest::Contains("shape [3, 2] does not match [2, 3]"), spo::error);
  MESSAGE("largest error / bound ratio in this test case: " << worst_seen);
}

TEST_CASE_TEMPLATE("Timesteps<T, cuda> and nn::timestep_embedding on cuda == the CPU", T, float, double) {
  worst_seen = 0;
  constexpr bool is_float = std::is_same_v<T, float>;
  Generator gen{341, 0};
  INFO("seed 341");
  const Tensor<T, cpu> t(Shape{7}, {T(0), T(1), T(17.5), T(999), T(500.25), T(3), T(981)});
  const std::vector<nn::SinusoidalEmbeddingOptions> options{
      nn::SinusoidalEmbeddingOptions::cos_first(320), nn::SinusoidalEmbeddingOptions::sin_first(7),
      nn::SinusoidalEmbeddingOptions{256, true, 0.0, 2.5, 1000.0}, nn::SinusoidalEmbeddingOptions{33, false, 0.0}};
  for (const auto& o : options) {
    INFO("dim " << o.embedding_dim << ", flip " << o.flip_sin_to_cos << ", shift " << o.downscale_freq_shift
                << ", scale " << o.scale << ", max_period " << o.max_period);
    nn::Timesteps<T, cpu> host(o);
    nn::Timesteps<T, cuda> dev(o);
    const auto emb_ref = host.forward(t);
    const auto emb = to_host(dev.forward(to_device(t)));
    CHECK_RATIO(cuda_test::worst_ratio(emb, emb_ref, is_float ? 1.5e-7 : 1e-11, 0.0));
    CHECK_RATIO(cuda_test::worst_ratio(to_host(nn::timestep_embedding(to_device(t), o)), emb_ref,
                                       is_float ? 1.5e-7 : 1e-11, 0.0));
    const auto demb = random_host<T>(emb_ref.shape(), gen);
    const auto dt_ref = host.backward(demb);
    const auto dt = to_host(dev.backward(to_device(demb)));
    CHECK_RATIO(cuda_test::worst_ratio(dt, dt_ref, is_float ? 1e-5 : 1e-9, is_float ? 1e-6 : 0.0));
  }
  nn::Timesteps<T, cuda> dev(nn::SinusoidalEmbeddingOptions::cos_first(8));
  CHECK_THROWS_WITH_AS(dev.forward(Tensor<T, cuda>(Shape{2, 1})),
                       doctest::Contains("timesteps shape [2, 1] is not [N]"), spo::error);
  (void)dev.forward(Tensor<T, cuda>(Shape{2}));
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{2, 9})),
                       doctest::Contains("shape [2, 9] does not match [2, 8]"), spo::error);
  MESSAGE("largest error / bound ratio in this test case: " << worst_seen);
}

TEST_CASE_TEMPLATE("TimestepEmbedding<T, cuda> (Linear, SiLU, Linear by composition) == the CPU", T, float, double) {
  worst_seen = 0;
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-12;
  Generator gen{351, 0};
  INFO("seed 351");
  nn::TimestepEmbedding<T, cpu> host(32, 64, 48);
  nn::TimestepEmbedding<T, cuda> dev(32, 64, 48);
  host.reset_parameters(gen);
  nn::copy_parameters(host, dev);
  const auto x = random_host<T>(Shape{5, 32}, gen);
  const auto dy = random_host<T>(Shape{5, 48}, gen);
  CHECK_RATIO(cuda_test::worst_ratio(to_host(dev.forward(to_device(x))), host.forward(x), tol, tol));
  CHECK_RATIO(cuda_test::worst_ratio(to_host(dev.backward(to_device(dy))), host.backward(dy), tol, tol));
  CHECK_RATIO(worst_gradient(host, dev, tol, tol));
  MESSAGE("largest error / bound ratio in this test case: " << worst_seen);
}
