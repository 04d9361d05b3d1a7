// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::GlobalAvgPool (global_avg_pool_forward, global_avg_pool_backward; contracts in
/// nn/pooling.hpp): cuda_kernels::sum_planes and broadcast_planes of tensor/cuda/layout.hpp.
#pragma once

#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/nn/pooling.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

template <StorageScalar T>
void global_avg_pool_forward(const Tensor<T, cuda>& x, Tensor<T, cuda>& y) {
  const std::int64_t spatial = x.shape().numel_from(2);
  cuda_kernels::sum_planes<T>(x.data(), y.data(), y.numel(), spatial,
                              compute_type_t<T>(1) / static_cast<compute_type_t<T>>(spatial));
}

template <StorageScalar T>
void global_avg_pool_backward(const Tensor<T, cuda>& dy, Tensor<T, cuda>& dx) {
  const std::int64_t spatial = dx.shape().numel_from(2);
  cuda_kernels::broadcast_planes<T>(dy.data(), dx.data(), dy.numel(), spatial,
                                    compute_type_t<T>(1) / static_cast<compute_type_t<T>>(spatial));
}

}  // namespace spo::inline kernels
