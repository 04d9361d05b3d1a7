// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::LayerNorm (layer_norm_forward, layer_norm_backward; contracts in
/// nn/layer_norm.hpp): one warp per row, statistics in double (cuda_kernels::layer_norm_* of tensor/cuda/norm.hpp).
#pragma once

#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/norm.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

template <StorageScalar T>
void layer_norm_forward(const Tensor<T, cuda>& x, const Tensor<T, cuda>* gamma, const Tensor<T, cuda>* beta,
                        Tensor<T, cuda>& y, Tensor<T, cuda>* xhat, Tensor<compute_type_t<T>, cuda>& rstd, double eps) {
  cuda_kernels::layer_norm_forward<T>(x.data(), gamma ? gamma->data() : nullptr, beta ? beta->data() : nullptr,
                                      y.data(), xhat ? xhat->data() : nullptr, rstd.data(), rstd.numel(), x.size(-1),
                                      eps);
}

/// dgamma and dbeta are accumulated by the same kernel as dx (sums in double, in a fixed order).
template <StorageScalar T>
void layer_norm_backward(const Tensor<T, cuda>& dy, const Tensor<T, cuda>& xhat,
                         const Tensor<compute_type_t<T>, cuda>& rstd, const Tensor<T, cuda>* gamma, Tensor<T, cuda>& dx,
                         Tensor<T, cuda>* dgamma, Tensor<T, cuda>* dbeta) {
  cuda_kernels::layer_norm_backward<T>(dy.data(), xhat.data(), rstd.data(), gamma ? gamma->data() : nullptr, dx.data(),
                                       dgamma ? dgamma->data() : nullptr, dbeta ? dbeta->data() : nullptr, rstd.numel(),
                                       dy.size(-1));
}

}  // namespace spo::inline kernels
