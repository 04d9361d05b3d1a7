// SPDX-License-Identifier: MIT
/// @brief DDIM as an inference scheduler (diffusers' DDIMScheduler with thresholding and a runtime prediction type),
/// built on the training scheduler Ddim.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "spo/diffusion/concepts.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/diffusion/thresholding.hpp"
#include "spo/diffusion/timesteps.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::diffusion {

/// DDIM inference settings beyond DdimConfig (diffusers' config keys `prediction_type`, `thresholding`,
/// `dynamic_thresholding_ratio`, `sample_max_value`) and the sampler's eta.
struct DdimSamplingConfig {
  DdimConfig ddim;  ///< clip_sample is ignored when thresholding is set (as in diffusers)
  PredictionKind prediction_type = PredictionKind::epsilon;
  std::optional<DynamicThresholding> thresholding;
  double eta = 0.0;
};

/*!
  WHAT THIS REPRESENTS
    diffusers' DDIMScheduler.step (0.26.1, use_clipped_model_output false) through Ddim's predict / transition /
    mean, with dynamic thresholding of x0 between prediction and mean, and eta * std * z added when eta > 0. The
    betas are a table (any beta schedule, rescaled to zero terminal SNR where configured). Step arithmetic in
    double from the float32 alphas_cumprod table. On a device, thresholding runs on a host copy of x0; the rest
    follows Ddim's devices.
!*/
class DdimSampling {
 public:
  static constexpr std::string_view class_name = "DDIMScheduler";

  DdimSampling() = default;
  DdimSampling(const std::vector<float>& betas, DdimSamplingConfig config) : config_(config) {
    SPO_CHECK(config.eta >= 0.0, class_name << ": eta must be >= 0, got " << config.eta);
    DdimConfig c = config.ddim;
    c.num_train_timesteps = static_cast<int>(betas.size());
    if (config.thresholding) c.clip_sample = false;
    const TrainedBetas table{betas};
    switch (config.prediction_type) {
      case PredictionKind::epsilon:
        ddim_ = Ddim<TrainedBetas, EpsilonPrediction>(table, c);
        break;
      case PredictionKind::v_prediction:
        ddim_ = Ddim<TrainedBetas, VPrediction>(table, c);
        break;
      case PredictionKind::sample:
        ddim_ = Ddim<TrainedBetas, SamplePrediction>(table, c);
        break;
    }
  }

  void set_timesteps(int n) {
    std::visit([n](auto& d) { d.set_timesteps(n); }, ddim_);
    timesteps_.clear();
    for (auto t : std::visit([](const auto& d) { return d.timesteps(); }, ddim_))
      timesteps_.push_back(static_cast<double>(t));
    step_index_ = 0;
  }
  const std::vector<double>& timesteps() const { return timesteps_; }
  double init_noise_sigma() const { return 1.0; }
  const DdimSamplingConfig& config() const { return config_; }
  const NoiseSchedule& noise_schedule() const {
    return std::visit([](const auto& d) -> const NoiseSchedule& { return d.noise_schedule(); }, ddim_);
  }

  template <Scalar T, Device D>
  Tensor<T, D> scale_model_input(const Tensor<T, D>& x, double t) const {
    check_timestep(t);
    return x;
  }

  template <Scalar T, Device D>
  Tensor<T, D> step(const Tensor<T, D>& model_output, double t, const Tensor<T, D>& x,
                    const StepNoise<T, D>& noise = {}) {
    check_timestep(t);
    const auto ti = static_cast<std::int64_t>(t);
    const std::vector<std::int64_t> ts(static_cast<std::size_t>(x.size(0)), ti);
    auto prev = std::visit(
        [&](const auto& d) {
          auto pred = d.predict(model_output, x, ts);
          if (config_.thresholding) {
            if constexpr (std::same_as<D, cpu>) {
              dynamic_threshold_inplace(pred.x0, *config_.thresholding);
            } else {  // a per-sample quantile: on the host copy of x0 (the latents, a few hundred KiB)
              auto x0 = transfer<cpu>(pred.x0);  // x.shape
              dynamic_threshold_inplace(x0, *config_.thresholding);
              pred.x0 = transfer<D>(x0);
            }
          }
          const std::vector<Transition> tr(ts.size(), d.transition(ti, config_.eta, PrevTimestepRule::diffusers));
          auto mu = d.mean(pred, tr);  // x.shape
          if (config_.eta > 0.0) {
            const auto z = noise.draw(x.shape(), class_name);  // x.shape
            axpy<T>(static_cast<T>(tr[0].std), z.view(), mu.view());
          }
          return mu;
        },
        ddim_);
    ++step_index_;
    return prev;
  }

 private:
  void check_timestep(double t) const { check_current_timestep(class_name, timesteps_, step_index_, t); }

  DdimSamplingConfig config_;
  std::variant<Ddim<TrainedBetas, EpsilonPrediction>, Ddim<TrainedBetas, VPrediction>,
               Ddim<TrainedBetas, SamplePrediction>>
      ddim_;
  std::vector<double> timesteps_;
  int step_index_ = 0;
};

}  // namespace spo::diffusion
