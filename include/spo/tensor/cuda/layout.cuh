// SPDX-License-Identifier: MIT
/// @brief Layout kernels on spo::cuda (channel concat/split as strided copies, batched transpose, per-plane bias, sums,
/// broadcasts) and the block reduction that the norm kernels share; host declarations in layout.hpp. The copies move
/// 16-bit scalars as their raw bits; the arithmetic reads them into float and rounds each output once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/cuda/scalar_access.cuh"

namespace spo::cuda_kernels::layout_detail {

/// The type a copying kernel moves T as: T itself, or the raw 16 bits of half and bfloat16 (a __shared__ buffer
/// needs a trivially constructible type).
template <StorageScalar T>
using moved_type_t = std::conditional_t<HalfScalar<T>, std::uint16_t, T>;

template <StorageScalar T>
const moved_type_t<T>* moved(const T* p) {
  return reinterpret_cast<const moved_type_t<T>*>(p);
}
template <StorageScalar T>
moved_type_t<T>* moved(T* p) {
  return reinterpret_cast<moved_type_t<T>*>(p);
}

/// Threads per block of the per-plane reductions (a multiple of 32, at most 1024).
inline constexpr int reduce_block = 256;
/// Largest row pitch (bytes) given to cudaMemcpy2DAsync (cudaDeviceProp::memPitch is 2^31 - 1); longer rows are
/// copied by a kernel.
inline constexpr std::size_t max_pitch = (std::size_t{1} << 31) - 1;
/// Largest gridDim.y / gridDim.z.
inline constexpr std::int64_t max_grid_yz = 65535;
/// Side of the square tiles of batched_transpose and rows of threads per tile.
inline constexpr int tile = 32;
inline constexpr int tile_rows = 8;

__device__ inline double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Replaces v[k] by its sum over the block, in every thread. blockDim.x is a multiple of 32 (at most 1024) and
/// every thread of the block calls it; it may be called repeatedly in one kernel.
template <int N>
__device__ inline void block_sum(double (&v)[N]) {
  __shared__ double partial[N][32];
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int warps = static_cast<int>(blockDim.x) >> 5;
  for (int k = 0; k < N; ++k) v[k] = warp_sum(v[k]);
  __syncthreads();  // a previous call's reads of `partial` are done
  if (lane == 0)
    for (int k = 0; k < N; ++k) partial[k][warp] = v[k];
  __syncthreads();
  for (int k = 0; k < N; ++k) v[k] = warp_sum(lane < warps ? partial[k][lane] : 0.0);
}

/// Launch geometry of the per-row / per-plane kernels: blockIdx.y (strided by gridDim.y) picks the row, and the
/// x-dimension of the grid strides over the row's elements, so no element index is divided.
inline dim3 rows_grid(std::int64_t outer, std::int64_t row) {
  const std::int64_t x = cuda_runtime::grid_1d(row);
  return dim3(static_cast<unsigned>(std::min<std::int64_t>(x, 1 << 16)),
              static_cast<unsigned>(std::clamp<std::int64_t>(outer, 1, max_grid_yz)));
}

/// One block row per plane (blockIdx.x, so up to 2^31 - 1 planes), chunks of the plane along blockIdx.y.
inline dim3 plane_grid(std::int64_t planes, std::int64_t spatial, int block) {
  SPO_CHECK(planes < (std::int64_t{1} << 31), "cuda_kernels: " << planes << " planes exceed the launch grid");
  const std::int64_t per_block = 4 * static_cast<std::int64_t>(block);
  const std::int64_t chunks = std::clamp<std::int64_t>((spatial + per_block - 1) / per_block, 1, max_grid_yz);
  return dim3(static_cast<unsigned>(planes), static_cast<unsigned>(chunks));
}

/// Index of this thread within a plane under plane_grid, and the stride.
__device__ inline std::int64_t plane_first() {
  return static_cast<std::int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
}
__device__ inline std::int64_t plane_stride() { return static_cast<std::int64_t>(gridDim.y) * blockDim.x; }

template <class T>
__global__ void concat_rows_kernel(const T* a, const T* b, T* out, std::int64_t outer, std::int64_t na,
                                   std::int64_t nb) {
  const std::int64_t row = na + nb;
  for (std::int64_t i = blockIdx.y; i < outer; i += gridDim.y)
    for (std::int64_t r = detail::grid_first(); r < row; r += detail::grid_stride())
      out[i * row + r] = r < na ? a[i * na + r] : b[i * nb + (r - na)];
}

template <class T>
__global__ void split_rows_kernel(const T* x, T* a, T* b, std::int64_t outer, std::int64_t na, std::int64_t nb) {
  const std::int64_t row = na + nb;
  for (std::int64_t i = blockIdx.y; i < outer; i += gridDim.y)
    for (std::int64_t r = detail::grid_first(); r < row; r += detail::grid_stride()) {
      if (r < na)
        a[i * na + r] = x[i * row + r];
      else
        b[i * nb + (r - na)] = x[i * row + r];
    }
}

/// Block (tile, tile_rows), grid (ceil(cols / tile), ceil(rows / tile), batch): tile[j][i] = x[r0 + j, c0 + i], then
/// out[c0 + j, r0 + i] = tile[i][j] = x[r0 + i, c0 + j].
template <class T>
__global__ void batched_transpose_kernel(const T* x, T* out, std::int64_t rows, std::int64_t cols) {
  __shared__ T buffer[tile][tile + 1];
  const std::int64_t plane = rows * cols;
  const T* xb = x + static_cast<std::int64_t>(blockIdx.z) * plane;
  T* ob = out + static_cast<std::int64_t>(blockIdx.z) * plane;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * tile,
                     c0 = static_cast<std::int64_t>(blockIdx.x) * tile;
  const int tx = static_cast<int>(threadIdx.x);
  for (int j = static_cast<int>(threadIdx.y); j < tile; j += tile_rows) {
    const std::int64_t r = r0 + j, c = c0 + tx;
    if (r < rows && c < cols) buffer[j][tx] = xb[r * cols + c];
  }
  __syncthreads();
  for (int j = static_cast<int>(threadIdx.y); j < tile; j += tile_rows) {
    const std::int64_t c = c0 + j, r = r0 + tx;
    if (c < cols && r < rows) ob[c * rows + r] = buffer[tx][j];
  }
}

/// Under plane_grid.
template <StorageScalar T>
__global__ void add_plane_bias_kernel(T* x, const T* v, std::int64_t spatial) {
  const std::int64_t p = blockIdx.x;
  const compute_type_t<T> add = detail::load(v[p]);
  T* xp = x + p * spatial;
  for (std::int64_t i = plane_first(); i < spatial; i += plane_stride())
    xp[i] = detail::store<T>(detail::load(xp[i]) + add);
}

/// One block per plane.
template <StorageScalar T>
__global__ void sum_planes_kernel(const T* x, T* out, std::int64_t spatial, compute_type_t<T> scale) {
  const std::int64_t p = blockIdx.x;
  const T* xp = x + p * spatial;
  double acc[1] = {0.0};
  for (std::int64_t i = threadIdx.x; i < spatial; i += blockDim.x) acc[0] += static_cast<double>(detail::load(xp[i]));
  block_sum(acc);
  if (threadIdx.x == 0) out[p] = detail::store<T>(static_cast<compute_type_t<T>>(acc[0]) * scale);
}

/// Under plane_grid.
template <StorageScalar T>
__global__ void broadcast_planes_kernel(const T* v, T* out, std::int64_t spatial, compute_type_t<T> scale) {
  const std::int64_t p = blockIdx.x;
  const T value = detail::store<T>(detail::load(v[p]) * scale);
  T* op = out + p * spatial;
  for (std::int64_t i = plane_first(); i < spatial; i += plane_stride()) op[i] = value;
}

}  // namespace spo::cuda_kernels::layout_detail

