// SPDX-License-Identifier: MIT
/// @brief Parameter: a value, its gradient accumulator and a trainable flag; names follow PyTorch state-dict keys.
#pragma once

#include <string>
#include <string_view>

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

namespace detail {
inline thread_local bool construct_frozen = false;
}  // namespace detail

/// While alive, Parameters constructed on this thread are frozen and hold no gradient memory: models built for
/// inference only (a Stable Diffusion pipeline) take half the memory. set_trainable(true) gives one its gradient.
class frozen_parameters_guard {
 public:
  frozen_parameters_guard() : previous_(detail::construct_frozen) { detail::construct_frozen = true; }
  ~frozen_parameters_guard() { detail::construct_frozen = previous_; }
  frozen_parameters_guard(const frozen_parameters_guard&) = delete;
  frozen_parameters_guard& operator=(const frozen_parameters_guard&) = delete;

 private:
  bool previous_;
};

/*!
  WHAT THIS REPRESENTS
    One learnable tensor. Backward passes accumulate (+=) into grad only when trainable; a frozen parameter
    holds no gradient memory.
!*/
template <StorageScalar T, Device D = cpu>
struct Parameter {
  Tensor<T, D> value;
  Tensor<T, D> grad;
  bool trainable = true;

  Parameter() = default;
  explicit Parameter(Shape shape)
      : value(shape),
        grad(detail::construct_frozen ? Tensor<T, D>() : Tensor<T, D>(shape)),
        trainable(!detail::construct_frozen) {}

  const Shape& shape() const { return value.shape(); }
  void zero_grad() {
    if (trainable) {
      if (grad.shape() == value.shape())
        grad.fill_zero();
      else
        grad = Tensor<T, D>(value.shape());
    }
  }
  void set_trainable(bool on) {
    trainable = on;
    if (on && !(grad.shape() == value.shape())) grad = Tensor<T, D>(value.shape());
    if (!on) grad = Tensor<T, D>();
  }
};

/// "prefix.name", or "name" when the prefix is empty (PyTorch's state-dict key convention).
inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s;
  s.reserve(prefix.size() + 1 + name.size());
  s.append(prefix).append(".").append(name);
  return s;
}

}  // namespace spo::nn
