// SPDX-License-Identifier: MIT
/// @brief The optim module's contracts: an optimizer's exported state and the optimizer a trainer steps.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "spo/core/device.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::optim {

/// Optimizer state as named tensors ("exp_avg.<param>", "exp_avg_sq.<param>" for AdamW) plus the step count: what a
/// checkpoint stores.
template <Scalar T, Device D = cpu>
struct OptimizerState {
  std::int64_t step = 0;
  std::map<std::string, Tensor<T, D>, std::less<>> tensors;
};

/*!
  WHAT THIS REPRESENTS
    An optimizer of the trainable parameters of a model M (anything with visit_parameters), as the round loop uses
    it: one update per minibatch, a learning rate that may change, and a state that survives a resume exactly.
  REQUIRES
    - O::scalar_type, O::device_type (the parameters' scalar and device), O::name
    - o.step(m): one update of every trainable parameter of m from its accumulated gradient
    - o.set_lr(lr): a new learning rate, the state kept; o.step_count(): the updates taken
    - o.export_state() -> OptimizerState; o.import_state(state, m) replaces it after checking it against m, so that
      export -> checkpoint -> import -> step equals an uninterrupted step bitwise
!*/
template <class O, class M>
concept Optimizer = Scalar<typename O::scalar_type> && Device<typename O::device_type> &&
    requires(O& o, const O& co, M& m, OptimizerState<typename O::scalar_type, typename O::device_type> s, double lr) {
  { O::name } -> std::convertible_to<std::string_view>;
  o.step(m);
  o.set_lr(lr);
  { co.step_count() } -> std::convertible_to<std::int64_t>;
  { co.export_state() } -> std::same_as<OptimizerState<typename O::scalar_type, typename O::device_type>>;
  o.import_state(std::move(s), m);
};

}  // namespace spo::optim
