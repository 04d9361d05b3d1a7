// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::GroupNorm (group_norm_forward, group_norm_backward; contracts in
/// nn/group_norm.hpp): two passes in double per (sample, group), cuda_kernels::group_norm_* of tensor/cuda/norm.hpp.
#pragma once

#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/norm.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

template <StorageScalar T>
void group_norm_forward(const Tensor<T, cuda>& x, const Tensor<T, cuda>* gamma, const Tensor<T, cuda>* beta,
                        Tensor<T, cuda>& y, Tensor<T, cuda>* xhat, Tensor<compute_type_t<T>, cuda>& rstd, double eps) {
  cuda_kernels::group_norm_forward<T>(x.data(), gamma ? gamma->data() : nullptr, beta ? beta->data() : nullptr,
                                      y.data(), xhat ? xhat->data() : nullptr, rstd.data(), x.size(0), x.size(1),
                                      x.shape().numel_from(2), rstd.size(1), eps);
}

/// dgamma and dbeta are accumulated by the same kernels as dx (sums in double, in a fixed order).
template <StorageScalar T>
void group_norm_backward(const Tensor<T, cuda>& dy, const Tensor<T, cuda>& xhat,
                         const Tensor<compute_type_t<T>, cuda>& rstd, const Tensor<T, cuda>* gamma, Tensor<T, cuda>& dx,
                         Tensor<T, cuda>* dgamma, Tensor<T, cuda>* dbeta) {
  cuda_kernels::group_norm_backward<T>(dy.data(), xhat.data(), rstd.data(), gamma ? gamma->data() : nullptr, dx.data(),
                                       dgamma ? dgamma->data() : nullptr, dbeta ? dbeta->data() : nullptr, dy.size(0),
                                       dy.size(1), dy.shape().numel_from(2), rstd.size(1));
}

}  // namespace spo::inline kernels
