// SPDX-License-Identifier: MIT
/// @brief The ContextLayer concept: layers that read a second input (a conditioning context) and return its gradient.
#pragma once

#include <concepts>
#include <string_view>

#include "spo/core/device.hpp"
#include "spo/nn/layer.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/// Gradients of a two-input layer: with respect to the input x and to the context.
template <StorageScalar T, Device D = cpu>
struct ContextGradients {
  Tensor<T, D> dx;
  Tensor<T, D> dcontext;
};

/*!
  WHAT THIS REPRESENTS
    A differentiable map y = f(x, context; parameters) with an explicit backward pass, e.g. cross-attention from
    image tokens x [B, N, C] to text tokens context [B, M, C_ctx] (diffusers' Attention with encoder_hidden_states).
  REQUIRES
    - L::scalar_type is a storage scalar (float, double; half or bfloat16 on a device with 16-bit kernels);
      L::device_type is a Device
    - forward(x, context) returns y. When grad_enabled(), it keeps what backward_context needs (one forward, then
      at most one backward_context).
    - backward_context(dy) requires a preceding forward(x, context) in grad mode and dy.shape() == y.shape().
      It returns {dx, dcontext} with dx.shape() == x.shape() and dcontext.shape() == context.shape(), and ADDS
      d(sum(y*dy))/dp into p.grad of every trainable parameter p.
    - visit_parameters(f, prefix) calls f(name, parameter) once per parameter, with PyTorch state-dict key names
      prefixed by "prefix." (when non-empty).
  NOTE
    The backward is named backward_context, not backward, so that one type can model both Layer (self form,
    backward(dy) -> dx) and ContextLayer: an overload cannot differ only in its return type.
!*/
template <class L>
concept ContextLayer = requires {
  typename L::scalar_type;
  typename L::device_type;
}
&&StorageScalar<typename L::scalar_type>&& Device<typename L::device_type>&& requires(
    L& layer, const Tensor<typename L::scalar_type, typename L::device_type>& x,
    detail::parameter_visitor_archetype<typename L::scalar_type, typename L::device_type> v) {
  { layer.forward(x, x) } -> std::same_as<Tensor<typename L::scalar_type, typename L::device_type>>;
  { layer.backward_context(x) } -> std::same_as<ContextGradients<typename L::scalar_type, typename L::device_type>>;
  layer.visit_parameters(v, std::string_view{});
};

}  // namespace spo::nn
