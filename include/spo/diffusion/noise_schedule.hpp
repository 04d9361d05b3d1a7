// SPDX-License-Identifier: MIT
/// @brief The alphas_cumprod table of a beta schedule, forward noising (add_noise) and velocity targets.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "spo/core/parallel.hpp"
#include "spo/diffusion/beta_schedule.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::diffusion {

/*!
  WHAT THIS REPRESENTS
    abar_t = prod_{i <= t} (1 - beta_i) for t in [0, T), in float32 as torch computes it: alphas = 1 - betas in
    float32, cumprod accumulated in double with each output cast to float32. final_alpha_cumprod is 1 when
    set_alpha_to_one, else abar_0 (Ref: diffusers DDIMScheduler.__init__).
!*/
class NoiseSchedule {
 public:
  NoiseSchedule() = default;
  template <BetaSchedule S>
  NoiseSchedule(const S& schedule, int num_train_timesteps, bool set_alpha_to_one)
      : betas_(schedule.betas(num_train_timesteps)) {
    SPO_CHECK(num_train_timesteps >= 1, "num_train_timesteps must be positive, got " << num_train_timesteps);
    alphas_cumprod_.resize(betas_.size());
    double cum = 1.0;
    for (std::size_t i = 0; i < betas_.size(); ++i) {
      cum *= static_cast<double>(1.0f - betas_[i]);
      alphas_cumprod_[i] = static_cast<float>(cum);
    }
    final_alpha_cumprod_ = set_alpha_to_one ? 1.0f : alphas_cumprod_[0];
  }

  int num_train_timesteps() const { return static_cast<int>(betas_.size()); }
  const std::vector<float>& betas() const { return betas_; }
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }
  float final_alpha_cumprod() const { return final_alpha_cumprod_; }
  double alpha_cumprod(std::int64_t t) const {
    SPO_CHECK(t >= 0 && t < num_train_timesteps(), "timestep " << t << " outside [0, " << num_train_timesteps() << ")");
    return alphas_cumprod_[static_cast<std::size_t>(t)];
  }

  /// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t per batch element.       Ref: DDPMScheduler.add_noise
  template <Scalar T>
  Tensor<T, cpu> add_noise(const Tensor<T, cpu>& x0, const Tensor<T, cpu>& noise,
                           std::span<const std::int64_t> t) const {
    check_same_shape(x0.shape(), noise.shape(), "add_noise");
    return combine(
        x0, noise, t, [](double a) { return std::sqrt(a); }, [](double a) { return std::sqrt(1.0 - a); });
  }

  /// v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0.                               Ref: DDPMScheduler.get_velocity
  template <Scalar T>
  Tensor<T, cpu> velocity(const Tensor<T, cpu>& x0, const Tensor<T, cpu>& noise,
                          std::span<const std::int64_t> t) const {
    check_same_shape(x0.shape(), noise.shape(), "velocity");
    return combine(
        x0, noise, t, [](double a) { return -std::sqrt(1.0 - a); }, [](double a) { return std::sqrt(a); });
  }

 private:
  template <Scalar T, class Cx, class Cn>
  Tensor<T, cpu> combine(const Tensor<T, cpu>& x0, const Tensor<T, cpu>& noise, std::span<const std::int64_t> t, Cx cx,
                         Cn cn) const {
    const std::int64_t batch = x0.rank() == 0 ? 1 : x0.size(0);
    SPO_CHECK(static_cast<std::int64_t>(t.size()) == batch,
              t.size() << " timesteps for a batch of " << batch << " (shape " << x0.shape() << ")");
    const std::int64_t per = batch == 0 ? 0 : x0.numel() / batch;
    auto out = Tensor<T, cpu>::uninitialized(x0.shape());  // x0.shape
    for (std::int64_t b = 0; b < batch; ++b) {
      const double a = alpha_cumprod(t[static_cast<std::size_t>(b)]);
      const T ca = static_cast<T>(cx(a)), cb = static_cast<T>(cn(a));
      const T* px = x0.data() + b * per;
      const T* pn = noise.data() + b * per;
      T* po = out.data() + b * per;
      for (std::int64_t i = 0; i < per; ++i) po[i] = ca * px[i] + cb * pn[i];
    }
    return out;
  }

  std::vector<float> betas_;
  std::vector<float> alphas_cumprod_;
  float final_alpha_cumprod_ = 1.0f;
};

}  // namespace spo::diffusion
