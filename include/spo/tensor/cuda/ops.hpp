// SPDX-License-Identifier: MIT
/// @brief Host declarations of spo's basic device operations (fill, random fills, axpy) for code that the C++
/// compiler builds: the definitions live in the .cuh kernels and are instantiated for float and double in
/// tensor/cuda/instantiate/*.cu (library spo::cuda_kernels).
#pragma once

#include "spo/core/device.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// Standard normal numbers from the generator's stream (same numbers as spo::fill_normal on the CPU).
template <Scalar T>
void fill_normal(TensorView<T, cuda> t, Generator& gen, T mean = T(0), T stddev = T(1));
/// Uniform numbers in [lo, hi) from the generator's stream (same numbers as spo::fill_uniform on the CPU).
template <Scalar T>
void fill_uniform(TensorView<T, cuda> t, Generator& gen, T lo = T(0), T hi = T(1));
/// y += alpha * x.
template <Scalar T>
void axpy(T alpha, TensorView<const T, cuda> x, TensorView<T, cuda> y);
/// y *= alpha.
template <Scalar T>
void scale(T alpha, TensorView<T, cuda> y);
/// Every element of t set to value.
template <Scalar T>
void fill(TensorView<T, cuda> t, T value);

}  // namespace spo
