// SPDX-License-Identifier: MIT
/// @brief DPM-Solver++ multistep (Lu et al. 2022), orders 1 and 2, as diffusers' DPMSolverMultistepScheduler.
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
#include "spo/diffusion/sigma_schedule.hpp"
#include "spo/diffusion/thresholding.hpp"
#include "spo/diffusion/timesteps.hpp"

namespace spo::diffusion {

/// Second-order update of the multistep solver (diffusers `solver_type`).
enum class DpmSolverType { midpoint, heun };

/// The last sigma of the schedule (diffusers `final_sigmas_type`): 0, or sigma of training timestep 0.
enum class FinalSigmas { zero, sigma_min };

/// Settings of DPM-Solver++ (algorithm_type "dpmsolver++"; diffusers' config keys of the same names).
struct DpmSolverConfig {
  int solver_order = 2;  ///< 1 or 2
  PredictionKind prediction_type = PredictionKind::epsilon;
  std::optional<DynamicThresholding> thresholding;
  DpmSolverType solver_type = DpmSolverType::midpoint;
  bool lower_order_final = true;
  bool euler_at_final = false;
  bool use_karras_sigmas = false;
  FinalSigmas final_sigmas_type = FinalSigmas::zero;
  TimestepSpacing timestep_spacing = TimestepSpacing::linspace;
  int steps_offset = 0;
};

/*!
  WHAT THIS REPRESENTS
    diffusers' DPMSolverMultistepScheduler (0.26.1) with algorithm_type dpmsolver++: the data prediction
    D = x0_hat (thresholded if configured) at alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t,
    lambda = log alpha_t - log sigma_t, h = lambda_next - lambda_cur:
      first order:  x' = sigma_t'/sigma_t x - alpha_t' (e^-h - 1) D0
      second order: r = h_prev / h, D1 = (D0 - D_prev) / r,
                    midpoint: x' = sigma_t'/sigma_t x - alpha_t' (e^-h - 1) (D0 + D1 / 2)
                    heun:     x' = sigma_t'/sigma_t x - alpha_t' (e^-h - 1) D0 + alpha_t' ((e^-h - 1) / h + 1) D1
    The first step, and the last when lower_order_final (fewer than 15 steps), euler_at_final or a zero final
    sigma ask for it, use first order. Deterministic; init_noise_sigma 1, unscaled model input. Defined on CPU tensors;
    other devices step through the host.
!*/
class DpmSolverMultistep : public HostStepsOnDevices<DpmSolverMultistep> {
 public:
  using HostStepsOnDevices<DpmSolverMultistep>::scale_model_input;  // on other devices: through the host
  using HostStepsOnDevices<DpmSolverMultistep>::step;

  static constexpr std::string_view class_name = "DPMSolverMultistepScheduler";

  DpmSolverMultistep() = default;
  DpmSolverMultistep(const std::vector<float>& betas, const DpmSolverConfig& config)
      : config_(config), num_train_(static_cast<int>(betas.size())) {
    SPO_CHECK(config.solver_order == 1 || config.solver_order == 2,
              class_name << ": solver_order " << config.solver_order << " is not implemented (1 or 2)");
    SPO_CHECK(num_train_ >= 2, class_name << ": num_train_timesteps must be >= 2, got " << num_train_);
    train_sigmas_ = sigma_table(NoiseSchedule(TrainedBetas{betas}, num_train_, false).alphas_cumprod());
  }

  /// Ref: DPMSolverMultistepScheduler.set_timesteps: N + 1 points of the spacing without the last (integer
  /// timesteps), sigmas interpolated at them or Karras sigmas (timesteps rounded from their log-sigma position).
  void set_timesteps(int n) {
    SPO_CHECK(n >= 1 && n < num_train_, "num_inference_steps " << n << " must be in [1, " << num_train_ << ")");
    std::vector<std::int64_t> ti;
    if (config_.timestep_spacing == TimestepSpacing::trailing) {
      ti = make_timesteps(TimestepSpacing::trailing, n, num_train_);
    } else {
      ti = make_timesteps(config_.timestep_spacing, n + 1, num_train_, config_.steps_offset);
      ti.pop_back();
    }
    std::vector<double> ts(ti.begin(), ti.end());
    std::vector<double> sig;
    if (config_.use_karras_sigmas) {
      sig = karras_sigmas(train_sigmas_.front(), train_sigmas_.back(), n);
      const auto log_sigmas = log_sigma_table(train_sigmas_);
      ts.clear();
      for (double s : sig) ts.push_back(std::nearbyint(sigma_to_t(s, log_sigmas)));
    } else {
      sig = interp_sigmas(ts, train_sigmas_);
    }
    timesteps_ = ts;
    sigmas_.clear();
    for (double s : sig) sigmas_.push_back(static_cast<float>(s));
    sigmas_.push_back(config_.final_sigmas_type == FinalSigmas::zero ? 0.0f : train_sigmas_.front());
    step_index_ = 0;
    lower_order_nums_ = 0;
    previous_.clear();
  }

