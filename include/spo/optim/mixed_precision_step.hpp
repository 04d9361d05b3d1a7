// SPDX-License-Identifier: MIT
/// @brief One optimizer step under a precision policy: FP32 masters of 16-bit trainable weights, AdamW on the
/// masters, dynamic loss scaling for fp16.
#pragma once

#include <concepts>
#include <optional>

#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/optim/loss_scaler.hpp"
#include "spo/optim/master_weights.hpp"
#include "spo/optim/precision.hpp"

namespace spo::optim {

/*!
  WHAT THIS REPRESENTS
    The update of a model trained under precision policy P (optim/precision.hpp). The trainer multiplies the
    gradient it seeds its backward with by loss_scale(), runs the backward into the model's gradients (in the
    model's scalar), and calls step(max_grad_norm):
      - the gradients go to the FP32 masters (MasterWeights: exact), where AdamW<float> keeps its state;
      - with P::loss_scaling, DynamicLossScaler::step: unscale, skip the update and back the scale off on a
        non-finite gradient, otherwise clip and step, and grow the scale after its growth interval;
      - without it, loss_scale() is 1 and a non-finite gradient norm is an error (the run stops before the update,
        as every FP32 trainer does); otherwise clip and step;
      - after an update the masters are rounded into the model's 16-bit weights.
    For fp32 and tf32 models the masters are the model's own parameters, and a step is bitwise clip_grad_norm +
    AdamW::step on the model.
  REQUIRES
    - Model: visit_parameters over nn::Parameter<T, D> with T = parameter_scalar_t<Model> or float,
      Model::device_type
!*/
template <class Model, precision::Policy P>
class MixedPrecisionStep {
 public:
  using device_type = typename Model::device_type;
  /// AdamW in the compute type of the model's parameters: float for 16-bit and float ones, double for double ones.
  using optimizer_type = AdamW<compute_type_t<parameter_scalar_t<Model>>, device_type>;

  MixedPrecisionStep(Model& model, const AdamWOptions& adamw, const LossScaleOptions& scaling = default_loss_scale())
      : masters_(model), optimizer_(adamw) {
    if constexpr (P::loss_scaling) scaler_.emplace(scaling);
  }

  /// The factor on the loss gradient the trainer seeds its backward with (1 without loss scaling).
  double loss_scale() const { return scaler_ ? scaler_->loss_scale() : 1.0; }

  /// Replaces the loss scaler with a fresh one of options o (P::loss_scaling only).
  void set_loss_scaling(const LossScaleOptions& o) {
    SPO_CHECK(P::loss_scaling, "precision " << P::name << " does not scale losses");
    scaler_.emplace(o);
  }

  /// One update from the model's accumulated gradients (see above); grad_norm is the unscaled norm before clipping.
  ScaledStep step(double max_grad_norm) {
    return step(max_grad_norm, [](MasterWeights<Model>&) {});
  }

  /// The same, with reduce(masters()) between gathering the gradients into the FP32 masters and everything that
  /// reads them: the data-parallel mean over ranks of the still-scaled gradients (dist::GradientReducer over
  /// masters()), so that the check for non-finite values, the unscaling, the norm and the update see the same
  /// averaged gradients on every rank, and an infinity on one rank skips the step on all.
  template <std::invocable<MasterWeights<Model>&> Reduce>
  ScaledStep step(double max_grad_norm, Reduce&& reduce) {
    masters_.gather_gradients();
    reduce(masters_);
    ScaledStep r;
    if (scaler_) {
      r = scaler_->step(masters_, optimizer_, max_grad_norm);
    } else {
      r.scale_used = 1.0;
      r.grad_norm = clip_grad_norm(masters_, max_grad_norm, true);
      optimizer_.step(masters_);
    }
    if (!r.skipped) masters_.publish();
    return r;
  }

  /// The masters as a model: what a checkpoint stores for the trainable weights (their FP32 values), and what the
  /// optimizer's state is keyed by.
  MasterWeights<Model>& masters() { return masters_; }
  optimizer_type& optimizer() { return optimizer_; }
  const optimizer_type& optimizer() const { return optimizer_; }

  /// The loss scaler's state ({} without loss scaling), for a checkpoint; load_state restores it.
  nlohmann::json state() const { return scaler_ ? scaler_->state() : nlohmann::json::object(); }
  void load_state(const nlohmann::json& j) {
    if (scaler_) {
      scaler_->load_state(j);
    } else {
      SPO_CHECK(j.empty(), "precision " << P::name << " has no loss scaler, but the state holds " << j.dump());
    }
  }

 private:
  MasterWeights<Model> masters_;
  optimizer_type optimizer_;
  std::optional<DynamicLossScaler> scaler_;
};

}  // namespace spo::optim
