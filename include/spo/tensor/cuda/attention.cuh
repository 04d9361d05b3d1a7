// SPDX-License-Identifier: MIT
/// @brief Multi-head attention on spo::cuda: S = scale Q K^T and O = P V as cuBLAS strided-batched GEMMs over
/// the heads of the interleaved [B, tokens, H * d] layout, a warp-per-row softmax that also writes the row
/// logsumexp, and the FlashAttention-style backward from (q, k, v, o, lse) with P recomputed.
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cuda/attention.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/gemm.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

namespace detail {

__device__ inline float log_of(float x) { return logf(x); }
__device__ inline double log_of(double x) { return log(x); }

template <Scalar T>
__device__ inline T warp_max(T x) {
  for (int offset = 16; offset > 0; offset /= 2) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}
template <Scalar T>
__device__ inline T warp_sum(T x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/*!
  Row-major strided-batched GEMM: for i < batch,
    C_i[m, n] = alpha op(A_i)[m, k] op(B_i)[k, n] + beta C_i,  X_i = x + i * stride_x,
  run as the column-major product C_i^T = op(B_i)^T op(A_i)^T (gemm.cuh's convention). FP32 uses TF32 only when
  cuda_runtime::allow_tf32().
!*/
template <Scalar T>
void batched_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                  std::int64_t lda, std::int64_t stride_a, const T* b, std::int64_t ldb, std::int64_t stride_b, T beta,
                  T* c, std::int64_t ldc, std::int64_t stride_c, std::int64_t batch, cudaStream_t stream) {
  SPO_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX &&
                batch <= INT_MAX,
            "cuda_kernels::batched_gemm (" << m << "x" << n << "x" << k << ", batch " << batch
                                           << "): sizes must fit in int (cuBLAS 32-bit API)");
  if (m == 0 || n == 0 || batch == 0) return;
  cublasHandle_t h = cublas_handle();
  SPO_CUBLAS_CHECK(cublasSetStream(h, stream));
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  const int lda_i = static_cast<int>(std::max<std::int64_t>(lda, 1)), ldb_i = static_cast<int>(std::max<std::int64_t>(ldb, 1));
  const int ldc_i = static_cast<int>(ldc), count = static_cast<int>(batch);
  if constexpr (std::is_same_v<T, float>) {
    const cublasComputeType_t compute =
        cuda_runtime::allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    SPO_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, op_b, op_a, ni, mi, ki, &alpha, b, CUDA_R_32F, ldb_i, stride_b, a,
                                                CUDA_R_32F, lda_i, stride_a, &beta, c, CUDA_R_32F, ldc_i, stride_c,
                                                count, compute, CUBLAS_GEMM_DEFAULT));
  } else {
    SPO_CUBLAS_CHECK(cublasDgemmStridedBatched(h, op_b, op_a, ni, mi, ki, &alpha, b, ldb_i, stride_b, a, lda_i,
                                               stride_a, &beta, c, ldc_i, stride_c, count));
  }
}

/// Warps per block of the row kernels (one warp per row).
inline constexpr int rows_per_block = 4;

inline unsigned row_grid(std::int64_t rows) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((rows + rows_per_block - 1) / rows_per_block, 1, 1 << 20));
}

}  // namespace detail

/// x[r, :] = softmax(x[r, :]) in place and lse[r] = log sum_j exp(x[r, j]) for r < rows; x [rows, cols], cols >= 1.
template <Scalar T>
__global__ void softmax_rows_kernel(std::int64_t rows, std::int64_t cols, T* x, T* lse) {
  const int lane = threadIdx.x;
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    T* r = x + row * cols;
    T mx = r[0];
    for (std::int64_t j = lane; j < cols; j += 32) mx = fmax(mx, r[j]);
    mx = detail::warp_max(mx);
    T sum = T(0);
    for (std::int64_t j = lane; j < cols; j += 32) {
      const T e = detail::exp_of(r[j] - mx);
      r[j] = e;
      sum += e;
    }
    sum = detail::warp_sum(sum);
    const T inv = T(1) / sum;
    for (std::int64_t j = lane; j < cols; j += 32) r[j] *= inv;
    if (lane == 0) lse[row] = mx + detail::log_of(sum);
  }
}

/// x[r, j] = exp(x[r, j] - lse[r]) over a [rows, cols] buffer (P recomputed from the scaled scores); one warp
/// per row.
template <Scalar T>
__global__ void exp_minus_rows_kernel(std::int64_t rows, std::int64_t cols, const T* lse, T* x) {
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    T* r = x + row * cols;
    const T l = lse[row];
    for (std::int64_t j = threadIdx.x; j < cols; j += 32) r[j] = detail::exp_of(r[j] - l);
  }
}

