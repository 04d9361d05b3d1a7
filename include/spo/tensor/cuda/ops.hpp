// SPDX-License-Identifier: MIT
/// @brief Host declarations of spo's basic device operations (fill, random fills, axpy, scale, conversions) for code
/// that the C++ compiler builds: the definitions live in the .cuh kernels and are instantiated for float and double
/// (and the conversions' pairs) in tensor/cuda/instantiate/*.cu (library spo::cuda_kernels).
#pragma once

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"
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
/// y = x converted element by element (convert_scalar, core/half.hpp: bitwise the CPU's cast); instantiated for every
/// pair of float, double, half and bfloat16 with float on one side, and double <-> float.
template <StorageScalar To, StorageScalar From>
void convert(TensorView<const From, cuda> x, TensorView<To, cuda> y);

/// t converted to the storage scalar To on the device (the twin of spo::cast on the CPU).
template <StorageScalar To, StorageScalar From>
Tensor<To, cuda> cast(const Tensor<From, cuda>& t) {
  auto out = Tensor<To, cuda>::uninitialized(t.shape());  // t.shape
  convert<To, From>(t.view(), out.view());
  return out;
}

}  // namespace spo
