// SPDX-License-Identifier: MIT
// The GroupNorm and LayerNorm kernels of spo::cuda in half and bfloat16 (cuda_kernels::*_norm_*, tensor/cuda/norm.hpp)
// against the CPU float kernels run on the same 16-bit inputs widened to float.
// The device reads every 16-bit element into float, keeps the statistics in double and rstd in float, and rounds each
// output once. So, per element, with u16 the unit roundoff of the format (2^-11 half, 2^-8 bfloat16), u = 2^-24,
// K = 64 and S the size of the terms the element sums (as in nn_norm.cpp):
//   y, dx:          |gpu - cpu| <= u16 |cpu| + K u S          (the rounding of the output, then float arithmetic)
//   rstd:           |gpu - cpu| <= K u |cpu|                  (float on both sides)
//   dgamma, dbeta:  |gpu - cpu| <= u16 |cpu| + (n + K) u sum |terms|   (one rounding of the accumulated sum)
// The backward is checked on the device's own xhat and rstd (its inputs), so each bound is that of one op.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/norm.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/ops.hpp"

#include "half_values.hpp"

using namespace spo;

namespace {

constexpr double u = 0x1p-24;
constexpr double K = 64;

using cuda_test::unit_roundoff;

/// A float tensor of random values that are exactly representable in H (drawn, then rounded through H).
template <class H>
Tensor<float, cpu> representable(const Shape& s, Generator& gen, float mean, float stddev) {
  return cuda_test::representable<H, float>(s, gen, stddev, mean);
}

/// The device result of H widened to float on the host.
template <class H>
Tensor<float, cpu> widened(const Tensor<H, cuda>& t) {
  return cast<float>(to_host(t));
}

/// Largest |got - ref| / (rel |ref| + abs_i) over the elements (<= 1 passes).
double worst_ratio(const Tensor<float, cpu>& got, const Tensor<float, cpu>& ref, double rel,
                   const std::vector<double>& abs) {
  double worst = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
    const double r = d / (rel * std::abs(static_cast<double>(ref[i])) + abs[static_cast<std::size_t>(i)] + 1e-300);
    if (!(r == r)) return INFINITY;
    worst = std::max(worst, r);
  }
  return worst;
}

}  // namespace

