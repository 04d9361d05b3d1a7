// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::Upsample2x (upsample_nearest2x_forward, upsample_nearest2x_backward; contracts
/// in nn/upsample.hpp): cuda_kernels::upsample_nearest2x_* of tensor/cuda/pointwise.hpp.
#pragma once

#include "spo/core/device.hpp"
#include "spo/nn/upsample.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

template <StorageScalar T>
void upsample_nearest2x_forward(const Tensor<T, cuda>& x, Tensor<T, cuda>& y) {
  const Shape& s = x.shape();
  cuda_kernels::upsample_nearest2x_forward<T>(x.data(), y.data(), s[0] * s[1], s[2], s[3]);
}

template <StorageScalar T>
void upsample_nearest2x_backward(const Tensor<T, cuda>& dy, Tensor<T, cuda>& dx) {
  const Shape& s = dx.shape();
  cuda_kernels::upsample_nearest2x_backward<T>(dy.data(), dx.data(), s[0] * s[1], s[2], s[3]);
}

}  // namespace spo::inline kernels
