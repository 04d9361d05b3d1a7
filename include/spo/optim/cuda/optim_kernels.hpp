// SPDX-License-Identifier: MIT
/// @brief Host declarations of the optimizer kernels on spo::cuda (the AdamW element update, deterministic sums of
/// squares for gradient norms, in-place scaling) for code that the C++ compiler builds: the definitions live in
/// optim/cuda/optim_kernels.cuh and are instantiated for float and double in optim/cuda/instantiate/optim_kernels.cu.
/// The device-generic optimizers reach them by argument-dependent lookup: optim::AdamW<T, D> the optim::adamw_update
/// overload on its optim::AdamWCoefficients argument, optim::clip_grad_norm the spo:: overloads of sum_of_squares and
/// scale_inplace on TensorView<T, cuda> (their CPU forms are the host loops of optim/clip_grad.hpp).
#pragma once

#include <span>

#include "spo/core/device.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::optim::cuda_kernels {

/// The scalars of one AdamW step, each rounded to T from its double value (as the CPU update rounds them).
template <Scalar T>
struct AdamWScalars {
  T decay;                   // 1 - lr wd
  T beta1, one_minus_beta1;  // beta1, 1 - beta1
  T beta2, one_minus_beta2;  // beta2, 1 - beta2
  T bias_correction2_sqrt;   // sqrt(1 - beta2^t)
  T eps;
  T neg_step;  // -lr / (1 - beta1^t)
};

/*!
  One AdamW step on the device, elementwise, with the CPU update's formula and evaluation order in T
  (optim::adamw_update; torch 1.13 _single_tensor_adamw):
    m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g g
    p <- p decay + neg_step m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
  All four views must have the same shape; p, m and v are updated in place.
!*/
template <Scalar T>
void adamw_update(TensorView<T, cuda> p, TensorView<const T, cuda> g, TensorView<T, cuda> m, TensorView<T, cuda> v,
                  const AdamWScalars<T>& s);

}  // namespace spo::optim::cuda_kernels

namespace spo::optim {

/// The AdamW update of optim::AdamW on device tensors (the spo::cuda overload of optim::adamw_update), from its double
/// coefficients (optim::AdamWCoefficients, or anything with the same fields), each rounded to T as the CPU update does.
template <Scalar T, class Coefficients>
void adamw_update(TensorView<T, cuda> p, TensorView<const T, cuda> g, TensorView<T, cuda> m, TensorView<T, cuda> v,
                  const Coefficients& c) {
  cuda_kernels::adamw_update<T>(
      p, g, m, v,
      cuda_kernels::AdamWScalars<T>{static_cast<T>(c.decay), static_cast<T>(c.beta1), static_cast<T>(c.one_minus_beta1),
                                    static_cast<T>(c.beta2), static_cast<T>(c.one_minus_beta2),
                                    static_cast<T>(c.bias_correction2_sqrt), static_cast<T>(c.eps),
                                    static_cast<T>(-c.step_size)});
}

}  // namespace spo::optim

namespace spo {

/// sum over the views of sum_i x_i^2, accumulated in double in a fixed order (block trees per view, then the views
/// in order on the host), so the result is reproducible for given shapes and values. Waits for the device.
template <Scalar T>
double sum_of_squares(std::span<const TensorView<const T, cuda>> xs);

/// x *= alpha, elementwise.
template <Scalar T>
void scale_inplace(TensorView<T, cuda> x, T alpha);

}  // namespace spo