TEST_CASE_TEMPLATE("GroupNorm kernels in 16 bits: forward and backward within one rounding of the float kernels", H,
                   spo::half, bfloat16) {
  const double u16 = unit_roundoff<H>();
  const std::int64_t batch = 2, channels = 12, spatial = 5 * 7, groups = 3, cg = channels / groups;
  const double eps = 1e-6;
  Generator gen{41, 0};
  const auto x = representable<H>(Shape{batch, channels, spatial}, gen, 3.f, 2.f);  // [B, C, S]
  const auto gamma = representable<H>(Shape{channels}, gen, 1.f, 0.5f);
  const auto beta = representable<H>(Shape{channels}, gen, 0.f, 0.5f);
  const auto dy = representable<H>(Shape{batch, channels, spatial}, gen, 0.f, 1.f);

  const auto xd = to_device(cast<H>(x)), gd = to_device(cast<H>(gamma)), bd = to_device(cast<H>(beta));
  auto yd = Tensor<H, cuda>::uninitialized(x.shape()), xhatd = Tensor<H, cuda>::uninitialized(x.shape());
  auto rstdd = Tensor<float, cuda>::uninitialized(Shape{batch * groups});
  cuda_kernels::group_norm_forward<H>(xd.data(), gd.data(), bd.data(), yd.data(), xhatd.data(), rstdd.data(), batch,
                                      channels, spatial, groups, eps);

  auto y = Tensor<float, cpu>::uninitialized(x.shape()), xhat = Tensor<float, cpu>::uninitialized(x.shape());
  auto rstd = Tensor<float, cpu>::uninitialized(Shape{batch * groups});
  cpu_kernels::group_norm_forward<float>(x.data(), gamma.data(), beta.data(), y.data(), xhat.data(), rstd.data(), batch,
                                         channels, spatial, groups, eps);
  // S = (|x| + |m|) r (1 + |gamma|) + |beta| with the group's mean m and rstd r
  std::vector<double> mass(static_cast<std::size_t>(x.numel()));
  for (std::int64_t bg = 0; bg < batch * groups; ++bg) {
    double m = 0;
    for (std::int64_t i = 0; i < cg * spatial; ++i) m += x[bg * cg * spatial + i];
    m /= static_cast<double>(cg * spatial);
    for (std::int64_t i = 0; i < cg * spatial; ++i) {
      const std::int64_t e = bg * cg * spatial + i, c = e / spatial % channels;
      mass[static_cast<std::size_t>(e)] =
          K * u * ((std::abs(x[e]) + std::abs(m)) * rstd[bg] * (1 + std::abs(gamma[c])) + std::abs(beta[c]));
    }
  }
  CHECK(worst_ratio(widened(yd), y, u16, mass) <= 1.0);
  CHECK(worst_ratio(to_host(rstdd), rstd, K * u, std::vector<double>(static_cast<std::size_t>(rstd.numel()), 0.0)) <=
        1.0);

  // Backward on the device's xhat and rstd.
  const auto xhat_dev = widened(xhatd), rstd_dev = to_host(rstdd);
  const auto dyd = to_device(cast<H>(dy));
  auto dxd = Tensor<H, cuda>::uninitialized(x.shape());
  Tensor<H, cuda> dgd = to_device(cast<H>(Tensor<float, cpu>(Shape{channels})));
  Tensor<H, cuda> dbd = to_device(cast<H>(Tensor<float, cpu>(Shape{channels})));
  cuda_kernels::group_norm_backward<H>(dyd.data(), xhatd.data(), rstdd.data(), gd.data(), dxd.data(), dgd.data(),
                                       dbd.data(), batch, channels, spatial, groups);
  auto dx = Tensor<float, cpu>::uninitialized(x.shape());
  std::vector<double> sum_dy(static_cast<std::size_t>(batch * channels)), sum_dy_xhat(sum_dy.size());
  cpu_kernels::group_norm_backward<float>(dy.data(), xhat_dev.data(), rstd_dev.data(), gamma.data(), dx.data(),
                                          sum_dy.data(), sum_dy_xhat.data(), batch, channels, spatial, groups);
  // S = r (|gamma dy| + A + B |xhat|), A = mean |gamma dy|, B = mean |gamma dy xhat| over the group
  std::vector<double> dx_mass(mass.size());
  for (std::int64_t bg = 0; bg < batch * groups; ++bg) {
    double a = 0, b = 0;
    for (std::int64_t i = 0; i < cg * spatial; ++i) {
      const std::int64_t e = bg * cg * spatial + i, c = e / spatial % channels;
      a += std::abs(gamma[c] * dy[e]);
      b += std::abs(gamma[c] * dy[e] * xhat_dev[e]);
    }
    a /= static_cast<double>(cg * spatial);
    b /= static_cast<double>(cg * spatial);
    for (std::int64_t i = 0; i < cg * spatial; ++i) {
      const std::int64_t e = bg * cg * spatial + i, c = e / spatial % channels;
      dx_mass[static_cast<std::size_t>(e)] =
          K * u * rstd_dev[bg] * (std::abs(gamma[c] * dy[e]) + a + b * (1 + std::abs(xhat_dev[e])));
    }
  }
  CHECK(worst_ratio(widened(dxd), dx, u16, dx_mass) <= 1.0);
  auto dgamma = Tensor<float, cpu>::uninitialized(Shape{channels}), dbeta = dgamma;
  std::vector<double> g_mass(static_cast<std::size_t>(channels)), b_mass(g_mass.size());
  for (std::int64_t c = 0; c < channels; ++c) {
    double gw = 0, gb = 0, tw = 0, tb = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      gw += sum_dy_xhat[static_cast<std::size_t>(b * channels + c)];
      gb += sum_dy[static_cast<std::size_t>(b * channels + c)];
      for (std::int64_t s = 0; s < spatial; ++s) {
        const std::int64_t e = (b * channels + c) * spatial + s;
        tw += std::abs(dy[e] * xhat_dev[e]);
        tb += std::abs(dy[e]);
      }
    }
    dgamma[c] = static_cast<float>(gw);
    dbeta[c] = static_cast<float>(gb);
    g_mass[static_cast<std::size_t>(c)] = (static_cast<double>(batch * spatial) + K) * u * tw;
    b_mass[static_cast<std::size_t>(c)] = (static_cast<double>(batch * spatial) + K) * u * tb;
  }
  CHECK(worst_ratio(widened(dgd), dgamma, u16, g_mass) <= 1.0);
  CHECK(worst_ratio(widened(dbd), dbeta, u16, b_mass) <= 1.0);
}

