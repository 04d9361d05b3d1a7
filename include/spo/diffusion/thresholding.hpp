// SPDX-License-Identifier: MIT
/// @brief Dynamic thresholding of a predicted x0 (Imagen, Saharia et al. 2022), as diffusers' samplers apply it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::diffusion {

/// Dynamic thresholding settings (diffusers `thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`).
struct DynamicThresholding {
  double ratio = 0.995;           ///< quantile of |x0| per sample
  double sample_max_value = 1.0;  ///< upper bound of the threshold s
};

/// Per batch row: s = clamp(quantile(|x0|, ratio), 1, sample_max_value), x0 <- clamp(x0, -s, s) / s. The quantile
/// interpolates linearly between order statistics as torch.quantile does (lerp at rank ratio * (n - 1)).
/// Ref: diffusers DDPMScheduler._threshold_sample.
template <Scalar T>
void dynamic_threshold_inplace(Tensor<T, cpu>& x0, const DynamicThresholding& th) {
  SPO_CHECK(x0.rank() >= 2, "dynamic thresholding expects a batched [B, C, ...] tensor, got " << x0.shape());
  const std::int64_t batch = x0.size(0), per = x0.numel() / std::max<std::int64_t>(batch, 1);
  if (per == 0) return;
  std::vector<double> a(static_cast<std::size_t>(per));
  for (std::int64_t b = 0; b < batch; ++b) {
    T* p = x0.data() + b * per;
    for (std::int64_t i = 0; i < per; ++i) a[static_cast<std::size_t>(i)] = std::abs(static_cast<double>(p[i]));
    std::sort(a.begin(), a.end());
    const double rank = th.ratio * static_cast<double>(per - 1);
    const auto below = static_cast<std::size_t>(std::floor(rank));
    const auto above = static_cast<std::size_t>(std::ceil(rank));
    const double w = rank - static_cast<double>(below), lo = a[below], hi = a[above];
    const double q = w < 0.5 ? lo + w * (hi - lo) : hi - (hi - lo) * (1.0 - w);
    const double s = std::min(std::max(q, 1.0), th.sample_max_value);  // torch.clamp(min=1, max=...)
    for (std::int64_t i = 0; i < per; ++i) p[i] = static_cast<T>(std::clamp(static_cast<double>(p[i]), -s, s) / s);
  }
}

}  // namespace spo::diffusion
