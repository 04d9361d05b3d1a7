// SPDX-License-Identifier: MIT
/// @brief Host declarations of the GroupNorm and LayerNorm kernels of spo::cuda (device pointers; definitions in
/// norm.cuh, instantiated for float, double, half and bfloat16 in instantiate/norm.cu). The formulas are those of
/// cpu_kernels::group_norm_* (nn/group_norm.hpp) and cpu_kernels::layer_norm_* (nn/layer_norm.hpp). For the 16-bit
/// scalars the arithmetic is in float and the statistics in double, rstd is kept in float (compute_type_t), and
/// only y, xhat, dx and the accumulated affine gradients are rounded to 16 bits.
#pragma once

#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"

namespace spo::cuda_kernels {

/*!
  REQUIRES
    - x, y: [batch, channels, spatial]; channels % groups == 0; gamma, beta: [channels] or both null (no affine);
      xhat: like x, or null; rstd: [batch * groups] in T's compute type
  ENSURES
    - per (b, g), over the cg = channels / groups channels of the group and all spatial positions (n = cg spatial):
      mu = mean(x), var = mean((x - mu)^2) (biased; two passes over chunks of the group with sums in double, the
      chunks' means and squared deviations merged exactly), rstd = 1 / sqrt(var + eps);
      y = gamma[c] xhat + beta[c] with xhat = (x - mu) rstd (written when xhat is not null)
!*/
template <StorageScalar T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* xhat, compute_type_t<T>* rstd,
                        std::int64_t batch, std::int64_t channels, std::int64_t spatial, std::int64_t groups,
                        double eps);

/*!
  REQUIRES
    - dy, xhat: [batch, channels, spatial], rstd [batch * groups] from group_norm_forward; gamma [channels] or null;
      dgamma, dbeta: [channels] or null (each accumulated only when not null)
  ENSURES
    - dx = rstd (gamma dy - mean_g(gamma dy) - xhat mean_g(gamma dy xhat))   (closed form, biased variance)
    - dgamma[c] += sum_{b, s} dy xhat, dbeta[c] += sum_{b, s} dy   (sums in double, in a fixed order)
!*/
template <StorageScalar T>
void group_norm_backward(const T* dy, const T* xhat, const compute_type_t<T>* rstd, const T* gamma, T* dx, T* dgamma,
                         T* dbeta, std::int64_t batch, std::int64_t channels, std::int64_t spatial,
                         std::int64_t groups);

/*!
  REQUIRES
    - x, y: [rows, dim]; gamma, beta: [dim] or both null; xhat: [rows, dim] or null; rstd: [rows]
  ENSURES
    - per row: mu = mean(x), var = mean((x - mu)^2), rstd = 1 / sqrt(var + eps) (statistics in double),
      xhat = (x - mu) rstd, y = gamma xhat + beta
!*/
template <StorageScalar T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* xhat, compute_type_t<T>* rstd,
                        std::int64_t rows, std::int64_t dim, double eps);

/*!
  ENSURES
    - dx = rstd (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)) per row (closed form)
    - dgamma[j] += sum_rows dy xhat, dbeta[j] += sum_rows dy when not null (sums in double, in a fixed order)
!*/
template <StorageScalar T>
void layer_norm_backward(const T* dy, const T* xhat, const compute_type_t<T>* rstd, const T* gamma, T* dx, T* dgamma,
                         T* dbeta, std::int64_t rows, std::int64_t dim);

}  // namespace spo::cuda_kernels
