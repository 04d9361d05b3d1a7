// SPDX-License-Identifier: MIT
/// @brief Euler ancestral sampler (k-diffusion's sample_euler_ancestral, eta = 1), diffusers'
/// EulerAncestralDiscreteScheduler.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "spo/diffusion/euler_discrete.hpp"
#include "spo/diffusion/host_step.hpp"

namespace spo::diffusion {

/*!
  WHAT THIS REPRESENTS
    diffusers' EulerAncestralDiscreteScheduler (0.26.1): with sigma_up = sqrt(s_to^2 (s_from^2 - s_to^2) / s_from^2)
    and sigma_down = sqrt(s_to^2 - sigma_up^2),
      x_{i+1} = x_i + (x_i - x0_hat) / sigma_i * (sigma_down - sigma_i) + sigma_up z,   z ~ N(0, I)
    on the linearly interpolated sigma schedule (no Karras sigmas), model input x / sqrt(sigma^2 + 1). Every step
    draws z (also the last, where sigma_up = 0), as the reference does. Predictions: epsilon and v_prediction.
    Defined on CPU tensors; other devices step through the host.
!*/
class EulerAncestral : public HostStepsOnDevices<EulerAncestral> {
 public:
  using HostStepsOnDevices<EulerAncestral>::scale_model_input;  // on other devices: through the host
  using HostStepsOnDevices<EulerAncestral>::step;

  static constexpr std::string_view class_name = "EulerAncestralDiscreteScheduler";

  EulerAncestral() = default;
  EulerAncestral(const std::vector<float>& betas, const EulerConfig& config) : sigmas_(betas, config) {
    SPO_CHECK(config.prediction_type != PredictionKind::sample,
              class_name << ": prediction_type \"sample\" is not supported (as in diffusers)");
    SPO_CHECK(!config.use_karras_sigmas && !config.sigma_min && !config.sigma_max,
              class_name << " has no Karras sigmas");
  }

  void set_timesteps(int n) { sigmas_.set_timesteps(n); }
  const std::vector<double>& timesteps() const { return sigmas_.timesteps(); }
  const std::vector<float>& sigmas() const { return sigmas_.sigmas(); }
  double init_noise_sigma() const { return sigmas_.init_noise_sigma(); }
  const EulerConfig& config() const { return sigmas_.config(); }

  template <Scalar T>
  Tensor<T, cpu> scale_model_input(const Tensor<T, cpu>& x, double t) const {
    return sigmas_.scale_model_input(x, t, class_name);
  }

  template <Scalar T>
  Tensor<T, cpu> step(const Tensor<T, cpu>& model_output, double t, const Tensor<T, cpu>& x,
                      const StepNoise<T, cpu>& noise) {
    check_same_shape(model_output.shape(), x.shape(), "EulerAncestral::step (model_output vs sample)");
    const double sigma = sigmas_.current_sigma(t, class_name);
    const double from = sigma, to = sigmas_.sigmas()[static_cast<std::size_t>(sigmas_.step_index() + 1)];
    const double up = std::sqrt(to * to * (from * from - to * to) / (from * from));
    const double down = std::sqrt(to * to - up * up);
    const double dt = down - sigma;
    const auto z = noise.draw(x.shape(), class_name);  // x.shape
    const PredictionKind k = sigmas_.config().prediction_type;
    auto out = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const double xi = x[i];
      const double x0 = detail::EulerSigmas::predict_x0(k, model_output[i], xi, sigma);
      const double mean = xi + (xi - x0) / sigma * dt;
      out[i] = static_cast<T>(mean + static_cast<double>(z[i]) * up);
    }
    sigmas_.advance();
    return out;
  }

 private:
  detail::EulerSigmas sigmas_;
};

}  // namespace spo::diffusion
