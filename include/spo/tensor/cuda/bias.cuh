// SPDX-License-Identifier: MIT
/// @brief Bias kernels on spo::cuda: y = 1 b^T (the bias term of a Linear) and db += 1^T x (its gradient).
#pragma once

#include <algorithm>
#include <cstdint>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cuda/bias.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// Columns per block and row lanes per column of the column-sum kernel (blockDim = (width, lanes)).
inline constexpr int column_sum_width = 32;
inline constexpr int column_sum_lanes = 8;

template <Scalar T>
__global__ void broadcast_rows_kernel(std::int64_t n, std::int64_t cols, const T* b, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] = b[i % cols];
}

/// partial[part, c] = sum of x[r, c] over rows r in [part * rows_per_part, (part + 1) * rows_per_part).
template <Scalar T>
__global__ void column_partial_sum_kernel(std::int64_t rows, std::int64_t cols, std::int64_t rows_per_part, const T* x,
                                          T* partial) {
  __shared__ T lane_sums[column_sum_lanes][column_sum_width];
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * column_sum_width + threadIdx.x;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_part;
  const std::int64_t r1 = r0 + rows_per_part < rows ? r0 + rows_per_part : rows;
  T acc = T(0);
  if (c < cols)
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += column_sum_lanes) acc += x[r * cols + c];
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int l = 1; l < column_sum_lanes; ++l) acc += lane_sums[l][threadIdx.x];
    partial[static_cast<std::int64_t>(blockIdx.y) * cols + c] = acc;
  }
}

/// db[c] += sum_p partial[p, c].
template <Scalar T>
__global__ void column_total_kernel(std::int64_t parts, std::int64_t cols, const T* partial, T* db) {
  for (std::int64_t c = detail::grid_first(); c < cols; c += detail::grid_stride()) {
    T acc = T(0);
    for (std::int64_t p = 0; p < parts; ++p) acc += partial[p * cols + c];
    db[c] += acc;
  }
}

template <Scalar T>
void broadcast_rows(std::int64_t rows, std::int64_t cols, const T* b, T* y, cudaStream_t stream) {
  SPO_CHECK(rows >= 0 && cols >= 0, "cuda_kernels::broadcast_rows: negative extents " << rows << " x " << cols);
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  SPO_CHECK(b != nullptr && y != nullptr, "cuda_kernels::broadcast_rows: null pointer");
  broadcast_rows_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d, 0, stream>>>(n, cols, b, y);
  SPO_CUDA_CHECK_LAUNCH("broadcast_rows_kernel");
}

template <Scalar T>
void column_sum_accumulate(std::int64_t rows, std::int64_t cols, const T* x, T* db, cudaStream_t stream) {
  SPO_CHECK(rows >= 0 && cols >= 0, "cuda_kernels::column_sum_accumulate: negative extents " << rows << " x " << cols);
  if (rows == 0 || cols == 0) return;
  SPO_CHECK(x != nullptr && db != nullptr, "cuda_kernels::column_sum_accumulate: null pointer");
  // About 256 rows per part, at most 256 parts: enough blocks to fill the device, few partials to add.
  const std::int64_t parts = std::clamp<std::int64_t>((rows + 255) / 256, 1, 256);
  const std::int64_t rows_per_part = (rows + parts - 1) / parts;
  auto partial = Tensor<T, cuda>::uninitialized(Shape{parts, cols});  // [parts, cols]
  const dim3 grid(static_cast<unsigned>((cols + column_sum_width - 1) / column_sum_width),
                  static_cast<unsigned>(parts));
  const dim3 block(column_sum_width, column_sum_lanes);
  column_partial_sum_kernel<T><<<grid, block, 0, stream>>>(rows, cols, rows_per_part, x, partial.data());
  SPO_CUDA_CHECK_LAUNCH("column_partial_sum_kernel");
  column_total_kernel<T>
      <<<cuda_runtime::grid_1d(cols), cuda_runtime::block_1d, 0, stream>>>(parts, cols, partial.data(), db);
  SPO_CUDA_CHECK_LAUNCH("column_total_kernel");
}

}  // namespace spo::cuda_kernels