  const std::vector<double>& timesteps() const { return timesteps_; }
  const std::vector<float>& sigmas() const { return sigmas_; }
  double init_noise_sigma() const { return 1.0; }
  const DpmSolverConfig& config() const { return config_; }

  template <Scalar T>
  Tensor<T, cpu> scale_model_input(const Tensor<T, cpu>& x, double t) const {
    check_timestep(t);
    return x;
  }

  template <Scalar T>
  Tensor<T, cpu> step(const Tensor<T, cpu>& model_output, double t, const Tensor<T, cpu>& x,
                      const StepNoise<T, cpu>& = {}) {
    check_same_shape(model_output.shape(), x.shape(), "DpmSolverMultistep::step (model_output vs sample)");
    check_timestep(t);
    const int n = static_cast<int>(timesteps_.size()), i = step_index_;
    const bool final_first_order = i == n - 1 && (config_.euler_at_final || (config_.lower_order_final && n < 15) ||
                                                  config_.final_sigmas_type == FinalSigmas::zero);
    const auto s = [&](int k) { return static_cast<double>(sigmas_[static_cast<std::size_t>(k)]); };

    // x0_hat at sigma_i
    const double alpha_s0 = 1.0 / std::sqrt(s(i) * s(i) + 1.0), sigma_s0 = s(i) * alpha_s0;
    Tensor<double, cpu> d0(x.shape());  // x.shape
    for (std::int64_t e = 0; e < x.numel(); ++e) {
      const double u = model_output[e], xe = x[e];
      switch (config_.prediction_type) {
        case PredictionKind::epsilon:
          d0[e] = (xe - sigma_s0 * u) / alpha_s0;
          break;
        case PredictionKind::v_prediction:
          d0[e] = alpha_s0 * xe - sigma_s0 * u;
          break;
        case PredictionKind::sample:
          d0[e] = u;
          break;
      }
    }
    if (config_.thresholding) dynamic_threshold_inplace(d0, *config_.thresholding);
    if (static_cast<int>(previous_.size()) == config_.solver_order) previous_.erase(previous_.begin());
    previous_.push_back(d0);

    const double alpha_t = 1.0 / std::sqrt(s(i + 1) * s(i + 1) + 1.0), sigma_t = s(i + 1) * alpha_t;
    const double lambda_t = std::log(alpha_t) - std::log(sigma_t);
    const double lambda_s0 = std::log(alpha_s0) - std::log(sigma_s0);
    const double h = lambda_t - lambda_s0;
    const double cx = sigma_t / sigma_s0, cd = alpha_t * (std::exp(-h) - 1.0);
    auto out = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
    if (config_.solver_order == 1 || lower_order_nums_ < 1 || final_first_order) {
      for (std::int64_t e = 0; e < x.numel(); ++e) out[e] = static_cast<T>(cx * static_cast<double>(x[e]) - cd * d0[e]);
    } else {
      const double alpha_s1 = 1.0 / std::sqrt(s(i - 1) * s(i - 1) + 1.0), sigma_s1 = s(i - 1) * alpha_s1;
      const double lambda_s1 = std::log(alpha_s1) - std::log(sigma_s1);
      const double r0 = (lambda_s0 - lambda_s1) / h;
      const Tensor<double, cpu>& m1 = previous_.front();
      const double c1 =
          config_.solver_type == DpmSolverType::midpoint ? -0.5 * cd : alpha_t * ((std::exp(-h) - 1.0) / h + 1.0);
      for (std::int64_t e = 0; e < x.numel(); ++e) {
        const double d1 = (1.0 / r0) * (d0[e] - m1[e]);
        out[e] = static_cast<T>(cx * static_cast<double>(x[e]) - cd * d0[e] + c1 * d1);
      }
    }
    if (lower_order_nums_ < config_.solver_order) ++lower_order_nums_;
    ++step_index_;
    return out;
  }

 private:
  void check_timestep(double t) const { check_current_timestep(class_name, timesteps_, step_index_, t); }

  DpmSolverConfig config_;
  int num_train_ = 0;
  std::vector<float> train_sigmas_;
  std::vector<double> timesteps_;
  std::vector<float> sigmas_;
  int step_index_ = 0;
  int lower_order_nums_ = 0;
  std::vector<Tensor<double, cpu>> previous_;  ///< the last solver_order data predictions, oldest first
};

}  // namespace spo::diffusion
