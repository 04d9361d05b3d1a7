// SPDX-License-Identifier: MIT
// GroupNorm<T, cuda> and LayerNorm<T, cuda> against the CPU layers (nn/group_norm.hpp, nn/layer_norm.hpp), float and
// double: forward y, backward dx, and dgamma / dbeta accumulated onto non-zero gradients (frozen parameters keep no
// gradient), on odd shapes, inputs of mean 3 and deviation 2 (a one-pass variance would lose digits), including
// one-element rows (variance 0, so xhat = x rstd - mean rstd cancels terms of size |x| / sqrt(eps)).
// Bounds, per element, |gpu - cpu| <= K u S_i with u = 2^-24 (float) or 2^-53 (double), K = 64, and S_i the size of
// the terms that the element sums (from naive double statistics m, r of its group or row):
//   y:  S = (|x| + |m|) r (1 + |gamma|) + |beta|;
//   dx: S = r (|gamma dy| + A + B (|xhat| + (|x| + |m|) r)), A = mean |gamma dy|, B = mean |gamma dy xhat|;
//   dgamma, dbeta (sums of n = B x spatial or rows terms): |gpu - cpu| <= (n + K) u sum |dy| (1 + |xhat| + (|x| + |m|)
//   r) (the worst case of the CPU's float sums, with the terms' own rounding).
// Both sides keep the statistics in double (the CPU GroupNorm sums float blocks of 256 first), so K = 64 covers the
// remaining differences (summation order, fused multiply-adds, the float block sums) with room; an indexing or
// formula error is off by O(S).
// Shape errors on the cuda path name the layer and the offending shape.
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/nn/cuda/group_norm.hpp"
#include "spo/nn/cuda/layer_norm.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/layer_norm.hpp"
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

/// Largest |got - ref| / (abs_factor mass_i + rel |ref_i|) (mass_i >= 0 scales the absolute tolerance).
template <class T>
double worst_scaled(const Tensor<T, cpu>& got, const Tensor<T, cpu>& ref, const std::vector<double>& mass,
                    double abs_factor, double rel) {
  double worst = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
    const double r =
        d / (abs_factor * mass[static_cast<std::size_t>(i)] + rel * std::abs(static_cast<double>(ref[i])) + 1e-300);
    if (!(r == r)) return INFINITY;
    worst = std::max(worst, r);
  }
  return worst;
}

/// Random affine parameters on the CPU layer, the trainable flags, random gradients to accumulate onto; the device
/// layer gets the same values and gradients.
template <class CpuLayer, class CudaLayer, class T>
void prepare_affine(CpuLayer& host, CudaLayer& dev, bool weight_trainable, bool bias_trainable, Generator& gen) {
  fill_normal(host.weight().value.view(), gen, T(1), T(0.5));
  fill_normal(host.bias().value.view(), gen, T(0), T(0.5));
  host.weight().set_trainable(weight_trainable);
  host.bias().set_trainable(bias_trainable);
  nn::copy_parameters(host, dev);
  if (weight_trainable) {
    fill_normal(host.weight().grad.view(), gen, T(0), T(1));
    copy_to_device<T>(host.weight().grad.view(), dev.weight().grad.view());
  }
  if (bias_trainable) {
    fill_normal(host.bias().grad.view(), gen, T(0), T(1));
    copy_to_device<T>(host.bias().grad.view(), dev.bias().grad.view());
  }
}

/// Per-element term sizes of y and dx and per-channel masses of the affine gradients (see the bounds above), for
/// `segments` contiguous segments of `length` elements each normalised together; channel(i) is element i's channel.
struct TermScales {
  std::vector<double> y, dx, mass;
};

template <class T, class Channel>
TermScales term_scales(const Tensor<T, cpu>& x, const Tensor<T, cpu>& dy, const Tensor<T, cpu>* gamma,
                       const Tensor<T, cpu>* beta, std::int64_t segments, std::int64_t length, std::int64_t channels,
                       double eps, Channel&& channel) {
  TermScales s{std::vector<double>(static_cast<std::size_t>(x.numel())),
               std::vector<double>(static_cast<std::size_t>(x.numel())),
               std::vector<double>(static_cast<std::size_t>(channels), 0.0)};
  for (std::int64_t g = 0; g < segments; ++g) {
    const std::int64_t first = g * length;
    double m = 0, v = 0, a = 0, b = 0;
    for (std::int64_t i = first; i < first + length; ++i) m += x[i];
    m /= static_cast<double>(length);
    for (std::int64_t i = first; i < first + length; ++i) v += (x[i] - m) * (x[i] - m);
    const double r = 1.0 / std::sqrt(v / static_cast<double>(length) + eps);
    for (std::int64_t i = first; i < first + length; ++i) {
      const double gm = gamma ? static_cast<double>((*gamma)[channel(i)]) : 1.0;
      a += std::abs(gm * dy[i]);
      b += std::abs(gm * dy[i] * (x[i] - m) * r);
    }
    a /= static_cast<double>(length);
    b /= static_cast<double>(length);
    for (std::int64_t i = first; i < first + length; ++i) {
      const std::int64_t c = channel(i);
      const double gm = gamma ? std::abs(static_cast<double>((*gamma)[c])) : 1.0;
      const double bt = beta ? std::abs(static_cast<double>((*beta)[c])) : 0.0;
      const double spread = (std::abs(static_cast<double>(x[i])) + std::abs(m)) * r, xhat = std::abs((x[i] - m) * r);
      const auto k = static_cast<std::size_t>(i);
      s.y[k] = spread * (1 + gm) + bt;
      s.dx[k] = r * (gm * std::abs(static_cast<double>(dy[i])) + a + b * (xhat + spread));
      s.mass[static_cast<std::size_t>(c)] += std::abs(static_cast<double>(dy[i])) * (1 + xhat + spread);
    }
  }
  return s;
}

