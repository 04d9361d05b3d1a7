// SPDX-License-Identifier: MIT
/// @brief GroupNorm and LayerNorm kernels on spo::cuda (forward statistics by block/warp reductions in double,
/// closed-form backward, affine gradients summed in a fixed order); host declarations in norm.hpp. For half and
/// bfloat16 every element is read into float (detail::load), the statistics and rstd stay in double / float, and
/// only the outputs are rounded to 16 bits (detail::store).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/layout.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/norm.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/cuda/scalar_access.cuh"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels::norm_detail {

/// GroupNorm statistics: each group is split into chunks of at least min_chunk elements, aiming at
/// target_stats_blocks blocks in all (a group of SD's 64 x 64 x 10 elements alone would occupy one SM).
inline constexpr std::int64_t min_chunk = 4096;
inline constexpr std::int64_t target_stats_blocks = 1024;
/// Threads per block of the per-plane GroupNorm kernels.
inline constexpr int plane_block = 256;
/// LayerNorm: one warp per row, this many rows (warps) per block.
inline constexpr int rows_per_block = 8;
/// LayerNorm affine gradients: rows of a chunk summed by one block; at most this many chunks.
inline constexpr std::int64_t min_rows_per_chunk = 64;
inline constexpr std::int64_t max_chunks = 512;

/// grid (batch * groups, chunks), chunks of `chunk` elements of each group's n: partial[3 (bg chunks + k)] =
/// (count, mean, sum of squared deviations M2) of chunk k of group bg, by two passes over the chunk (sums in double).
template <StorageScalar T>
__global__ void group_partial_stats_kernel(const T* x, double* partial, std::int64_t n, std::int64_t chunk) {
  const std::int64_t bg = blockIdx.x, k = blockIdx.y;
  const std::int64_t first = k * chunk, len = std::min(chunk, n - first);  // >= 1: chunks = ceil(n / chunk)
  const T* xc = x + bg * n + first;
  double s[1] = {0.0};
  for (std::int64_t i = threadIdx.x; i < len; i += blockDim.x) s[0] += static_cast<double>(detail::load(xc[i]));
  layout_detail::block_sum(s);
  const double mean = s[0] / static_cast<double>(len);
  double q[1] = {0.0};
  for (std::int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const double d = static_cast<double>(detail::load(xc[i])) - mean;
    q[0] += d * d;
  }
  layout_detail::block_sum(q);
  if (threadIdx.x == 0) {
    double* p = partial + 3 * (bg * static_cast<std::int64_t>(gridDim.y) + k);
    p[0] = static_cast<double>(len);
    p[1] = mean;
    p[2] = q[0];
  }
}

/// One thread per (b, g): merges its chunks (Chan, Golub, LeVeque: mean = sum n_k mean_k / n,
/// M2 = sum M2_k + n_k (mean_k - mean)^2), var = M2 / n (biased); stats[2 bg] = mean, stats[2 bg + 1] = rstd =
/// 1 / sqrt(var + eps) in double, rstd[bg] in T's compute type.
template <StorageScalar T>
__global__ void group_finalize_stats_kernel(const double* partial, double* stats, compute_type_t<T>* rstd,
                                            std::int64_t groups_total, std::int64_t chunks, std::int64_t n,
                                            double eps) {
  for (std::int64_t bg = detail::grid_first(); bg < groups_total; bg += detail::grid_stride()) {
    const double* p = partial + 3 * bg * chunks;
    const double inv_n = n ? 1.0 / static_cast<double>(n) : 0.0;
    double sum = 0.0;
    for (std::int64_t k = 0; k < chunks; ++k) sum += p[3 * k] * p[3 * k + 1];
    const double mean = inv_n * sum;
    double m2 = 0.0;
    for (std::int64_t k = 0; k < chunks; ++k) {
      const double d = p[3 * k + 1] - mean;
      m2 += p[3 * k + 2] + p[3 * k] * d * d;
    }
    const double r = 1.0 / sqrt(inv_n * m2 + eps);
    stats[2 * bg] = mean;
    stats[2 * bg + 1] = r;
    rstd[bg] = static_cast<compute_type_t<T>>(r);
  }
}

