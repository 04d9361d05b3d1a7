// SPDX-License-Identifier: MIT
/// @brief Euler sampler of the probability-flow ODE in sigma space (Karras et al. 2022, Algorithm 2 without
/// churn), diffusers' EulerDiscreteScheduler, with linear sigma interpolation and optional Karras sigmas.
#pragma once

#include <algorithm>
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
#include "spo/diffusion/timesteps.hpp"

namespace spo::diffusion {

/// The settings of the Euler family (diffusers' config keys of the same names).
struct EulerConfig {
  PredictionKind prediction_type = PredictionKind::epsilon;
  TimestepSpacing timestep_spacing = TimestepSpacing::linspace;
  int steps_offset = 0;
  bool rescale_betas_zero_snr = false;  ///< the betas are already rescaled; this sets abar_{T-1} to 2^-24
  bool use_karras_sigmas = false;
  std::optional<double> sigma_min, sigma_max;  ///< Karras bounds; default the interpolated sigmas' ends
};

namespace detail {

/// The sigma-space state shared by Euler and Euler ancestral: training sigmas and the inference schedule.
class EulerSigmas {
 public:
  EulerSigmas() = default;
  EulerSigmas(const std::vector<float>& betas, const EulerConfig& config)
      : config_(config), num_train_(static_cast<int>(betas.size())) {
    SPO_CHECK(num_train_ >= 2, "Euler scheduler: num_train_timesteps must be >= 2, got " << num_train_);
    std::vector<float> abar = NoiseSchedule(TrainedBetas{betas}, num_train_, false).alphas_cumprod();
    if (config.rescale_betas_zero_snr) abar.back() = 0x1p-24f;  // close to 0 so that the first sigma is finite
    train_sigmas_ = sigma_table(abar);
  }

  /// Ref: EulerDiscreteScheduler.set_timesteps (timesteps are float32 values; sigmas a float32 table ending in 0).
  void set_timesteps(int n) {
    SPO_CHECK(n >= 1 && n <= num_train_, "num_inference_steps " << n << " must be in [1, " << num_train_ << "]");
    std::vector<double> ts;
    if (config_.timestep_spacing == TimestepSpacing::linspace) {
      const double step = n > 1 ? static_cast<double>(num_train_ - 1) / (n - 1) : 0.0;
      for (int i = n - 1; i >= 0; --i)
        ts.push_back(static_cast<float>(i == n - 1 && n > 1 ? num_train_ - 1.0 : i * step));
    } else {
      for (auto t : make_timesteps(config_.timestep_spacing, n, num_train_, config_.steps_offset))
        ts.push_back(static_cast<double>(t));
    }
    std::vector<double> sig = interp_sigmas(ts, train_sigmas_);
    if (config_.use_karras_sigmas) {
      sig = karras_sigmas(config_.sigma_min.value_or(sig.back()), config_.sigma_max.value_or(sig.front()), n);
      const auto log_sigmas = log_sigma_table(train_sigmas_);
      for (std::size_t i = 0; i < sig.size(); ++i) ts[i] = static_cast<float>(sigma_to_t(sig[i], log_sigmas));
    }
    timesteps_ = ts;
    sigmas_.clear();
    for (double s : sig) sigmas_.push_back(static_cast<float>(s));
    sigmas_.push_back(0.0f);
    step_index_ = 0;
  }

  const std::vector<double>& timesteps() const { return timesteps_; }
  const std::vector<float>& sigmas() const { return sigmas_; }
  const EulerConfig& config() const { return config_; }
  int step_index() const { return step_index_; }
  void advance() { ++step_index_; }

  /// x / sqrt(sigma_t^2 + 1): the model input at timestep t (Ref: EulerDiscreteScheduler.scale_model_input).
  template <Scalar T>
  Tensor<T, cpu> scale_model_input(const Tensor<T, cpu>& x, double t, std::string_view who) const {
    const double sigma = current_sigma(t, who);
    const double c = std::sqrt(sigma * sigma + 1.0);
    auto out = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
    for (std::int64_t i = 0; i < x.numel(); ++i) out[i] = static_cast<T>(static_cast<double>(x[i]) / c);
    return out;
  }