constexpr double k_factor = 64;

template <class T>
constexpr double unit_roundoff() {
  return std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
}

struct GroupCase {
  std::int64_t groups, channels;
  Shape input;
  double eps;
  bool affine, weight_trainable, bias_trainable;
};

}  // namespace

TEST_CASE_TEMPLATE("GroupNorm<T, cuda> == GroupNorm<T, cpu>: forward, dx, dgamma, dbeta", T, float, double) {
  worst_seen = 0;
  const std::vector<GroupCase> cases{
      {1, 6, Shape{2, 6, 1, 1}, 1e-5, true, true, true},        {4, 8, Shape{3, 8, 5, 3}, 1e-6, true, true, true},
      {32, 64, Shape{2, 64, 17, 13}, 1e-5, true, false, true},  {4, 12, Shape{2, 12, 7}, 1e-3, false, false, false},
      {32, 320, Shape{1, 320, 64, 64}, 1e-6, true, true, true},  // SD-sized groups of 10 x 64 x 64 = 40960
      {2, 6, Shape{1, 6, 9, 11}, 1e-5, true, false, false},      // frozen affine
      {1, 1, Shape{5, 1, 1, 1}, 1e-5, true, true, true},         // one element per group: var 0
  };
  Generator gen{201, 0};
  INFO("seed 201");
  for (const auto& c : cases) {
    INFO("GroupNorm(" << c.groups << ", " << c.channels << ", eps " << c.eps << ", affine " << c.affine << ") on "
                      << c.input << ", trainable " << c.weight_trainable << c.bias_trainable);
    nn::GroupNorm<T, cpu> host(c.groups, c.channels, c.eps, c.affine);
    nn::GroupNorm<T, cuda> dev(c.groups, c.channels, c.eps, c.affine);
    if (c.affine)
      prepare_affine<nn::GroupNorm<T, cpu>, nn::GroupNorm<T, cuda>, T>(host, dev, c.weight_trainable, c.bias_trainable,
                                                                       gen);
    const auto x = random_host<T>(c.input, gen, T(3), T(2));
    const auto dy = random_host<T>(c.input, gen);
    const std::int64_t batch = c.input[0], spatial = c.input.numel_from(2), cg = c.channels / c.groups;
    const auto scales = term_scales(x, dy, c.affine ? &host.weight().value : nullptr,
                                    c.affine ? &host.bias().value : nullptr, batch * c.groups, cg * spatial, c.channels,
                                    c.eps, [&](std::int64_t i) { return (i / spatial) % c.channels; });
    const double ku = k_factor * unit_roundoff<T>();
    const auto y_ref = host.forward(x);
    const auto y = to_host(dev.forward(to_device(x)));
    CHECK_RATIO(worst_scaled(y, y_ref, scales.y, ku, 0.0));
    const auto dx_ref = host.backward(dy);
    const auto dx = to_host(dev.backward(to_device(dy)));
    CHECK_RATIO(worst_scaled(dx, dx_ref, scales.dx, ku, 0.0));
    if (!c.affine) continue;
    const auto& mass = scales.mass;
    const double g_abs = (static_cast<double>(batch * spatial) + k_factor) * unit_roundoff<T>();
    if (c.weight_trainable)
      CHECK_RATIO(worst_scaled(to_host(dev.weight().grad), host.weight().grad, mass, g_abs, 0.0));
    else
      CHECK(dev.weight().grad.numel() == 0);
    if (c.bias_trainable)
      CHECK_RATIO(worst_scaled(to_host(dev.bias().grad), host.bias().grad, mass, g_abs, 0.0));
    else
      CHECK(dev.bias().grad.numel() == 0);
    const auto weight = to_host(dev.weight().value);  // the values themselves are never written
    for (std::int64_t i = 0; i < weight.numel(); ++i) REQUIRE(weight[i] == host.weight().value[i]);
  }
  MESSAGE("largest error / bound ratio in this test case: " << worst_seen);
}