/// Under layout_detail::plane_grid over the batch * channels planes: y = x scale + shift with scale = rstd gamma[c],
/// shift = beta[c] - mean scale; xhat = x rstd - mean rstd.
template <StorageScalar T>
__global__ void group_norm_apply_kernel(const T* x, const T* gamma, const T* beta, const double* stats, T* y, T* xhat,
                                        std::int64_t channels, std::int64_t spatial, std::int64_t groups) {
  const std::int64_t bc = blockIdx.x, c = bc % channels;
  const std::int64_t bg = (bc / channels) * groups + c / (channels / groups);
  using C = compute_type_t<T>;
  const double mean = stats[2 * bg], r = stats[2 * bg + 1];
  const double scale = gamma ? r * static_cast<double>(detail::load(gamma[c])) : r;
  const double shift = (beta ? static_cast<double>(detail::load(beta[c])) : 0.0) - mean * scale;
  const C scale_t = static_cast<C>(scale), shift_t = static_cast<C>(shift);
  const C r_t = static_cast<C>(r), mean_r_t = static_cast<C>(mean * r);
  const T* xp = x + bc * spatial;
  T* yp = y + bc * spatial;
  for (std::int64_t i = layout_detail::plane_first(); i < spatial; i += layout_detail::plane_stride()) {
    const C v = detail::load(xp[i]);
    yp[i] = detail::store<T>(v * scale_t + shift_t);
    if (xhat) xhat[bc * spatial + i] = detail::store<T>(v * r_t - mean_r_t);
  }
}

/// One block per (b, c) plane: sums[2 bc] = sum_s dy, sums[2 bc + 1] = sum_s dy xhat.
template <StorageScalar T>
__global__ void plane_sums_kernel(const T* dy, const T* xhat, double* sums, std::int64_t spatial) {
  const std::int64_t bc = blockIdx.x;
  const T* dp = dy + bc * spatial;
  const T* hp = xhat + bc * spatial;
  double s[2] = {0.0, 0.0};
  for (std::int64_t i = threadIdx.x; i < spatial; i += blockDim.x) {
    const double d = static_cast<double>(detail::load(dp[i]));
    s[0] += d;
    s[1] += d * static_cast<double>(detail::load(hp[i]));
  }
  layout_detail::block_sum(s);
  if (threadIdx.x == 0) {
    sums[2 * bc] = s[0];
    sums[2 * bc + 1] = s[1];
  }
}

/// One thread per (b, g): coeffs[2 bg] = -rstd mean_g(gamma dy) (shift), coeffs[2 bg + 1] = -rstd mean_g(gamma dy xhat)
/// (slope of xhat).
template <StorageScalar T>
__global__ void group_backward_coeffs_kernel(const double* sums, const compute_type_t<T>* rstd, const T* gamma,
                                             double* coeffs, std::int64_t batch, std::int64_t channels,
                                             std::int64_t spatial, std::int64_t groups) {
  const std::int64_t cg = channels / groups, n = cg * spatial;
  for (std::int64_t bg = detail::grid_first(); bg < batch * groups; bg += detail::grid_stride()) {
    const std::int64_t b = bg / groups, g = bg % groups;
    double s1 = 0.0, s2 = 0.0;
    for (std::int64_t ci = 0; ci < cg; ++ci) {
      const std::int64_t c = g * cg + ci;
      const double gc = gamma ? static_cast<double>(detail::load(gamma[c])) : 1.0;
      s1 += gc * sums[2 * (b * channels + c)];
      s2 += gc * sums[2 * (b * channels + c) + 1];
    }
    const double r = static_cast<double>(rstd[bg]);
    const double inv_n = n ? 1.0 / static_cast<double>(n) : 0.0;
    coeffs[2 * bg] = -r * s1 * inv_n;
    coeffs[2 * bg + 1] = -r * s2 * inv_n;
  }
}

