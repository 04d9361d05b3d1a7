// SPDX-License-Identifier: MIT
/// @brief Dynamic loss scaling for half-precision training, with torch.cuda.amp.GradScaler's semantics: scale the
/// loss gradient, unscale before clipping, skip the step and back off on a non-finite gradient, grow after a run of
/// finite steps.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <boost/hana/define_struct.hpp>
#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::optim {

/// GradScaler's constructor arguments (its defaults: 2^16, 2, 0.5, 2000).
struct LossScaleOptions {
  BOOST_HANA_DEFINE_STRUCT(LossScaleOptions, (double, init_scale), (double, growth_factor), (double, backoff_factor),
                           (std::int64_t, growth_interval));
};

inline LossScaleOptions default_loss_scale() { return {65536.0, 2.0, 0.5, 2000}; }

/// init_scale finite and > 0; growth_factor > 1; backoff_factor in (0, 1); growth_interval >= 1.
inline void validate(const LossScaleOptions& o) {
  SPO_CONFIG_CHECK(std::isfinite(o.init_scale) && o.init_scale > 0, "loss_scale.init_scale",
                   "must be finite and > 0, got " << o.init_scale);
  SPO_CONFIG_CHECK(std::isfinite(o.growth_factor) && o.growth_factor > 1, "loss_scale.growth_factor",
                   "must be finite and > 1, got " << o.growth_factor);
  SPO_CONFIG_CHECK(o.backoff_factor > 0 && o.backoff_factor < 1, "loss_scale.backoff_factor",
                   "must be in (0, 1), got " << o.backoff_factor);
  SPO_CONFIG_CHECK(o.growth_interval >= 1, "loss_scale.growth_interval", "must be >= 1, got " << o.growth_interval);
}

/// What one scaled step did.
struct ScaledStep {
  bool skipped = false;   ///< a gradient was not finite: no update, the scale backed off
  double grad_norm = 0;   ///< the unscaled gradients' norm before clipping (non-finite when skipped)
  double scale_used = 0;  ///< the scale the gradients of this step carried
};

/*!
  WHAT THIS REPRESENTS
    The loss scale s of mixed-precision training (docs/algorithm.md 5.5). A trainer multiplies the gradient of its
    loss by loss_scale() before the backward, so that small half-precision gradients do not flush to zero, then calls
    step(): every trainable gradient is multiplied by 1 / s (exact for the powers of two the defaults keep s at); if
    any is not finite the update is skipped and s *= backoff_factor; otherwise the gradients are clipped to
    max_grad_norm and the optimizer steps, and after growth_interval consecutive finite steps s *= growth_factor.
    bf16 and fp32 training need no scaling: a scaler with init_scale 1 that never sees an infinity is the identity.
    The state (scale, growth tracker) is part of a checkpoint, so that a resumed run repeats an uninterrupted one.
!*/
class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(const LossScaleOptions& o = default_loss_scale()) : o_(o), scale_(o.init_scale) {
    validate(o);
  }

  double loss_scale() const { return scale_; }
  std::int64_t growth_tracker() const { return tracker_; }

  /// Multiplies every trainable gradient of `model` by 1 / loss_scale(); returns false when any of them is not finite.
  template <class Model>
  bool unscale(Model& model) const {
    const double inv = 1.0 / scale_;
    model.visit_parameters(
        [&](std::string_view, auto& p) {
          if (!p.trainable) return;
          using T = typename std::remove_cvref_t<decltype(p.grad)>::value_type;
          scale(static_cast<T>(inv), p.grad.view());
        },
        {});
    return std::isfinite(grad_norm(model));
  }

  /// GradScaler.update: back off after a non-finite step, grow after growth_interval finite ones.
  void update(bool finite) {
    if (!finite) {
      scale_ *= o_.backoff_factor;
      tracker_ = 0;
      return;
    }
    if (++tracker_ == o_.growth_interval) {
      scale_ *= o_.growth_factor;
      tracker_ = 0;
    }
  }

  /*!
    REQUIRES
      - the trainable gradients of `model` hold loss_scale() x the loss's gradients
    ENSURES
      - unscale, then either skip (no parameter changes, gradients left as they are) or clip to max_grad_norm and
        take one optimizer step; then update the scale
  !*/
  template <class Model, class Optimizer>
  ScaledStep step(Model& model, Optimizer& optimizer, double max_grad_norm) {
    ScaledStep r;
    r.scale_used = scale_;
    const bool finite = unscale(model);
    if (finite) {
      r.grad_norm = clip_grad_norm(model, max_grad_norm, true);
      optimizer.step(model);
    } else {
      r.skipped = true;
      r.grad_norm = grad_norm(model);
    }
    update(finite);
    return r;
  }

  nlohmann::json state() const { return {{"scale", scale_}, {"growth_tracker", tracker_}}; }
  void load_state(const nlohmann::json& j) {
    scale_ = j.at("scale").get<double>();
    tracker_ = j.at("growth_tracker").get<std::int64_t>();
    SPO_CHECK(std::isfinite(scale_) && scale_ > 0 && tracker_ >= 0 && tracker_ < o_.growth_interval,
              "loss scaler state: scale " << scale_ << ", growth tracker " << tracker_);
  }

 private:
  LossScaleOptions o_;
  double scale_;
  std::int64_t tracker_ = 0;
};

}  // namespace spo::optim
