// SPDX-License-Identifier: MIT
/// @brief Devices are types: spo::cpu and spo::cuda tag every tensor, allocator and kernel.
#pragma once

#include <concepts>
#include <string_view>

namespace spo {

/// Host memory, Eigen and oneDNN kernels, OpenMP threads.
struct cpu {
  static constexpr std::string_view name = "cpu";
  static constexpr bool host_accessible = true;
};

/// NVIDIA GPU memory (cudaMalloc through a caching allocator), cuBLAS, cuDNN and spo's kernels.
struct cuda {
  static constexpr std::string_view name = "cuda";
  static constexpr bool host_accessible = false;
};

/*!
  WHAT THIS REPRESENTS
    A place where tensors live and kernels run. A device is an empty tag type; all behaviour is
    selected by overloading or specialising on it.
  REQUIRES
    - D::name is a std::string_view naming the device
    - D::host_accessible is true iff a host pointer dereference of its memory is valid
!*/
template <class D>
concept Device = requires {
  { D::name } -> std::convertible_to<std::string_view>;
  { D::host_accessible } -> std::convertible_to<bool>;
};

/// Scalars that tensors hold: float for training, double for gradient checks.
template <class T>
concept Scalar = std::same_as<T, float> || std::same_as<T, double>;

}  // namespace spo
