// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::Activation (SiLU, GELU, GELU-tanh, QuickGELU) and nn::GEGLU
/// (activation_forward, activation_backward, gated_forward, gated_backward; contracts in nn/activation.hpp): the
/// per-element formulas of the CPU functions (cuda_kernels::SiluOp, GeluOp, GeluTanhOp, QuickGeluOp of
/// tensor/cuda/pointwise.hpp).
#pragma once

#include <concepts>
#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// The device form of an ActivationFunction (nn::SiLUFunction, nn::GELUFunction, nn::GELUTanhFunction,
/// nn::QuickGELUFunction).
template <nn::ActivationFunction F>
constexpr PointwiseFunction pointwise_function() {
  if constexpr (std::same_as<F, nn::SiLUFunction>)
    return PointwiseFunction::silu;
  else if constexpr (std::same_as<F, nn::GELUFunction>)
    return PointwiseFunction::gelu;
  else if constexpr (std::same_as<F, nn::GELUTanhFunction>)
    return PointwiseFunction::gelu_tanh;
  else if constexpr (std::same_as<F, nn::QuickGELUFunction>)
    return PointwiseFunction::quick_gelu;
  else
    static_assert(std::same_as<F, void>,
                  "ActivationFunction F has no spo::cuda kernel (SiLU, GELU, GELUTanh, QuickGELU)");
}

}  // namespace spo::cuda_kernels

namespace spo::inline kernels {

template <nn::ActivationFunction F, StorageScalar T>
void activation_forward(F, const Tensor<T, cuda>& x, Tensor<T, cuda>& y, Tensor<T, cuda>* saved) {
  cuda_kernels::pointwise_forward<T>(cuda_kernels::pointwise_function<F>(), x.data(), y.data(),
                                     saved ? saved->data() : nullptr, x.numel());
}

template <nn::ActivationFunction F, StorageScalar T>
void activation_backward(F, const Tensor<T, cuda>& x, const Tensor<T, cuda>& dy, Tensor<T, cuda>& dx) {
  cuda_kernels::pointwise_backward<T>(cuda_kernels::pointwise_function<F>(), x.data(), dy.data(), dx.data(),
                                      dy.numel());
}

template <nn::ActivationFunction F, StorageScalar T>
void gated_forward(F, const Tensor<T, cuda>& h, Tensor<T, cuda>& y) {
  const std::int64_t out = y.size(-1), rows = out ? y.numel() / out : 0;
  cuda_kernels::gated_forward<T>(cuda_kernels::pointwise_function<F>(), h.data(), y.data(), rows, out);
}

template <nn::ActivationFunction F, StorageScalar T>
void gated_backward(F, const Tensor<T, cuda>& h, const Tensor<T, cuda>& dy, Tensor<T, cuda>& dh) {
  const std::int64_t out = dy.size(-1), rows = out ? dy.numel() / out : 0;
  cuda_kernels::gated_backward<T>(cuda_kernels::pointwise_function<F>(), h.data(), dy.data(), dh.data(), rows, out);
}

}  // namespace spo::inline kernels