/// p[r, j] = p[r, j] * (dp[r, j] - delta[r]) (dS from P and dP; the scale is applied by the next GEMMs); one warp
/// per row.
template <Scalar T>
__global__ void softmax_grad_rows_kernel(std::int64_t rows, std::int64_t cols, const T* dp, const T* delta, T* p) {
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    T* r = p + row * cols;
    const T* g = dp + row * cols;
    const T dl = delta[row];
    for (std::int64_t j = threadIdx.x; j < cols; j += 32) r[j] = r[j] * (g[j] - dl);
  }
}

/// delta[(b * heads + h) * n + i] = sum_c dout[b, i, h * d + c] o[b, i, h * d + c], one thread per (b, i, h).
template <Scalar T>
__global__ void attention_delta_kernel(std::int64_t count, std::int64_t heads, std::int64_t n, std::int64_t d,
                                       const T* o, const T* dout, T* delta) {
  for (std::int64_t t = detail::grid_first(); t < count; t += detail::grid_stride()) {
    const std::int64_t h = t % heads, i = (t / heads) % n, b = t / (heads * n);
    const std::int64_t base = (b * n + i) * heads * d + h * d;
    T acc = T(0);
    for (std::int64_t c = 0; c < d; ++c) acc += dout[base + c] * o[base + c];
    delta[(b * heads + h) * n + i] = acc;
  }
}

namespace detail {

inline void check_attention_shape(const AttentionShape& s, const char* what) {
  SPO_CHECK(s.batch >= 0 && s.heads >= 1 && s.n >= 0 && s.d >= 1,
            what << ": invalid extents batch " << s.batch << ", heads " << s.heads << ", n " << s.n << ", d " << s.d);
  SPO_CHECK(s.m >= 1 || s.n == 0, what << ": " << s.n << " queries attend to zero keys");
}

/// Problems per chunk so that one [chunk, n, m] buffer of T stays within attention_score_buffer_bytes().
template <Scalar T>
std::int64_t attention_chunk(const AttentionShape& s) {
  const std::size_t per_problem = static_cast<std::size_t>(s.n) * static_cast<std::size_t>(s.m) * sizeof(T);
  const std::int64_t fit = static_cast<std::int64_t>(attention_score_buffer_bytes() / std::max<std::size_t>(per_problem, 1));
  return std::clamp<std::int64_t>(fit, 1, std::max<std::int64_t>(s.batch_heads(), 1));
}

/// Calls f(b, h0, count, offset) for the runs of consecutive heads of one batch entry in problems [p0, p1),
/// offset = (b * heads + h0 - p0): the problem's position in the chunk buffer.
template <class F>
void for_each_head_run(const AttentionShape& s, std::int64_t p0, std::int64_t p1, F&& f) {
  for (std::int64_t b = p0 / s.heads; b * s.heads < p1; ++b) {
    const std::int64_t first = std::max(p0, b * s.heads), last = std::min(p1, (b + 1) * s.heads);
    f(b, first - b * s.heads, last - first, first - p0);
  }
}

}  // namespace detail

template <Scalar T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* o, T* lse, T scale,
                       cudaStream_t stream) {
  detail::check_attention_shape(s, "cuda_kernels::attention_forward");
  const std::int64_t nbh = s.batch_heads(), n = s.n, m = s.m, d = s.d, ld = s.inner();
  if (nbh == 0 || n == 0) return;
  const std::int64_t chunk = detail::attention_chunk<T>(s), nm = n * m;
  auto scores = Tensor<T, cuda>::uninitialized(Shape{chunk, n, m});          // [chunk, n, m]
  for (std::int64_t p0 = 0; p0 < nbh; p0 += chunk) {
    const std::int64_t p1 = std::min(nbh, p0 + chunk), rows = (p1 - p0) * n;
    detail::for_each_head_run(s, p0, p1, [&](std::int64_t b, std::int64_t h0, std::int64_t count, std::int64_t at) {
      detail::batched_gemm(false, true, n, m, d, scale, q + b * n * ld + h0 * d, ld, d, k + b * m * ld + h0 * d, ld, d,
                           T(0), scores.data() + at * nm, m, nm, count, stream);   // S = scale Q K^T  [count, n, m]
    });
    softmax_rows_kernel<T><<<detail::row_grid(rows), dim3(32, detail::rows_per_block), 0, stream>>>(
        rows, m, scores.data(), lse + p0 * n);                                      // P, lse  [count, n]
    SPO_CUDA_CHECK_LAUNCH("softmax_rows_kernel");
    detail::for_each_head_run(s, p0, p1, [&](std::int64_t b, std::int64_t h0, std::int64_t count, std::int64_t at) {
      detail::batched_gemm(false, false, n, d, m, T(1), scores.data() + at * nm, m, nm, v + b * m * ld + h0 * d, ld, d,
                           T(0), o + b * n * ld + h0 * d, ld, d, count, stream);    // O = P V  [count, n, d]
    });
  }
}

