// SPDX-License-Identifier: MIT
/// @brief Device-generic element copies and transfers between devices, for code templated on the device type.
#pragma once

#include <concepts>
#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// Copies n elements from src to dst, both in memory of device D (ordered on D's default stream).
template <Device D, Scalar T>
void copy_elements(const T* src, std::int64_t n, T* dst) {
  memory_ops<D>::copy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
}

/*!
  A tensor on device To with the contents of x: a copy on the same device, else the device's transfer (to_host /
  to_device, found by argument-dependent lookup once the device's header, e.g. spo/cuda.hpp, is included).
!*/
template <Device To, Scalar T, Device From>
Tensor<T, To> transfer(const Tensor<T, From>& x) {
  if constexpr (std::same_as<To, From>)
    return x;
  else if constexpr (std::same_as<To, cpu>)
    return to_host(x);
  else
    return to_device(x);
}

/// Standard normal numbers on device D from the generator's stream (the same numbers on every device).
template <Scalar T, Device D>
Tensor<T, D> random_normal(Shape shape, Generator& gen) {
  auto t = Tensor<T, D>::uninitialized(shape);  // shape
  fill_normal(t.view(), gen, T(0), T(1));
  return t;
}

}  // namespace spo
