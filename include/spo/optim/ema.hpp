// SPDX-License-Identifier: MIT
/// @brief Exponential moving average of a model's parameters (frozen copies, saved with checkpoints as "ema.*").
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <string_view>

#include "spo/nn/parameter.hpp"
#include "spo/tensor/eigen.hpp"

namespace spo::optim {

/*!
  WHAT THIS REPRESENTS
    shadow <- decay_t * shadow + (1 - decay_t) * value for every parameter of a model, with the warm-up
    decay_t = min(decay, (1 + n) / (10 + n)) after n updates (as diffusers' EMAModel with use_ema_warmup=False).
    The shadows are frozen Parameters, so the object is parameter-visitable (checkpoints store them).
!*/
template <Scalar T, Device D = cpu>
class Ema {
 public:
  Ema() = default;
  template <class Model>
  Ema(Model& model, double decay) : decay_(decay) {
    SPO_CHECK(decay >= 0.0 && decay < 1.0, "EMA decay must be in [0, 1), got " << decay);
    model.visit_parameters(
        [&](std::string_view name, nn::Parameter<T, D>& p) {
          nn::Parameter<T, D> s;
          s.value = p.value;
          s.trainable = false;
          shadows_.emplace(std::string(name), std::move(s));
        },
        {});
  }

  double decay_at(std::int64_t n) const { return std::min(decay_, (1.0 + n) / (10.0 + n)); }

  template <class Model>
  void update(Model& model) {
    const T d = static_cast<T>(decay_at(updates_));
    model.visit_parameters(
        [&](std::string_view name, nn::Parameter<T, D>& p) {
          auto it = shadows_.find(std::string(name));
          SPO_CHECK(it != shadows_.end(), "EMA has no shadow for parameter \"" << name << "\"");
          as_array(it->second.value.view()) =
              d * as_array(it->second.value.view()) + (T(1) - d) * as_array(p.value.view());
        },
        {});
    ++updates_;
  }

  /// Writes the averaged values into the model's parameters.
  template <class Model>
  void copy_to(Model& model) const {
    model.visit_parameters(
        [&](std::string_view name, nn::Parameter<T, D>& p) {
          auto it = shadows_.find(std::string(name));
          SPO_CHECK(it != shadows_.end(), "EMA has no shadow for parameter \"" << name << "\"");
          p.value = it->second.value;
        },
        {});
  }

  std::int64_t updates() const { return updates_; }
  void set_updates(std::int64_t n) { updates_ = n; }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    for (auto& [name, s] : shadows_) f(nn::join_name(prefix, name), s);
  }

 private:
  double decay_ = 0.999;
  std::int64_t updates_ = 0;
  std::map<std::string, nn::Parameter<T, D>> shadows_;
};

}  // namespace spo::optim