template <Scalar T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* o, const T* dout,
                        const T* lse, T* dq, T* dk, T* dv, T scale, cudaStream_t stream) {
  detail::check_attention_shape(s, "cuda_kernels::attention_backward");
  const std::int64_t nbh = s.batch_heads(), n = s.n, m = s.m, d = s.d, ld = s.inner();
  if (nbh == 0) return;
  if (n == 0) {
    const std::size_t bytes = static_cast<std::size_t>(s.batch * m * ld) * sizeof(T);
    if (bytes) {
      SPO_CUDA_CHECK(cudaMemsetAsync(dk, 0, bytes, stream));
      SPO_CUDA_CHECK(cudaMemsetAsync(dv, 0, bytes, stream));
    }
    return;
  }
  auto delta = Tensor<T, cuda>::uninitialized(Shape{nbh, n});               // [B * H, n] = rowsum(dO * O)
  attention_delta_kernel<T><<<cuda_runtime::grid_1d(nbh * n), cuda_runtime::block_1d, 0, stream>>>(
      nbh * n, s.heads, n, d, o, dout, delta.data());
  SPO_CUDA_CHECK_LAUNCH("attention_delta_kernel");
  const std::int64_t chunk = detail::attention_chunk<T>(s), nm = n * m;
  auto probs = Tensor<T, cuda>::uninitialized(Shape{chunk, n, m});           // S, then P, then dS  [chunk, n, m]
  auto dprobs = Tensor<T, cuda>::uninitialized(Shape{chunk, n, m});          // dP  [chunk, n, m]
  for (std::int64_t p0 = 0; p0 < nbh; p0 += chunk) {
    const std::int64_t p1 = std::min(nbh, p0 + chunk), rows = (p1 - p0) * n;
    T* p = probs.data();
    T* dp = dprobs.data();
    detail::for_each_head_run(s, p0, p1, [&](std::int64_t b, std::int64_t h0, std::int64_t count, std::int64_t at) {
      detail::batched_gemm(false, true, n, m, d, scale, q + b * n * ld + h0 * d, ld, d, k + b * m * ld + h0 * d, ld, d,
                           T(0), p + at * nm, m, nm, count, stream);                // S = scale Q K^T
    });
    exp_minus_rows_kernel<T><<<detail::row_grid(rows), dim3(32, detail::rows_per_block), 0, stream>>>(
        rows, m, lse + p0 * n, p);                                                 // P = exp(S - lse)
    SPO_CUDA_CHECK_LAUNCH("exp_minus_rows_kernel");
    detail::for_each_head_run(s, p0, p1, [&](std::int64_t b, std::int64_t h0, std::int64_t count, std::int64_t at) {
      const std::int64_t qo = b * n * ld + h0 * d, ko = b * m * ld + h0 * d;
      detail::batched_gemm(true, false, m, d, n, T(1), p + at * nm, m, nm, dout + qo, ld, d, T(0), dv + ko, ld, d,
                           count, stream);                                          // dV = P^T dO  [count, m, d]
      detail::batched_gemm(false, true, n, m, d, T(1), dout + qo, ld, d, v + ko, ld, d, T(0), dp + at * nm, m, nm,
                           count, stream);                                          // dP = dO V^T  [count, n, m]
    });
    softmax_grad_rows_kernel<T><<<detail::row_grid(rows), dim3(32, detail::rows_per_block), 0, stream>>>(
        rows, m, dp, delta.data() + p0 * n, p);                                    // dS = P * (dP - delta)
    SPO_CUDA_CHECK_LAUNCH("softmax_grad_rows_kernel");
    detail::for_each_head_run(s, p0, p1, [&](std::int64_t b, std::int64_t h0, std::int64_t count, std::int64_t at) {
      const std::int64_t qo = b * n * ld + h0 * d, ko = b * m * ld + h0 * d;
      detail::batched_gemm(false, false, n, d, m, scale, p + at * nm, m, nm, k + ko, ld, d, T(0), dq + qo, ld, d,
                           count, stream);                                          // dQ = scale dS K  [count, n, d]
      detail::batched_gemm(true, false, m, d, n, scale, p + at * nm, m, nm, q + qo, ld, d, T(0), dk + ko, ld, d,
                           count, stream);                                          // dK = scale dS^T Q  [count, m, d]
    });
  }
}

}  // namespace spo::cuda_kernels