/// Under plane_grid: dx = dy (rstd gamma[c]) + xhat slope + shift.
template <StorageScalar T>
__global__ void group_norm_dx_kernel(const T* dy, const T* xhat, const compute_type_t<T>* rstd, const T* gamma,
                                     const double* coeffs, T* dx, std::int64_t channels, std::int64_t spatial,
                                     std::int64_t groups) {
  using C = compute_type_t<T>;
  const std::int64_t bc = blockIdx.x, c = bc % channels;
  const std::int64_t bg = (bc / channels) * groups + c / (channels / groups);
  const double r = static_cast<double>(rstd[bg]);
  const C scale = static_cast<C>(r * (gamma ? static_cast<double>(detail::load(gamma[c])) : 1.0));
  const C shift = static_cast<C>(coeffs[2 * bg]), slope = static_cast<C>(coeffs[2 * bg + 1]);
  const T* dp = dy + bc * spatial;
  const T* hp = xhat + bc * spatial;
  T* op = dx + bc * spatial;
  for (std::int64_t i = layout_detail::plane_first(); i < spatial; i += layout_detail::plane_stride())
    op[i] = detail::store<T>(detail::load(dp[i]) * scale + detail::load(hp[i]) * slope + shift);
}

/// One thread per channel: dgamma[c] += sum_b sums[b, c].dy_xhat, dbeta[c] += sum_b sums[b, c].dy.
template <StorageScalar T>
__global__ void group_affine_grads_kernel(const double* sums, T* dgamma, T* dbeta, std::int64_t batch,
                                          std::int64_t channels) {
  for (std::int64_t c = detail::grid_first(); c < channels; c += detail::grid_stride()) {
    double gw = 0.0, gb = 0.0;
    for (std::int64_t b = 0; b < batch; ++b) {
      gb += sums[2 * (b * channels + c)];
      gw += sums[2 * (b * channels + c) + 1];
    }
    using C = compute_type_t<T>;
    if (dgamma) dgamma[c] = detail::store<T>(detail::load(dgamma[c]) + static_cast<C>(gw));
    if (dbeta) dbeta[c] = detail::store<T>(detail::load(dbeta[c]) + static_cast<C>(gb));
  }
}

/// Block (32, rows_per_block): warp threadIdx.y normalises row blockIdx.x * rows_per_block + threadIdx.y.
template <StorageScalar T>
__global__ void layer_norm_forward_kernel(const T* x, const T* gamma, const T* beta, T* y, T* xhat,
                                          compute_type_t<T>* rstd, std::int64_t rows, std::int64_t dim, double eps) {
  using C = compute_type_t<T>;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * rows_per_block + threadIdx.y;
  if (row >= rows) return;  // the whole warp leaves together
  const int lane = static_cast<int>(threadIdx.x);
  const T* xr = x + row * dim;
  double s = 0.0;
  for (std::int64_t j = lane; j < dim; j += 32) s += static_cast<double>(detail::load(xr[j]));
  s = layout_detail::warp_sum(s);
  const double mean = dim ? s / static_cast<double>(dim) : 0.0;
  double q = 0.0;
  for (std::int64_t j = lane; j < dim; j += 32) {
    const double d = static_cast<double>(detail::load(xr[j])) - mean;
    q += d * d;
  }
  q = layout_detail::warp_sum(q);
  const double var = dim ? q / static_cast<double>(dim) : 0.0;
  const double inv = 1.0 / sqrt(var + eps);
  if (lane == 0) rstd[row] = static_cast<C>(inv);
  const C a = static_cast<C>(inv), b = static_cast<C>(mean * inv);
  T* yr = y + row * dim;
  for (std::int64_t j = lane; j < dim; j += 32) {
    const C h = detail::load(xr[j]) * a - b;
    if (xhat) xhat[row * dim + j] = detail::store<T>(h);
    yr[j] = detail::store<T>(gamma ? h * detail::load(gamma[j]) + detail::load(beta[j]) : h);
  }
}