namespace spo::cuda_kernels {

template <StorageScalar T>
void concat_rows(const T* a, const T* b, T* out, std::int64_t outer, std::int64_t na, std::int64_t nb) {
  if (outer * (na + nb) == 0) return;
  const auto row_bytes = static_cast<std::size_t>(na + nb) * sizeof(T);
  if (row_bytes <= layout_detail::max_pitch) {  // two strided copies: a's rows, then b's, into out's rows
    if (na > 0)
      SPO_CUDA_CHECK(cudaMemcpy2DAsync(out, row_bytes, a, static_cast<std::size_t>(na) * sizeof(T),
                                       static_cast<std::size_t>(na) * sizeof(T), static_cast<std::size_t>(outer),
                                       cudaMemcpyDeviceToDevice, nullptr));
    if (nb > 0)
      SPO_CUDA_CHECK(cudaMemcpy2DAsync(out + na, row_bytes, b, static_cast<std::size_t>(nb) * sizeof(T),
                                       static_cast<std::size_t>(nb) * sizeof(T), static_cast<std::size_t>(outer),
                                       cudaMemcpyDeviceToDevice, nullptr));
    return;
  }
  using M = layout_detail::moved_type_t<T>;
  layout_detail::concat_rows_kernel<M><<<layout_detail::rows_grid(outer, na + nb), cuda_runtime::block_1d>>>(
      layout_detail::moved(a), layout_detail::moved(b), layout_detail::moved(out), outer, na, nb);
  SPO_CUDA_CHECK_LAUNCH("concat_rows_kernel");
}

template <StorageScalar T>
void split_rows(const T* x, T* a, T* b, std::int64_t outer, std::int64_t na, std::int64_t nb) {
  if (outer * (na + nb) == 0) return;
  const auto row_bytes = static_cast<std::size_t>(na + nb) * sizeof(T);
  if (row_bytes <= layout_detail::max_pitch) {
    if (na > 0)
      SPO_CUDA_CHECK(cudaMemcpy2DAsync(a, static_cast<std::size_t>(na) * sizeof(T), x, row_bytes,
                                       static_cast<std::size_t>(na) * sizeof(T), static_cast<std::size_t>(outer),
                                       cudaMemcpyDeviceToDevice, nullptr));
    if (nb > 0)
      SPO_CUDA_CHECK(cudaMemcpy2DAsync(b, static_cast<std::size_t>(nb) * sizeof(T), x + na, row_bytes,
                                       static_cast<std::size_t>(nb) * sizeof(T), static_cast<std::size_t>(outer),
                                       cudaMemcpyDeviceToDevice, nullptr));
    return;
  }
  using M = layout_detail::moved_type_t<T>;
  layout_detail::split_rows_kernel<M><<<layout_detail::rows_grid(outer, na + nb), cuda_runtime::block_1d>>>(
      layout_detail::moved(x), layout_detail::moved(a), layout_detail::moved(b), outer, na, nb);
  SPO_CUDA_CHECK_LAUNCH("split_rows_kernel");
}

template <StorageScalar T>
void batched_transpose(const T* x, T* out, std::int64_t batch, std::int64_t rows, std::int64_t cols) {
  if (batch * rows * cols == 0) return;
  const std::int64_t grid_x = (cols + layout_detail::tile - 1) / layout_detail::tile;
  const std::int64_t grid_y = (rows + layout_detail::tile - 1) / layout_detail::tile;
  SPO_CHECK(
      grid_y <= layout_detail::max_grid_yz && batch <= layout_detail::max_grid_yz && grid_x < (std::int64_t{1} << 31),
      "cuda_kernels::batched_transpose: [" << batch << ", " << rows << ", " << cols << "] exceeds the launch grid");
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y), static_cast<unsigned>(batch));
  const dim3 block(layout_detail::tile, layout_detail::tile_rows);
  layout_detail::batched_transpose_kernel<layout_detail::moved_type_t<T>>
      <<<grid, block>>>(layout_detail::moved(x), layout_detail::moved(out), rows, cols);
  SPO_CUDA_CHECK_LAUNCH("batched_transpose_kernel");
}