  /// max sigma, or sqrt(max^2 + 1) for leading spacing (the latents are x_T / sqrt(abar) there).
  double init_noise_sigma() const {
    SPO_CHECK(!sigmas_.empty(), "Euler scheduler: set_timesteps() must be called first");
    const double m = *std::max_element(sigmas_.begin(), sigmas_.end());
    return config_.timestep_spacing == TimestepSpacing::leading ? std::sqrt(m * m + 1.0) : m;
  }

  /// sigma of the current step, after checking that t is its timestep.
  double current_sigma(double t, std::string_view who) const {
    SPO_CHECK(!timesteps_.empty(), who << ": set_timesteps() must be called first");
    SPO_CHECK(step_index_ < static_cast<int>(timesteps_.size()),
              who << ": all " << timesteps_.size() << " steps are done; call set_timesteps() again");
    SPO_CHECK(t == timesteps_[static_cast<std::size_t>(step_index_)],
              who << ": timestep " << t << " is not the current one ("
                  << timesteps_[static_cast<std::size_t>(step_index_)] << ", step " << step_index_ << ")");
    return sigmas_[static_cast<std::size_t>(step_index_)];
  }

  /// x0 from the model output u at noise level sigma (x = x0 + sigma eps, the model saw x / sqrt(sigma^2 + 1)).
  static double predict_x0(PredictionKind k, double u, double x, double sigma) {
    switch (k) {
      case PredictionKind::epsilon:
        return x - sigma * u;
      case PredictionKind::v_prediction:
        return u * (-sigma / std::sqrt(sigma * sigma + 1.0)) + x / (sigma * sigma + 1.0);
      case PredictionKind::sample:
        return u;
    }
    return 0.0;
  }

 private:
  EulerConfig config_;
  int num_train_ = 0;
  std::vector<float> train_sigmas_;
  std::vector<double> timesteps_;
  std::vector<float> sigmas_;
  int step_index_ = 0;
};

}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    diffusers' EulerDiscreteScheduler (0.26.1) without churn (s_churn = 0, its pipelines' setting):
      x_{i+1} = x_i + (x_i - x0_hat) / sigma_i * (sigma_{i+1} - sigma_i)
    on the sigma schedule of set_timesteps (linear interpolation of the training sigmas at the inference
    timesteps, or Karras sigmas), model input x / sqrt(sigma^2 + 1). Defined on CPU tensors; other devices step through
the host.
!*/
class EulerDiscrete : public HostStepsOnDevices<EulerDiscrete> {
 public:
  using HostStepsOnDevices<EulerDiscrete>::scale_model_input;  // on other devices: through the host
  using HostStepsOnDevices<EulerDiscrete>::step;

  static constexpr std::string_view class_name = "EulerDiscreteScheduler";

  EulerDiscrete() = default;
  EulerDiscrete(const std::vector<float>& betas, const EulerConfig& config) : sigmas_(betas, config) {}

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
                      const StepNoise<T, cpu>& = {}) {
    check_same_shape(model_output.shape(), x.shape(), "EulerDiscrete::step (model_output vs sample)");
    const double sigma = sigmas_.current_sigma(t, class_name);
    const double dt = static_cast<double>(sigmas_.sigmas()[static_cast<std::size_t>(sigmas_.step_index() + 1)]) - sigma;
    const PredictionKind k = sigmas_.config().prediction_type;
    auto out = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const double xi = x[i];
      const double x0 = detail::EulerSigmas::predict_x0(k, model_output[i], xi, sigma);
      out[i] = static_cast<T>(xi + (xi - x0) / sigma * dt);
    }
    sigmas_.advance();
    return out;
  }

 private:
  detail::EulerSigmas sigmas_;
};

}  // namespace spo::diffusion
