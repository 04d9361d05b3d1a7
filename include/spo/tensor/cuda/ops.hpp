// SPDX-License-Identifier: MIT
/// @brief Host declarations of spo's basic device operations (fill, random fills, axpy, scale, conversions) for code
/// that the C++ compiler builds: the definitions live in the .cuh kernels and are instantiated in
/// tensor/cuda/instantiate/*.cu (library spo::cuda_kernels): the random fills for float and double, axpy, scale and
/// fill for float, double, half and bfloat16 (16-bit elements computed in float, rounded once), and the conversions'
/// pairs.
#pragma once

#include <concepts>
#include <cstddef>

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// Standard normal numbers from the generator's stream (same numbers as spo::fill_normal on the CPU).
template <Scalar T>
void fill_normal(TensorView<T, cuda> t, Generator& gen, T mean = T(0), T stddev = T(1));
/// Uniform numbers in [lo, hi) from the generator's stream (same numbers as spo::fill_uniform on the CPU).
template <Scalar T>
void fill_uniform(TensorView<T, cuda> t, Generator& gen, T lo = T(0), T hi = T(1));
/// y += alpha * x (alpha in T's compute type).
template <StorageScalar T>
void axpy(compute_type_t<T> alpha, TensorView<const T, cuda> x, TensorView<T, cuda> y);
/// y *= alpha (alpha in T's compute type).
template <StorageScalar T>
void scale(compute_type_t<T> alpha, TensorView<T, cuda> y);
/// Every element of t set to value.
template <StorageScalar T>
void fill(TensorView<T, cuda> t, T value);
/// y = x converted element by element (convert_scalar, core/half.hpp: bitwise the CPU's cast); instantiated for every
/// pair of float, double, half and bfloat16 with float on one side, and double <-> float.
template <StorageScalar To, StorageScalar From>
void convert(TensorView<const From, cuda> x, TensorView<To, cuda> y);

/// Normal numbers drawn as float (the numbers of fill_normal<float>) and rounded to the 16-bit T: a 16-bit layer
/// starts from its float twin's initial values, rounded.
template <HalfScalar T>
void fill_normal(TensorView<T, cuda> t, Generator& gen, float mean = 0.f, float stddev = 1.f) {
  auto f = Tensor<float, cuda>::uninitialized(t.shape());  // t.shape
  fill_normal<float>(f.view(), gen, mean, stddev);
  convert<T, float>(f.view(), t);
}
/// Uniform numbers in [lo, hi) drawn as float (the numbers of fill_uniform<float>) and rounded to the 16-bit T.
template <HalfScalar T>
void fill_uniform(TensorView<T, cuda> t, Generator& gen, float lo = 0.f, float hi = 1.f) {
  auto f = Tensor<float, cuda>::uninitialized(t.shape());  // t.shape
  fill_uniform<float>(f.view(), gen, lo, hi);
  convert<T, float>(f.view(), t);
}

/// t converted to the storage scalar To on the device (the twin of spo::cast on the CPU); To == From: a copy.
template <StorageScalar To, StorageScalar From>
Tensor<To, cuda> cast(const Tensor<From, cuda>& t) {
  auto out = Tensor<To, cuda>::uninitialized(t.shape());  // t.shape
  if constexpr (std::same_as<To, From>)
    memory_ops<cuda>::copy(out.data(), t.data(), static_cast<std::size_t>(t.numel()) * sizeof(To));
  else
    convert<To, From>(t.view(), out.view());
  return out;
}

}  // namespace spo