/// Same geometry as the forward: dx = dy gamma rstd + xhat slope + shift per row.
template <StorageScalar T>
__global__ void layer_norm_backward_kernel(const T* dy, const T* xhat, const compute_type_t<T>* rstd, const T* gamma,
                                           T* dx, std::int64_t rows, std::int64_t dim) {
  using C = compute_type_t<T>;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * rows_per_block + threadIdx.y;
  if (row >= rows) return;
  const int lane = static_cast<int>(threadIdx.x);
  const T* dr = dy + row * dim;
  const T* hr = xhat + row * dim;
  double s1 = 0.0, s2 = 0.0;  // sum gamma dy, sum gamma dy xhat
  for (std::int64_t j = lane; j < dim; j += 32) {
    const C d = detail::load(dr[j]);
    const double g = static_cast<double>(gamma ? d * detail::load(gamma[j]) : d);
    s1 += g;
    s2 += g * static_cast<double>(detail::load(hr[j]));
  }
  s1 = layout_detail::warp_sum(s1);
  s2 = layout_detail::warp_sum(s2);
  const double inv = static_cast<double>(rstd[row]);
  const double inv_n = dim ? 1.0 / static_cast<double>(dim) : 0.0;
  const C shift = static_cast<C>(-inv * s1 * inv_n), slope = static_cast<C>(-inv * s2 * inv_n);
  const C a = static_cast<C>(inv);
  T* out = dx + row * dim;
  for (std::int64_t j = lane; j < dim; j += 32) {
    const C d = detail::load(dr[j]);
    out[j] = detail::store<T>((gamma ? d * detail::load(gamma[j]) * a : d * a) + detail::load(hr[j]) * slope + shift);
  }
}

/// Block (32, rows_per_block), grid (ceil(dim / 32), chunks): partial[2 (chunk dim + j)] = sum over the chunk's rows
/// of dy[r, j] (and + 1: of dy[r, j] xhat[r, j]).
template <StorageScalar T>
__global__ void column_sums_kernel(const T* dy, const T* xhat, double* partial, std::int64_t rows, std::int64_t dim,
                                   std::int64_t rows_per_chunk) {
  __shared__ double sum_dy[rows_per_block][33], sum_dy_xhat[rows_per_block][33];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * 32 + tx;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.y) * rows_per_chunk;
  const std::int64_t last = std::min(rows, first + rows_per_chunk);
  double a = 0.0, b = 0.0;
  if (j < dim)
    for (std::int64_t r = first + ty; r < last; r += rows_per_block) {
      const double d = static_cast<double>(detail::load(dy[r * dim + j]));
      a += d;
      b += d * static_cast<double>(detail::load(xhat[r * dim + j]));
    }
  sum_dy[ty][tx] = a;
  sum_dy_xhat[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && j < dim) {
    double sa = 0.0, sb = 0.0;
    for (int k = 0; k < rows_per_block; ++k) {
      sa += sum_dy[k][tx];
      sb += sum_dy_xhat[k][tx];
    }
    partial[2 * (static_cast<std::int64_t>(blockIdx.y) * dim + j)] = sa;
    partial[2 * (static_cast<std::int64_t>(blockIdx.y) * dim + j) + 1] = sb;
  }
}

/// One thread per column: dgamma[j] += sum_chunks partial.dy_xhat, dbeta[j] += sum_chunks partial.dy.
template <StorageScalar T>
__global__ void column_grads_kernel(const double* partial, T* dgamma, T* dbeta, std::int64_t chunks, std::int64_t dim) {
  for (std::int64_t j = detail::grid_first(); j < dim; j += detail::grid_stride()) {
    double sa = 0.0, sb = 0.0;
    for (std::int64_t k = 0; k < chunks; ++k) {
      sa += partial[2 * (k * dim + j)];
      sb += partial[2 * (k * dim + j) + 1];
    }
    using C = compute_type_t<T>;
    if (dgamma) dgamma[j] = detail::store<T>(detail::load(dgamma[j]) + static_cast<C>(sb));
    if (dbeta) dbeta[j] = detail::store<T>(detail::load(dbeta[j]) + static_cast<C>(sa));
  }
}

