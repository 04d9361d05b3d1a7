// SPDX-License-Identifier: MIT
/// @brief Loads and stores of storage scalars in device code: a 16-bit value is read into float and a float is written
/// back rounded to nearest even by the hardware's conversion instructions; float and double pass through unchanged.
#pragma once

#include <concepts>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "spo/core/half.hpp"

namespace spo::cuda_kernels::detail {

/// x in its compute type (compute_type_t<T>: float for half and bfloat16).
template <StorageScalar T>
__device__ __forceinline__ compute_type_t<T> load(T x) {
  if constexpr (std::same_as<T, half>)
    return __half2float(__ushort_as_half(x.bits));
  else if constexpr (std::same_as<T, bfloat16>)
    return __bfloat162float(__ushort_as_bfloat16(x.bits));
  else
    return x;
}

/// v rounded to T (to nearest even: the values of convert_scalar, NaN payloads aside).
template <StorageScalar T>
__device__ __forceinline__ T store(compute_type_t<T> v) {
  if constexpr (std::same_as<T, half>)
    return T::from_bits(__half_as_ushort(__float2half_rn(v)));
  else if constexpr (std::same_as<T, bfloat16>)
    return T::from_bits(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
  else
    return v;
}

}  // namespace spo::cuda_kernels::detail