TEST_CASE_TEMPLATE("GroupNorm<T, cuda>: defaults, no-grad forward and shape errors", T, float, double) {
  nn::GroupNorm<T, cuda> dev(4, 8);
  const auto w = to_host(dev.weight().value), b = to_host(dev.bias().value);
  for (std::int64_t i = 0; i < 8; ++i) {
    CHECK(w[i] == T(1));
    CHECK(b[i] == T(0));
  }
  std::vector<std::string> names;
  dev.visit_parameters([&](std::string_view n, nn::Parameter<T, cuda>&) { names.emplace_back(n); }, "norm1");
  CHECK(names == std::vector<std::string>{"norm1.weight", "norm1.bias"});
  CHECK_THROWS_WITH_AS(dev.forward(Tensor<T, cuda>(Shape{2, 5, 3, 3})),
                       doctest::Contains("GroupNorm(4, 8): input shape [2, 5, 3, 3] is not [B, 8, ...]"), spo::error);
  CHECK_THROWS_WITH_AS((nn::GroupNorm<T, cuda>(3, 8)), doctest::Contains("not divisible by num_groups 3"), spo::error);
  {
    nn::no_grad_guard guard;
    (void)dev.forward(Tensor<T, cuda>(Shape{2, 8, 3, 3}));
  }
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{2, 8, 3, 3})), doctest::Contains("without a forward"),
                       spo::error);
  (void)dev.forward(Tensor<T, cuda>(Shape{2, 8, 3, 3}));
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{2, 8, 3, 4})),
                       doctest::Contains("shape [2, 8, 3, 4] does not match [2, 8, 3, 3]"), spo::error);
}

TEST_CASE_TEMPLATE("LayerNorm<T, cuda> == LayerNorm<T, cpu>: forward, dx, dgamma, dbeta", T, float, double) {
  worst_seen = 0;
  struct Case {
    Shape input;
    double eps;
    bool affine, weight_trainable, bias_trainable;
  };
  const std::vector<Case> cases{
      {Shape{37, 1}, 1e-5, true, true, true},      {Shape{5, 7}, 1e-5, true, true, true},
      {Shape{3, 77, 320}, 1e-5, true, true, true}, {Shape{2, 33, 1280}, 1e-6, true, false, true},
      {Shape{4, 9, 7}, 1e-5, false, false, false}, {Shape{1, 320}, 1e-5, true, false, false},
      {Shape{700, 320}, 1e-5, true, true, true},
  };
  Generator gen{202, 0};
  INFO("seed 202");
  for (const auto& c : cases) {
    const std::int64_t dim = c.input[-1], rows = c.input.numel() / dim;
    INFO("LayerNorm(" << dim << ", eps " << c.eps << ", affine " << c.affine << ") on " << c.input);
    nn::LayerNorm<T, cpu> host(dim, c.eps, c.affine);
    nn::LayerNorm<T, cuda> dev(dim, c.eps, c.affine);
    if (c.affine)
      prepare_affine<nn::LayerNorm<T, cpu>, nn::LayerNorm<T, cuda>, T>(host, dev, c.weight_trainable, c.bias_trainable,
                                                                       gen);
    const auto x = random_host<T>(c.input, gen, T(3), T(2));
    const auto dy = random_host<T>(c.input, gen);
    const auto scales =
        term_scales(x, dy, c.affine ? &host.weight().value : nullptr, c.affine ? &host.bias().value : nullptr, rows,
                    dim, dim, c.eps, [&](std::int64_t i) { return i % dim; });
    const double ku = k_factor * unit_roundoff<T>();
    const auto y_ref = host.forward(x);
    const auto y = to_host(dev.forward(to_device(x)));
    CHECK_RATIO(worst_scaled(y, y_ref, scales.y, ku, 0.0));
    const auto dx_ref = host.backward(dy);
    const auto dx = to_host(dev.backward(to_device(dy)));
    CHECK_RATIO(worst_scaled(dx, dx_ref, scales.dx, ku, 0.0));
    if (!c.affine) continue;
    const auto& mass = scales.mass;
    const double g_abs = (static_cast<double>(rows) + k_factor) * unit_roundoff<T>();
    if (c.weight_trainable)
      CHECK_RATIO(worst_scaled(to_host(dev.weight().grad), host.weight().grad, mass, g_abs, 0.0));
    else
      CHECK(dev.weight().grad.numel() == 0);
    if (c.bias_trainable)
      CHECK_RATIO(worst_scaled(to_host(dev.bias().grad), host.bias().grad, mass, g_abs, 0.0));
    else
      CHECK(dev.bias().grad.numel() == 0);
  }
  MESSAGE("largest error / bound ratio in this test case: " << worst_seen);
}

TEST_CASE_TEMPLATE("LayerNorm<T, cuda>: shape errors", T, float, double) {
  nn::LayerNorm<T, cuda> dev(320);
  CHECK_THROWS_WITH_AS(dev.forward(Tensor<T, cuda>(Shape{2, 77, 321})),
                       doctest::Contains("LayerNorm(320): input shape [2, 77, 321] does not end in 320"), spo::error);
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{2, 320})), doctest::Contains("without a forward"),
                       spo::error);
  (void)dev.forward(Tensor<T, cuda>(Shape{2, 320}));
  CHECK_THROWS_WITH_AS(dev.backward(Tensor<T, cuda>(Shape{1, 640})),
                       doctest::Contains("shape [1, 640] does not match [2, 320]"), spo::error);
}
