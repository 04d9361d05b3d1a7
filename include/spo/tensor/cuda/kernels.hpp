// SPDX-License-Identifier: MIT
/// @brief Marks the kernel overloads of spo::cuda as declared (spo::kernels_declared<cuda>); every header that
/// declares CUDA overloads in spo::kernels includes this one.
#pragma once

#include "spo/core/device.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

template <>
inline constexpr bool kernels_declared<cuda> = true;

template <>
inline constexpr bool half_kernels<cuda> = true;

}  // namespace spo::inline kernels
