// SPDX-License-Identifier: MIT
/// @brief Per-sample weights of batched affine combinations (out_b = a_w a_b + b_w b_b), the building block of the
/// DDIM arithmetic on devices whose kernels take one weight pair per batch element, and the per-sample squared error
/// and scaled difference of two batches (the denoising error of Diffusion-DPO and its gradient). The host forms are
/// here; a device's forms (e.g. spo::cuda in diffusion/cuda/ddim_kernels.hpp) overload them on the tensor type.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// The weights of out_b = a * in_a_b + b * in_b_b for one batch element.
struct SampleWeights {
  double a = 0, b = 0;
};

/*!
  REQUIRES
    - x, y: [B, ...] of the same shape, B >= 0
  ENSURES
    - returns B doubles: mean over the non-batch axes of (x - y)^2 for each batch element, the squares summed in
      double in element order and divided by the per-sample count once (NaN for empty samples)
!*/
template <Scalar T>
std::vector<double> per_sample_mean_squared_error(const Tensor<T, cpu>& x, const Tensor<T, cpu>& y) {
  check_same_shape(x.shape(), y.shape(), "per_sample_mean_squared_error (x vs y)");
  SPO_CHECK(x.rank() >= 1, "per_sample_mean_squared_error: expected a batched tensor, got shape " << x.shape());
  const std::int64_t batch = x.size(0), per = batch == 0 ? 0 : x.numel() / batch;
  std::vector<double> out(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    double acc = 0;
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
      const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
      acc += d * d;
    }
    out[static_cast<std::size_t>(b)] = acc / static_cast<double>(per);
  }
  return out;
}

/*!
  REQUIRES
    - x, y: [B, ...] of the same shape; g: B weights
  ENSURES
    - returns out [B, ...] with out[b, i] = g_b (x[b, i] - y[b, i]), in double, rounded to T once
!*/
template <Scalar T>
Tensor<T, cpu> per_sample_scaled_difference(const Tensor<T, cpu>& x, const Tensor<T, cpu>& y,
                                            std::span<const double> g) {
  check_same_shape(x.shape(), y.shape(), "per_sample_scaled_difference (x vs y)");
  SPO_CHECK(x.rank() >= 1, "per_sample_scaled_difference: expected a batched tensor, got shape " << x.shape());
  const std::int64_t batch = x.size(0), per = batch == 0 ? 0 : x.numel() / batch;
  SPO_CHECK(static_cast<std::int64_t>(g.size()) == batch,
            "per_sample_scaled_difference: " << g.size() << " weights for batch " << batch);
  auto out = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
  for (std::int64_t b = 0; b < batch; ++b) {
    const double w = g[static_cast<std::size_t>(b)];
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i)
      out[i] = static_cast<T>(w * (static_cast<double>(x[i]) - static_cast<double>(y[i])));
  }
  return out;
}

}  // namespace spo
