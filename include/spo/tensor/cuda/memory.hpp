// SPDX-License-Identifier: MIT
/// @brief memory_ops<cuda> (so that Tensor<T, cuda> works) and host <-> device copies of tensors.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"
#include "spo/tensor/cuda/allocator.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// Device-to-device bulk operations, ordered on the legacy default stream (asynchronous to the host).
template <>
struct memory_ops<cuda> {
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) SPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr));
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes) SPO_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, nullptr));
  }
};

/// Copies a host view into a device view of the same shape (returns when the copy is done).
template <StorageScalar T>
void copy_to_device(TensorView<const T, cpu> src, TensorView<T, cuda> dst) {
  check_same_shape(src.shape(), dst.shape(), "copy_to_device");
  const std::size_t bytes = static_cast<std::size_t>(src.numel()) * sizeof(T);
  if (bytes) SPO_CUDA_CHECK(cudaMemcpy(dst.data(), src.data(), bytes, cudaMemcpyHostToDevice));
}

/// Copies a device view into a host view of the same shape (waits for earlier work on the default stream).
template <StorageScalar T>
void copy_to_host(TensorView<const T, cuda> src, TensorView<T, cpu> dst) {
  check_same_shape(src.shape(), dst.shape(), "copy_to_host");
  const std::size_t bytes = static_cast<std::size_t>(src.numel()) * sizeof(T);
  if (bytes) SPO_CUDA_CHECK(cudaMemcpy(dst.data(), src.data(), bytes, cudaMemcpyDeviceToHost));
}

/// A device copy of a host tensor.
template <StorageScalar T>
Tensor<T, cuda> to_device(const Tensor<T, cpu>& host) {
  auto dev = Tensor<T, cuda>::uninitialized(host.shape());  // host.shape
  copy_to_device<T>(host.view(), dev.view());
  return dev;
}

/// A host copy of a device tensor.
template <StorageScalar T>
Tensor<T, cpu> to_host(const Tensor<T, cuda>& dev) {
  auto host = Tensor<T, cpu>::uninitialized(dev.shape());  // dev.shape
  copy_to_host<T>(dev.view(), host.view());
  return host;
}

}  // namespace spo