inline void check_groups(const char* what, std::int64_t batch, std::int64_t channels, std::int64_t spatial,
                         std::int64_t groups) {
  SPO_CHECK(batch >= 0 && spatial >= 0 && groups > 0 && channels % groups == 0,
            what << ": channels " << channels << " not divisible by groups " << groups << " (batch " << batch
                 << ", spatial " << spatial << ")");
  SPO_CHECK(batch * channels < (std::int64_t{1} << 31),
            what << ": " << batch * channels << " channel planes exceed the launch grid");
}

}  // namespace spo::cuda_kernels::norm_detail

namespace spo::cuda_kernels {

template <StorageScalar T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* xhat, compute_type_t<T>* rstd,
                        std::int64_t batch, std::int64_t channels, std::int64_t spatial, std::int64_t groups,
                        double eps) {
  norm_detail::check_groups("cuda_kernels::group_norm_forward", batch, channels, spatial, groups);
  if (batch * channels == 0) return;
  const std::int64_t n = (channels / groups) * spatial, groups_total = batch * groups;
  // chunks per group: enough blocks to fill the device, at least min_chunk elements each
  std::int64_t chunks = 0, chunk = 0;
  if (n > 0) {
    const std::int64_t wanted = (norm_detail::target_stats_blocks + groups_total - 1) / groups_total;
    chunks = std::clamp<std::int64_t>(wanted, 1, (n + norm_detail::min_chunk - 1) / norm_detail::min_chunk);
    chunk = (n + chunks - 1) / chunks;
    chunks = (n + chunk - 1) / chunk;
  }
  auto partial = Tensor<double, cuda>::uninitialized(Shape{groups_total, std::max<std::int64_t>(chunks, 1), 3});
  auto stats = Tensor<double, cuda>::uninitialized(Shape{groups_total, 2});  // [B G, (mean, rstd)]
  if (chunks > 0) {
    norm_detail::group_partial_stats_kernel<T>
        <<<dim3(static_cast<unsigned>(groups_total), static_cast<unsigned>(chunks)), layout_detail::reduce_block>>>(
            x, partial.data(), n, chunk);
    SPO_CUDA_CHECK_LAUNCH("group_partial_stats_kernel");
  }
  norm_detail::group_finalize_stats_kernel<T><<<cuda_runtime::grid_1d(groups_total), cuda_runtime::block_1d>>>(
      partial.data(), stats.data(), rstd, groups_total, chunks, n, eps);
  SPO_CUDA_CHECK_LAUNCH("group_finalize_stats_kernel");
  if (spatial == 0) return;
  norm_detail::group_norm_apply_kernel<T>
      <<<layout_detail::plane_grid(batch * channels, spatial, norm_detail::plane_block), norm_detail::plane_block>>>(
          x, gamma, beta, stats.data(), y, xhat, channels, spatial, groups);
  SPO_CUDA_CHECK_LAUNCH("group_norm_apply_kernel");
}

