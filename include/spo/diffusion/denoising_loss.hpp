// SPDX-License-Identifier: MIT
/// @brief The denoising training loss: MSE between a model output and its parameterization's target.
#pragma once

#include <cstdint>
#include <span>

#include "spo/diffusion/noise_schedule.hpp"
#include "spo/diffusion/prediction.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::diffusion {

template <Scalar T>
struct LossAndGrad {
  double loss = 0.0;
  Tensor<T, cpu> grad;  // d loss / d model_output, model_output.shape
};

/// Regression target of parameterization P for x_t = add_noise(x0, noise, t): eps (epsilon), v (v_prediction),
/// x0 (sample).                                                                   Ref: diffusers train_text_to_image.py
template <Parameterization P, Scalar T>
Tensor<T, cpu> training_target(const NoiseSchedule& schedule, const Tensor<T, cpu>& x0, const Tensor<T, cpu>& noise,
                               std::span<const std::int64_t> t) {
  check_same_shape(x0.shape(), noise.shape(), "training_target");
  const std::int64_t batch = x0.size(0), per = x0.numel() / std::max<std::int64_t>(batch, 1);
  SPO_CHECK(static_cast<std::int64_t>(t.size()) == batch, t.size() << " timesteps for batch shape " << x0.shape());
  auto target = Tensor<T, cpu>::uninitialized(x0.shape());  // x0.shape
  for (std::int64_t b = 0; b < batch; ++b) {
    const double a = schedule.alpha_cumprod(t[static_cast<std::size_t>(b)]);
    for (std::int64_t i = b * per; i < (b + 1) * per; ++i) target[i] = static_cast<T>(P::target(x0[i], noise[i], a));
  }
  return target;
}

/// loss = mean((model_output - target)^2) over all elements (F.mse_loss, reduction "mean").
template <Scalar T>
LossAndGrad<T> mse_loss(const Tensor<T, cpu>& model_output, const Tensor<T, cpu>& target) {
  check_same_shape(model_output.shape(), target.shape(), "mse_loss");
  LossAndGrad<T> r{0.0, Tensor<T, cpu>::uninitialized(target.shape())};
  const double n = static_cast<double>(target.numel());
  auto d = as_array(model_output.view()) - as_array(target.view());
  r.loss = d.template cast<double>().square().sum() / n;
  as_array(r.grad.view()) = d * static_cast<T>(2.0 / n);
  return r;
}

}  // namespace spo::diffusion
