// SPDX-License-Identifier: MIT
/// @brief Bias kernels on spo::cuda: y = 1 b^T (the bias term of a Linear), db += 1^T x (its gradient), and the
/// per-channel bias of NCHW planes with its gradient. 16-bit elements are read into float (detail::load) and every
/// output is rounded once (detail::store).
#pragma once

#include <algorithm>
#include <cstdint>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cuda/bias.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/layout.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/cuda/scalar_access.cuh"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// Columns per block and row lanes per column of the column-sum kernel (blockDim = (width, lanes)).
inline constexpr int column_sum_width = 32;
inline constexpr int column_sum_lanes = 8;

template <StorageScalar T>
__global__ void broadcast_rows_kernel(std::int64_t n, std::int64_t cols, const T* b, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] = b[i % cols];
}

/// partial[part, c] = sum of x[r, c] over rows r in [part * rows_per_part, (part + 1) * rows_per_part), in the
/// compute type C.
template <StorageScalar T, class C = compute_type_t<T>>
__global__ void column_partial_sum_kernel(std::int64_t rows, std::int64_t cols, std::int64_t rows_per_part, const T* x,
                                          C* partial) {
  __shared__ C lane_sums[column_sum_lanes][column_sum_width];
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * column_sum_width + threadIdx.x;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_part;
  const std::int64_t r1 = r0 + rows_per_part < rows ? r0 + rows_per_part : rows;
  C acc = C(0);
  if (c < cols)
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += column_sum_lanes) acc += detail::load(x[r * cols + c]);
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int l = 1; l < column_sum_lanes; ++l) acc += lane_sums[l][threadIdx.x];
    partial[static_cast<std::int64_t>(blockIdx.y) * cols + c] = acc;
  }
}

/// db[c] += sum_p partial[p, c] (one rounding to T).
template <StorageScalar T, class C = compute_type_t<T>>
__global__ void column_total_kernel(std::int64_t parts, std::int64_t cols, const C* partial, T* db) {
  for (std::int64_t c = detail::grid_first(); c < cols; c += detail::grid_stride()) {
    C acc = C(0);
    for (std::int64_t p = 0; p < parts; ++p) acc += partial[p * cols + c];
    db[c] = detail::store<T>(detail::load(db[c]) + acc);
  }
}

/// y[i] += b[(i / spatial) % channels] over n = batch channels spatial elements.
template <StorageScalar T>
__global__ void add_channel_bias_kernel(std::int64_t n, std::int64_t channels, std::int64_t spatial, const T* b, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride())
    y[i] = detail::store<T>(detail::load(y[i]) + detail::load(b[(i / spatial) % channels]));
}

/// Block c: db[c] += sum over the batch planes of channel c (blockDim.x a multiple of 32).
template <StorageScalar T>
__global__ void channel_sum_kernel(std::int64_t batch, std::int64_t channels, std::int64_t spatial, const T* dy,
                                   T* db) {
  const std::int64_t c = blockIdx.x, n = batch * spatial;
  double acc[1] = {0.0};
  for (std::int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    const std::int64_t b = k / spatial, s = k - b * spatial;
    acc[0] += static_cast<double>(detail::load(dy[(b * channels + c) * spatial + s]));
  }
  layout_detail::block_sum(acc);
  if (threadIdx.x == 0)
    db[c] = detail::store<T>(static_cast<compute_type_t<T>>(static_cast<double>(detail::load(db[c])) + acc[0]));
}

template <StorageScalar T>
void broadcast_rows(std::int64_t rows, std::int64_t cols, const T* b, T* y, cudaStream_t stream) {
  SPO_CHECK(rows >= 0 && cols >= 0, "cuda_kernels::broadcast_rows: negative extents " << rows << " x " << cols);
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  SPO_CHECK(b != nullptr && y != nullptr, "cuda_kernels::broadcast_rows: null pointer");
  broadcast_rows_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d, 0, stream>>>(n, cols, b, y);
  SPO_CUDA_CHECK_LAUNCH("broadcast_rows_kernel");
}

template <StorageScalar T>
void column_sum_accumulate(std::int64_t rows, std::int64_t cols, const T* x, T* db, cudaStream_t stream) {
  SPO_CHECK(rows >= 0 && cols >= 0, "cuda_kernels::column_sum_accumulate: negative extents " << rows << " x " << cols);
  if (rows == 0 || cols == 0) return;
  SPO_CHECK(x != nullptr && db != nullptr, "cuda_kernels::column_sum_accumulate: null pointer");
  // About 256 rows per part, at most 256 parts: enough blocks to fill the device, few partials to add.
  const std::int64_t parts = std::clamp<std::int64_t>((rows + 255) / 256, 1, 256);
  const std::int64_t rows_per_part = (rows + parts - 1) / parts;
  using C = compute_type_t<T>;
  auto partial = Tensor<C, cuda>::uninitialized(Shape{parts, cols});  // [parts, cols]
  const dim3 grid(static_cast<unsigned>((cols + column_sum_width - 1) / column_sum_width),
                  static_cast<unsigned>(parts));
  const dim3 block(column_sum_width, column_sum_lanes);
  column_partial_sum_kernel<T, C><<<grid, block, 0, stream>>>(rows, cols, rows_per_part, x, partial.data());
  SPO_CUDA_CHECK_LAUNCH("column_partial_sum_kernel");
  column_total_kernel<T, C>
      <<<cuda_runtime::grid_1d(cols), cuda_runtime::block_1d, 0, stream>>>(parts, cols, partial.data(), db);
  SPO_CUDA_CHECK_LAUNCH("column_total_kernel");
}

template <StorageScalar T>
void add_channel_bias(std::int64_t batch, std::int64_t channels, std::int64_t spatial, const T* b, T* y,
                      cudaStream_t stream) {
  SPO_CHECK(batch >= 0 && channels >= 0 && spatial >= 0,
            "cuda_kernels::add_channel_bias: negative extents " << batch << " x " << channels << " x " << spatial);
  const std::int64_t n = batch * channels * spatial;
  if (n == 0) return;
  SPO_CHECK(b != nullptr && y != nullptr, "cuda_kernels::add_channel_bias: null pointer");
  add_channel_bias_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d, 0, stream>>>(n, channels, spatial, b, y);
  SPO_CUDA_CHECK_LAUNCH("add_channel_bias_kernel");
}

template <StorageScalar T>
void channel_sum_accumulate(std::int64_t batch, std::int64_t channels, std::int64_t spatial, const T* dy, T* db,
                            cudaStream_t stream) {
  SPO_CHECK(batch >= 0 && channels >= 0 && spatial >= 0, "cuda_kernels::channel_sum_accumulate: negative extents "
                                                             << batch << " x " << channels << " x " << spatial);
  if (channels == 0) return;
  SPO_CHECK(db != nullptr && (dy != nullptr || batch * spatial == 0),
            "cuda_kernels::channel_sum_accumulate: null pointer");
  SPO_CHECK(channels < (std::int64_t{1} << 31),
            "cuda_kernels::channel_sum_accumulate: " << channels << " channels exceed the grid");
  channel_sum_kernel<T><<<static_cast<unsigned>(channels), 256, 0, stream>>>(batch, channels, spatial, dy, db);
  SPO_CUDA_CHECK_LAUNCH("channel_sum_kernel");
}

}  // namespace spo::cuda_kernels
