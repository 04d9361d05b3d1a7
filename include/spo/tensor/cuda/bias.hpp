// SPDX-License-Identifier: MIT
/// @brief Host declarations of the bias kernels of spo::cuda layers: a row broadcast (y = 1 b^T), a deterministic
/// column sum (db += 1^T x), and their per-channel forms over NCHW planes (the bias of a convolution); definitions in
/// bias.cuh, instantiated for float, double, half and bfloat16 in instantiate/bias.cu. Sums run in the compute type
/// (compute_type_t: float for the 16-bit scalars) and are rounded once.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"

namespace spo::cuda_kernels {

/// y[r, c] = b[c] for r < rows, c < cols; y row-major [rows, cols], b [cols] (device pointers).
template <StorageScalar T>
void broadcast_rows(std::int64_t rows, std::int64_t cols, const T* b, T* y, cudaStream_t stream = nullptr);

/// db[c] += sum_r x[r, c] for c < cols; x row-major [rows, cols]. Partial sums over fixed row ranges are added in
/// a fixed order, so the result does not depend on scheduling (no atomics).
template <StorageScalar T>
void column_sum_accumulate(std::int64_t rows, std::int64_t cols, const T* x, T* db, cudaStream_t stream = nullptr);

/// y[n, c, s] += b[c] over y [batch, channels, spatial] (added in the compute type, rounded once).
template <StorageScalar T>
void add_channel_bias(std::int64_t batch, std::int64_t channels, std::int64_t spatial, const T* b, T* y,
                      cudaStream_t stream = nullptr);

/// db[c] += sum_{n, s} dy[n, c, s] over dy [batch, channels, spatial]: one block per channel, each thread's strided
/// sum then a block reduction in double, in a fixed order (no atomics); db is rounded once.
template <StorageScalar T>
void channel_sum_accumulate(std::int64_t batch, std::int64_t channels, std::int64_t spatial, const T* dy, T* db,
                            cudaStream_t stream = nullptr);

}  // namespace spo::cuda_kernels