template <StorageScalar T>
void group_norm_backward(const T* dy, const T* xhat, const compute_type_t<T>* rstd, const T* gamma, T* dx, T* dgamma,
                         T* dbeta, std::int64_t batch, std::int64_t channels, std::int64_t spatial,
                         std::int64_t groups) {
  norm_detail::check_groups("cuda_kernels::group_norm_backward", batch, channels, spatial, groups);
  if (batch * channels == 0) return;
  auto sums = Tensor<double, cuda>::uninitialized(Shape{batch * channels, 2});  // [B C, (dy, dy xhat)]
  auto coeffs = Tensor<double, cuda>::uninitialized(Shape{batch * groups, 2});  // [B G, (shift, slope)]
  norm_detail::plane_sums_kernel<T>
      <<<static_cast<unsigned>(batch * channels), norm_detail::plane_block>>>(dy, xhat, sums.data(), spatial);
  SPO_CUDA_CHECK_LAUNCH("plane_sums_kernel");
  norm_detail::group_backward_coeffs_kernel<T><<<cuda_runtime::grid_1d(batch * groups), cuda_runtime::block_1d>>>(
      sums.data(), rstd, gamma, coeffs.data(), batch, channels, spatial, groups);
  SPO_CUDA_CHECK_LAUNCH("group_backward_coeffs_kernel");
  if (spatial > 0) {
    norm_detail::group_norm_dx_kernel<T>
        <<<layout_detail::plane_grid(batch * channels, spatial, norm_detail::plane_block), norm_detail::plane_block>>>(
            dy, xhat, rstd, gamma, coeffs.data(), dx, channels, spatial, groups);
    SPO_CUDA_CHECK_LAUNCH("group_norm_dx_kernel");
  }
  if (dgamma || dbeta) {
    norm_detail::group_affine_grads_kernel<T>
        <<<cuda_runtime::grid_1d(channels), cuda_runtime::block_1d>>>(sums.data(), dgamma, dbeta, batch, channels);
    SPO_CUDA_CHECK_LAUNCH("group_affine_grads_kernel");
  }
}

template <StorageScalar T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* xhat, compute_type_t<T>* rstd,
                        std::int64_t rows, std::int64_t dim, double eps) {
  if (rows == 0) return;
  const std::int64_t blocks = (rows + norm_detail::rows_per_block - 1) / norm_detail::rows_per_block;
  SPO_CHECK(blocks < (std::int64_t{1} << 31), "cuda_kernels::layer_norm_forward: " << rows << " rows exceed the grid");
  norm_detail::layer_norm_forward_kernel<T><<<static_cast<unsigned>(blocks), dim3(32, norm_detail::rows_per_block)>>>(
      x, gamma, beta, y, xhat, rstd, rows, dim, eps);
  SPO_CUDA_CHECK_LAUNCH("layer_norm_forward_kernel");
}

template <StorageScalar T>
void layer_norm_backward(const T* dy, const T* xhat, const compute_type_t<T>* rstd, const T* gamma, T* dx, T* dgamma,
                         T* dbeta, std::int64_t rows, std::int64_t dim) {
  if (rows == 0 || dim == 0) return;
  const std::int64_t blocks = (rows + norm_detail::rows_per_block - 1) / norm_detail::rows_per_block;
  SPO_CHECK(blocks < (std::int64_t{1} << 31), "cuda_kernels::layer_norm_backward: " << rows << " rows exceed the grid");
  norm_detail::layer_norm_backward_kernel<T>
      <<<static_cast<unsigned>(blocks), dim3(32, norm_detail::rows_per_block)>>>(dy, xhat, rstd, gamma, dx, rows, dim);
  SPO_CUDA_CHECK_LAUNCH("layer_norm_backward_kernel");
  if (!dgamma && !dbeta) return;
  const std::int64_t rows_per_chunk =
      std::max(norm_detail::min_rows_per_chunk, (rows + norm_detail::max_chunks - 1) / norm_detail::max_chunks);
  const std::int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  const std::int64_t column_blocks = (dim + 31) / 32;
  SPO_CHECK(column_blocks < (std::int64_t{1} << 31), "cuda_kernels::layer_norm_backward: dim " << dim << " too large");
  auto partial = Tensor<double, cuda>::uninitialized(Shape{chunks, dim, 2});  // [chunks, dim, (dy, dy xhat)]
  norm_detail::column_sums_kernel<T>
      <<<dim3(static_cast<unsigned>(column_blocks), static_cast<unsigned>(chunks)),
         dim3(32, norm_detail::rows_per_block)>>>(dy, xhat, partial.data(), rows, dim, rows_per_chunk);
  SPO_CUDA_CHECK_LAUNCH("column_sums_kernel");
  norm_detail::column_grads_kernel<T>
      <<<cuda_runtime::grid_1d(dim), cuda_runtime::block_1d>>>(partial.data(), dgamma, dbeta, chunks, dim);
  SPO_CUDA_CHECK_LAUNCH("column_grads_kernel");
}

}  // namespace spo::cuda_kernels
