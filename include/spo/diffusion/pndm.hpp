// SPDX-License-Identifier: MIT
/// @brief Pseudo linear multistep sampler (PLMS, Liu et al. 2022) without the Runge-Kutta warm-up, as diffusers'
/// PNDMScheduler with skip_prk_steps (Stable Diffusion 1.x's scheduler).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/diffusion/concepts.hpp"
#include "spo/diffusion/host_step.hpp"
#include "spo/diffusion/noise_schedule.hpp"
#include "spo/diffusion/prediction.hpp"
#include "spo/diffusion/timesteps.hpp"

namespace spo::diffusion {

/// Settings of PNDM (diffusers' config keys of the same names; skip_prk_steps must be true).
struct PndmConfig {
  PredictionKind prediction_type = PredictionKind::epsilon;  ///< epsilon or v_prediction
  TimestepSpacing timestep_spacing = TimestepSpacing::leading;
  int steps_offset = 0;
  bool set_alpha_to_one = false;
};

/*!
  WHAT THIS REPRESENTS
    diffusers' PNDMScheduler.step_plms (0.26.1). Timesteps: the spacing's N timesteps with the second one repeated
    (N + 1 steps). With eps' the multistep combination of the model outputs e_1 (newest) .. e_4:
      step 0: e_1;  step 1 (the repeat): (e + e_1) / 2, restarting from step 0's sample;  then
      (3 e_1 - e_2) / 2,  (23 e_1 - 16 e_2 + 5 e_3) / 12,  (55 e_1 - 59 e_2 + 37 e_3 - 9 e_4) / 24
    and the transfer of PNDM eq. (9) from t to t' = t - T/N (abar_{t'} = final_alpha_cumprod when t' < 0):
      x' = sqrt(abar_t' / abar_t) x - (abar_t' - abar_t) eps' / (abar_t sqrt(1 - abar_t') + sqrt(abar_t (1 - abar_t)
abar_t')) v_prediction converts the combined output to eps with the current sample. Deterministic; defined on CPU
tensors, other devices step through the host.
!*/
class Pndm : public HostStepsOnDevices<Pndm> {
 public:
  using HostStepsOnDevices<Pndm>::scale_model_input;  // on other devices: through the host
  using HostStepsOnDevices<Pndm>::step;

  static constexpr std::string_view class_name = "PNDMScheduler";

  Pndm() = default;
  Pndm(const std::vector<float>& betas, const PndmConfig& config)
      : config_(config),
        schedule_(TrainedBetas{betas}, static_cast<int>(betas.size()), config.set_alpha_to_one),
        num_train_(static_cast<int>(betas.size())) {
    SPO_CHECK(config.prediction_type != PredictionKind::sample,
              class_name << ": prediction_type \"sample\" is not supported (epsilon or v_prediction)");
  }

  void set_timesteps(int n) {
    const auto d = make_timesteps(config_.timestep_spacing, n, num_train_, config_.steps_offset);  // descending
    timesteps_.clear();
    for (std::size_t i = 0; i < d.size(); ++i) {
      timesteps_.push_back(static_cast<double>(d[i]));
      if (i == 1) timesteps_.push_back(static_cast<double>(d[i]));
    }
    num_inference_steps_ = n;
    counter_ = 0;
    ets_.clear();
    cur_sample_.reset();
  }

  const std::vector<double>& timesteps() const { return timesteps_; }
  double init_noise_sigma() const { return 1.0; }
  const PndmConfig& config() const { return config_; }

  template <Scalar T>
  Tensor<T, cpu> scale_model_input(const Tensor<T, cpu>& x, double t) const {
    check_timestep(t);
    return x;
  }

  template <Scalar T>
  Tensor<T, cpu> step(const Tensor<T, cpu>& model_output, double t, const Tensor<T, cpu>& x,
                      const StepNoise<T, cpu>& = {}) {
    check_same_shape(model_output.shape(), x.shape(), "Pndm::step (model_output vs sample)");
    check_timestep(t);
    const std::int64_t ratio = num_train_ / num_inference_steps_;
    auto timestep = static_cast<std::int64_t>(t), prev_timestep = timestep - ratio;
    Tensor<double, cpu> u(x.shape());  // x.shape
    for (std::int64_t e = 0; e < x.numel(); ++e) u[e] = model_output[e];
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin());
      ets_.push_back(u);
    } else {
      prev_timestep = timestep;
      timestep += ratio;
    }
    Tensor<double, cpu> eps(x.shape());     // x.shape
    Tensor<double, cpu> sample(x.shape());  // x.shape
    for (std::int64_t e = 0; e < x.numel(); ++e) sample[e] = x[e];
    const std::size_t m = ets_.size();
    const auto et = [&](std::size_t back, std::int64_t e) { return ets_[m - back][e]; };
    if (m == 1 && counter_ == 0) {
      eps = u;
      cur_sample_ = sample;
    } else if (m == 1 && counter_ == 1) {
      for (std::int64_t e = 0; e < x.numel(); ++e) eps[e] = (u[e] + et(1, e)) / 2.0;
      sample = *cur_sample_;
      cur_sample_.reset();
    } else if (m == 2) {
      for (std::int64_t e = 0; e < x.numel(); ++e) eps[e] = (3.0 * et(1, e) - et(2, e)) / 2.0;
    } else if (m == 3) {
      for (std::int64_t e = 0; e < x.numel(); ++e) eps[e] = (23.0 * et(1, e) - 16.0 * et(2, e) + 5.0 * et(3, e)) / 12.0;
    } else {
      for (std::int64_t e = 0; e < x.numel(); ++e)
        eps[e] = (1.0 / 24.0) * (55.0 * et(1, e) - 59.0 * et(2, e) + 37.0 * et(3, e) - 9.0 * et(4, e));
    }
    const double a_t = schedule_.alpha_cumprod(timestep);
    const double a_prev = prev_timestep >= 0 ? schedule_.alpha_cumprod(prev_timestep) : schedule_.final_alpha_cumprod();
    const double b_t = 1.0 - a_t, b_prev = 1.0 - a_prev;
    const double sample_coeff = std::sqrt(a_prev / a_t);
    const double denom = a_t * std::sqrt(b_prev) + std::sqrt(a_t * b_t * a_prev);
    auto out = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
    for (std::int64_t e = 0; e < x.numel(); ++e) {
      double ee = eps[e];
      if (config_.prediction_type == PredictionKind::v_prediction)
        ee = std::sqrt(a_t) * ee + std::sqrt(b_t) * sample[e];
      out[e] = static_cast<T>(sample_coeff * sample[e] - (a_prev - a_t) * ee / denom);
    }
    ++counter_;
    return out;
  }

 private:
  void check_timestep(double t) const { check_current_timestep(class_name, timesteps_, counter_, t); }

  PndmConfig config_;
  NoiseSchedule schedule_;
  int num_train_ = 0;
  int num_inference_steps_ = 0;
  std::vector<double> timesteps_;
  int counter_ = 0;
  std::vector<Tensor<double, cpu>> ets_;  ///< the last (up to 4) model outputs, oldest first
  std::optional<Tensor<double, cpu>> cur_sample_;
};

}  // namespace spo::diffusion
