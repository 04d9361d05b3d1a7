// SPDX-License-Identifier: MIT
/// @brief The sampling loop of a text-to-image pipeline over any SamplingScheduler (diffusers' denoising loop).
#pragma once

#include <concepts>
#include <functional>

#include "spo/diffusion/concepts.hpp"

namespace spo::diffusion {

/*!
  Runs `steps` steps of `s` from `x` [B, C, h, w] (already scaled by init_noise_sigma): for each timestep t,
  x = s.step(model(s.scale_model_input(x, t), t), t, x, noise), and calls progress(i, n) after step i of n.
  REQUIRES model(x_in, t) returns the (guided) model output shaped like x
!*/
template <Scalar T, Device D, SamplingScheduler<T, D> S, class Model>
requires std::invocable < Model&, const Tensor<T, D>
&, double > Tensor<T, D> sample(S& s, int steps, Tensor<T, D> x, Model&& model, const StepNoise<T, D>& noise,
                                const std::function<void(int, int)>& progress = {}) {
  s.set_timesteps(steps);
  const auto ts = s.timesteps();
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const double t = ts[i];
    const Tensor<T, D> u = model(s.scale_model_input(x, t), t);  // [B, C, h, w]
    x = s.step(u, t, x, noise);
    if (progress) progress(static_cast<int>(i) + 1, static_cast<int>(ts.size()));
  }
  return x;
}

}  // namespace spo::diffusion