TEST_CASE_TEMPLATE("LayerNorm kernels in 16 bits: forward and backward within one rounding of the float kernels", H,
                   spo::half, bfloat16) {
  const double u16 = unit_roundoff<H>();
  const std::int64_t rows = 37, dim = 77;
  const double eps = 1e-5;
  Generator gen{43, 0};
  const auto x = representable<H>(Shape{rows, dim}, gen, 3.f, 2.f);  // [R, D]
  const auto gamma = representable<H>(Shape{dim}, gen, 1.f, 0.5f);
  const auto beta = representable<H>(Shape{dim}, gen, 0.f, 0.5f);
  const auto dy = representable<H>(Shape{rows, dim}, gen, 0.f, 1.f);

  const auto xd = to_device(cast<H>(x)), gd = to_device(cast<H>(gamma)), bd = to_device(cast<H>(beta));
  auto yd = Tensor<H, cuda>::uninitialized(x.shape()), xhatd = Tensor<H, cuda>::uninitialized(x.shape());
  auto rstdd = Tensor<float, cuda>::uninitialized(Shape{rows});
  cuda_kernels::layer_norm_forward<H>(xd.data(), gd.data(), bd.data(), yd.data(), xhatd.data(), rstdd.data(), rows, dim,
                                      eps);
  auto y = Tensor<float, cpu>::uninitialized(x.shape()), xhat = Tensor<float, cpu>::uninitialized(x.shape());
  auto rstd = Tensor<float, cpu>::uninitialized(Shape{rows});
  cpu_kernels::layer_norm_forward<float>(x.data(), gamma.data(), beta.data(), y.data(), xhat.data(), rstd.data(), rows,
                                         dim, eps);
  std::vector<double> mass(static_cast<std::size_t>(x.numel()));
  for (std::int64_t r = 0; r < rows; ++r) {
    double m = 0;
    for (std::int64_t j = 0; j < dim; ++j) m += x[r * dim + j];
    m /= static_cast<double>(dim);
    for (std::int64_t j = 0; j < dim; ++j)
      mass[static_cast<std::size_t>(r * dim + j)] =
          K * u * ((std::abs(x[r * dim + j]) + std::abs(m)) * rstd[r] * (1 + std::abs(gamma[j])) + std::abs(beta[j]));
  }
  CHECK(worst_ratio(widened(yd), y, u16, mass) <= 1.0);
  CHECK(worst_ratio(to_host(rstdd), rstd, K * u, std::vector<double>(static_cast<std::size_t>(rows), 0.0)) <= 1.0);

  const auto xhat_dev = widened(xhatd), rstd_dev = to_host(rstdd);
  const auto dyd = to_device(cast<H>(dy));
  auto dxd = Tensor<H, cuda>::uninitialized(x.shape());
  cuda_kernels::layer_norm_backward<H>(dyd.data(), xhatd.data(), rstdd.data(), gd.data(), dxd.data(), nullptr, nullptr,
                                       rows, dim);
  auto dx = Tensor<float, cpu>::uninitialized(x.shape());
  cpu_kernels::layer_norm_backward<float>(dy.data(), xhat_dev.data(), rstd_dev.data(), gamma.data(), dx.data(), rows,
                                          dim);
  std::vector<double> dx_mass(mass.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    double a = 0, b = 0;
    for (std::int64_t j = 0; j < dim; ++j) {
      a += std::abs(gamma[j] * dy[r * dim + j]);
      b += std::abs(gamma[j] * dy[r * dim + j] * xhat_dev[r * dim + j]);
    }
    a /= static_cast<double>(dim);
    b /= static_cast<double>(dim);
    for (std::int64_t j = 0; j < dim; ++j)
      dx_mass[static_cast<std::size_t>(r * dim + j)] =
          K * u * rstd_dev[r] * (std::abs(gamma[j] * dy[r * dim + j]) + a + b * (1 + std::abs(xhat_dev[r * dim + j])));
  }
  CHECK(worst_ratio(widened(dxd), dx, u16, dx_mass) <= 1.0);
}
