// SPDX-License-Identifier: MIT
/// @brief The Layer concept: what every trainable building block provides (dlib-style contract).
#pragma once

#include <concepts>
#include <string_view>

#include "spo/core/device.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

namespace detail {
/// The weakest visitor a layer must accept: called as f(name, parameter).
template <class T, class D>
struct parameter_visitor_archetype {
  void operator()(std::string_view, Parameter<T, D>&) const {}
};
}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    A differentiable map y = f(x; parameters) with an explicit backward pass.
  REQUIRES
    - L::scalar_type is a storage scalar (float, double; half or bfloat16 on a device with 16-bit kernels);
      L::device_type is a Device
    - forward(x) returns y. When grad_enabled(), it keeps what backward needs (the layer is stateful between
      forward and backward, like an autograd node; one forward, then at most one backward).
    - backward(dy) requires a preceding forward(x) in grad mode and dy.shape() == y.shape(). It returns dx
      (dx.shape() == x.shape()) and ADDS d(sum(y*dy))/dp into p.grad of every trainable parameter p.
    - visit_parameters(f, prefix) calls f(name, parameter) once per parameter, with names equal to the
      PyTorch state-dict keys of the equivalent torch module, each prefixed by "prefix." (when non-empty).
!*/
template <class L>
concept Layer = requires {
  typename L::scalar_type;
  typename L::device_type;
}
&&StorageScalar<typename L::scalar_type>&& Device<typename L::device_type>&& requires(
    L& layer, const Tensor<typename L::scalar_type, typename L::device_type>& x,
    detail::parameter_visitor_archetype<typename L::scalar_type, typename L::device_type> v) {
  { layer.forward(x) } -> std::same_as<Tensor<typename L::scalar_type, typename L::device_type>>;
  { layer.backward(x) } -> std::same_as<Tensor<typename L::scalar_type, typename L::device_type>>;
  layer.visit_parameters(v, std::string_view{});
};

/// Zeroes the gradient of every trainable parameter of a layer.
template <class L>
void zero_grad(L& layer) {
  layer.visit_parameters([](std::string_view, auto& p) { p.zero_grad(); }, {});
}

/// Number of scalar parameters (all, or only trainable ones).
template <class L>
std::int64_t parameter_count(L& layer, bool trainable_only = false) {
  std::int64_t n = 0;
  layer.visit_parameters(
      [&](std::string_view, auto& p) {
        if (!trainable_only || p.trainable) n += p.value.numel();
      },
      {});
  return n;
}

/// Marks every parameter of a layer trainable or frozen.
template <class L>
void set_trainable(L& layer, bool on) {
  layer.visit_parameters([&](std::string_view, auto& p) { p.set_trainable(on); }, {});
}

}  // namespace spo::nn