template <StorageScalar T>
void add_plane_bias(T* x, const T* v, std::int64_t planes, std::int64_t spatial) {
  if (planes * spatial == 0) return;
  layout_detail::add_plane_bias_kernel<T>
      <<<layout_detail::plane_grid(planes, spatial, cuda_runtime::block_1d), cuda_runtime::block_1d>>>(x, v, spatial);
  SPO_CUDA_CHECK_LAUNCH("add_plane_bias_kernel");
}

template <StorageScalar T>
void sum_planes(const T* x, T* out, std::int64_t planes, std::int64_t spatial, compute_type_t<T> scale) {
  if (planes == 0) return;
  SPO_CHECK(planes < (std::int64_t{1} << 31), "cuda_kernels::sum_planes: " << planes << " planes exceed the grid");
  layout_detail::sum_planes_kernel<T>
      <<<static_cast<unsigned>(planes), layout_detail::reduce_block>>>(x, out, spatial, scale);
  SPO_CUDA_CHECK_LAUNCH("sum_planes_kernel");
}

template <StorageScalar T>
void broadcast_planes(const T* v, T* out, std::int64_t planes, std::int64_t spatial, compute_type_t<T> scale) {
  if (planes * spatial == 0) return;
  layout_detail::broadcast_planes_kernel<T>
      <<<layout_detail::plane_grid(planes, spatial, cuda_runtime::block_1d), cuda_runtime::block_1d>>>(v, out, spatial,
                                                                                                       scale);
  SPO_CUDA_CHECK_LAUNCH("broadcast_planes_kernel");
}

}  // namespace spo::cuda_kernels
