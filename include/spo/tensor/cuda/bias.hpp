// SPDX-License-Identifier: MIT
/// @brief Host declarations of the bias kernels of spo::cuda layers: a row broadcast (y = 1 b^T) and a deterministic
/// column sum (db += 1^T x); definitions in bias.cuh, instantiated for float and double in instantiate/bias.cu.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "spo/core/device.hpp"

namespace spo::cuda_kernels {

/// y[r, c] = b[c] for r < rows, c < cols; y row-major [rows, cols], b [cols] (device pointers).
template <Scalar T>
void broadcast_rows(std::int64_t rows, std::int64_t cols, const T* b, T* y, cudaStream_t stream = nullptr);

/// db[c] += sum_r x[r, c] for c < cols; x row-major [rows, cols]. Partial sums over fixed row ranges are added in
/// a fixed order, so the result does not depend on scheduling (no atomics).
template <Scalar T>
void column_sum_accumulate(std::int64_t rows, std::int64_t cols, const T* x, T* db, cudaStream_t stream = nullptr);

}  // namespace spo::cuda_kernels
