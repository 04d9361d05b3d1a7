// SPDX-License-Identifier: MIT
/// @brief Multi-head attention on spo::cuda: S = scale Q K^T and O = P V as cuBLAS batched GEMMs over the heads of
/// the interleaved [B, tokens, H * d] layout, a warp-per-row softmax (causal mask optional) that also writes the row
/// logsumexp, and the FlashAttention-style backward from (q, k, v, o, lse) with P recomputed. For half and bfloat16
/// the scores, their softmax, lse, dP and delta are FP32 (the GEMMs take 16-bit operands and accumulate in FP32);
/// P and dS are rounded to 16 bits only as operands of the next GEMM, as fused kernels do.
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
#include "spo/tensor/cuda/gemm.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/cuda/scalar_access.cuh"
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

/// Problem p's matrix of one GEMM operand: base + (p / heads) * batch_stride + (p % heads) * head_stride - shift.
/// Heads interleaved in the token axis: batch_stride = rows * H * d, head_stride = d, shift = 0; a chunk buffer of
/// [chunk, n, m] starting at problem p0: batch_stride = H * n * m, head_stride = n * m, shift = p0 * n * m.
template <class T>
struct ProblemOperand {
  T* base = nullptr;
  std::int64_t batch_stride = 0, head_stride = 0, shift = 0;
  __host__ __device__ T* at(std::int64_t p, std::int64_t heads) const {
    return base + (p / heads) * batch_stride + (p % heads) * head_stride - shift;
  }
};

template <class TA, class TC>
__global__ void problem_pointers_kernel(std::int64_t p0, std::int64_t count, std::int64_t heads,
                                        ProblemOperand<const TA> a, ProblemOperand<const TA> b, ProblemOperand<TC> c,
                                        const TA** pa, const TA** pb, TC** pc) {
  for (std::int64_t i = grid_first(); i < count; i += grid_stride()) {
    pa[i] = a.at(p0 + i, heads);
    pb[i] = b.at(p0 + i, heads);
    pc[i] = c.at(p0 + i, heads);
  }
}

/// cuBLAS's type of a storage scalar.
template <StorageScalar T>
inline constexpr cudaDataType_t cublas_data_type = std::is_same_v<T, float>    ? CUDA_R_32F
                                                   : std::is_same_v<T, double> ? CUDA_R_64F
                                                   : std::is_same_v<T, half>   ? CUDA_R_16F
                                                                               : CUDA_R_16BF;

/*!
  Row-major GEMM over the problems p0 <= p < p0 + count, one cuBLAS launch for all of them (pointer arrays built on
  the device): C_p[m, n] = alpha op(A_p)[m, k] op(B_p)[k, n] + beta C_p with A_p = a.at(p), B_p = b.at(p),
  C_p = c.at(p). Heads of different batch entries are two strides apart, which one strided batch cannot express.
  A and B hold TA, C holds TC (TA itself, or FP32 for 16-bit operands); alpha and beta are in TA's compute type, which
  is also the accumulation (FP32, TF32 only for float under cuda_runtime::allow_tf32(); FP64 for double).
!*/
template <StorageScalar TA, StorageScalar TC>
void problem_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, compute_type_t<TA> alpha,
                  ProblemOperand<const TA> a, std::int64_t lda, ProblemOperand<const TA> b, std::int64_t ldb,
                  compute_type_t<TA> beta, ProblemOperand<TC> c, std::int64_t ldc, std::int64_t p0, std::int64_t count,
                  std::int64_t heads, cudaStream_t stream) {
  static_assert(std::is_same_v<TA, TC> || (HalfScalar<TA> && std::is_same_v<TC, float>),
                "problem_gemm: C holds A's type, or float for 16-bit A and B");
  SPO_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX &&
                count <= INT_MAX,
            "cuda_kernels::problem_gemm (" << m << "x" << n << "x" << k << ", " << count
                                           << " problems): sizes must fit in int (cuBLAS 32-bit API)");
  if (m == 0 || n == 0 || count == 0) return;
  const auto word = static_cast<std::int64_t>(sizeof(void*));
  auto pointers = Tensor<std::byte, cuda>::uninitialized(Shape{3 * count * word});  // [3 count pointers]
  auto** pa = reinterpret_cast<const TA**>(pointers.data());
  auto** pb = pa + count;
  auto** pc = reinterpret_cast<TC**>(pointers.data() + 2 * count * word);
  problem_pointers_kernel<TA, TC>
      <<<cuda_runtime::grid_1d(count), cuda_runtime::block_1d, 0, stream>>>(p0, count, heads, a, b, c, pa, pb, pc);
  SPO_CUDA_CHECK_LAUNCH("problem_pointers_kernel");
  cublasHandle_t h = cublas_handle();
  SPO_CUBLAS_CHECK(cublasSetStream(h, stream));
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  const int lda_i = static_cast<int>(std::max<std::int64_t>(lda, 1)),
            ldb_i = static_cast<int>(std::max<std::int64_t>(ldb, 1));
  const int ldc_i = static_cast<int>(ldc), batch = static_cast<int>(count);
  if constexpr (std::is_same_v<TA, double>) {
    SPO_CUBLAS_CHECK(
        cublasDgemmBatched(h, op_b, op_a, ni, mi, ki, &alpha, pb, ldb_i, pa, lda_i, &beta, pc, ldc_i, batch));
  } else {
    const cublasComputeType_t compute =
        std::is_same_v<TA, float> && cuda_runtime::allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    SPO_CUBLAS_CHECK(cublasGemmBatchedEx(h, op_b, op_a, ni, mi, ki, &alpha, reinterpret_cast<const void* const*>(pb),
                                         cublas_data_type<TA>, ldb_i, reinterpret_cast<const void* const*>(pa),
                                         cublas_data_type<TA>, lda_i, &beta, reinterpret_cast<void* const*>(pc),
                                         cublas_data_type<TC>, ldc_i, batch, compute, CUBLAS_GEMM_DEFAULT));
  }
}

/// Warps per block of the row kernels (one warp per row).
inline constexpr int rows_per_block = 4;

inline unsigned row_grid(std::int64_t rows) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((rows + rows_per_block - 1) / rows_per_block, 1, 1 << 20));
}

/// Columns of a row kernel's row `row` that its query sees: all cols, or with causal min(row0 + row % n + 1, cols)
/// (the rows are n queries of each of consecutive problems, the first row at a problem boundary; row0 > 0 when they
/// are the query tile [row0, row0 + n) of one problem).
__device__ inline std::int64_t visible_cols(std::int64_t row, std::int64_t cols, bool causal, std::int64_t n,
                                            std::int64_t row0) {
  if (!causal) return cols;
  const std::int64_t seen = row0 + row % n + 1;
  return seen < cols ? seen : cols;
}

}  // namespace detail

/// Row r of x [rows, cols] (scores in the compute type S): p[r, :] = softmax(x[r, :]) rounded to T and
/// lse[r] = log sum_j exp(x[r, j]); x keeps exp(x - max) (p may be x itself when T is S). cols >= 1. With causal
/// (rows of n queries per problem, starting at a problem boundary, the first of them query row0), row r's max and sum
/// run over its visible columns j <= row0 + r % n only and p[r, j] = 0 for the others.
template <StorageScalar T, Scalar S>
__global__ void softmax_rows_kernel(std::int64_t rows, std::int64_t cols, S* x, T* p, S* lse, bool causal,
                                    std::int64_t n, std::int64_t row0) {
  const int lane = threadIdx.x;
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    S* r = x + row * cols;
    T* pr = p + row * cols;
    const std::int64_t visible = detail::visible_cols(row, cols, causal, n, row0);
    S mx = r[0];
    for (std::int64_t j = lane; j < visible; j += 32) mx = fmax(mx, r[j]);
    mx = detail::warp_max(mx);
    S sum = S(0);
    for (std::int64_t j = lane; j < visible; j += 32) {
      const S e = detail::exp_of(r[j] - mx);
      r[j] = e;
      sum += e;
    }
    sum = detail::warp_sum(sum);
    const S inv = S(1) / sum;
    for (std::int64_t j = lane; j < visible; j += 32) pr[j] = detail::store<T>(r[j] * inv);
    for (std::int64_t j = visible + lane; j < cols; j += 32) pr[j] = T{};
    if (lane == 0) lse[row] = mx + detail::log_of(sum);
  }
}

/// x[r, j] = exp(x[r, j] - lse[r]) over a [rows, cols] buffer of scores in S (P recomputed), and p[r, j] the same
/// rounded to T (p may be x when T is S); one warp per row. With causal (as softmax_rows_kernel), both are 0 for the
/// columns j > row0 + r % n.
template <StorageScalar T, Scalar S>
__global__ void exp_minus_rows_kernel(std::int64_t rows, std::int64_t cols, const S* lse, S* x, T* p, bool causal,
                                      std::int64_t n, std::int64_t row0) {
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    S* r = x + row * cols;
    T* pr = p + row * cols;
    const S l = lse[row];
    const std::int64_t visible = detail::visible_cols(row, cols, causal, n, row0);
    for (std::int64_t j = threadIdx.x; j < visible; j += 32) {
      const S e = detail::exp_of(r[j] - l);
      r[j] = e;
      pr[j] = detail::store<T>(e);
    }
    for (std::int64_t j = visible + threadIdx.x; j < cols; j += 32) {
      r[j] = S(0);
      pr[j] = T{};
    }
  }
}

/// ds[r, j] = p[r, j] (dp[r, j] - delta[r]) rounded to T (dS from P and dP in S; the scale is applied by the next
/// GEMMs; ds may be p when T is S); one warp per row.
template <StorageScalar T, Scalar S>
__global__ void softmax_grad_rows_kernel(std::int64_t rows, std::int64_t cols, const S* dp, const S* delta, const S* p,
                                         T* ds) {
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    const S* r = p + row * cols;
    const S* g = dp + row * cols;
    T* out = ds + row * cols;
    const S dl = delta[row];
    for (std::int64_t j = threadIdx.x; j < cols; j += 32) out[j] = detail::store<T>(r[j] * (g[j] - dl));
  }
}

/// delta[(b * heads + h) * n + i] = sum_c dout[b, i, h * d + c] o[b, i, h * d + c] in S, one thread per (b, i, h).
template <StorageScalar T, Scalar S>
__global__ void attention_delta_kernel(std::int64_t count, std::int64_t heads, std::int64_t n, std::int64_t d,
                                       const T* o, const T* dout, S* delta) {
  for (std::int64_t t = detail::grid_first(); t < count; t += detail::grid_stride()) {
    const std::int64_t h = t % heads, i = (t / heads) % n, b = t / (heads * n);
    const std::int64_t base = (b * n + i) * heads * d + h * d;
    S acc = S(0);
    for (std::int64_t c = 0; c < d; ++c) acc += detail::load(dout[base + c]) * detail::load(o[base + c]);
    delta[(b * heads + h) * n + i] = acc;
  }
}

namespace detail {

inline void check_attention_shape(const AttentionShape& s, const char* what) {
  SPO_CHECK(s.batch >= 0 && s.heads >= 1 && s.n >= 0 && s.d >= 1,
            what << ": invalid extents batch " << s.batch << ", heads " << s.heads << ", n " << s.n << ", d " << s.d);
  SPO_CHECK(s.m >= 1 || s.n == 0, what << ": " << s.n << " queries attend to zero keys");
}

/// How a call walks its problems: `problems` whole problems per chunk, or, when one problem's [n, m] scores exceed
/// attention_score_buffer_bytes(), one problem at a time in query tiles of `rows` rows (rows == n: no tiling). The
/// buffers of scores are [problems, rows, m] in T's compute type, so their size is bounded by the cap for every n and
/// m (at least one row), and what a call keeps beyond them (lse, delta, the FP32 sums of dK and dV of one tiled
/// problem) is linear in n + m.
struct AttentionTiling {
  std::int64_t problems = 1, rows = 0;
};

template <StorageScalar T>
AttentionTiling attention_tiling(const AttentionShape& s) {
  const std::size_t cap = attention_score_buffer_bytes();
  const std::size_t row_bytes = static_cast<std::size_t>(s.m) * sizeof(compute_type_t<T>);
  const std::size_t per_problem = static_cast<std::size_t>(s.n) * row_bytes;
  if (per_problem <= cap) {
    const auto fit = static_cast<std::int64_t>(cap / std::max<std::size_t>(per_problem, 1));
    return {std::clamp<std::int64_t>(fit, 1, std::max<std::int64_t>(s.batch_heads(), 1)), s.n};
  }
  const auto fit = static_cast<std::int64_t>(cap / std::max<std::size_t>(row_bytes, 1));
  return {1, std::clamp<std::int64_t>(fit, 1, s.n)};
}

}  // namespace detail

/// dst[r * ld + c] = src[r * cols + c] rounded to T: a [rows, cols] block in S into a strided block of T.
template <StorageScalar T, Scalar S>
__global__ void store_rows_kernel(std::int64_t rows, std::int64_t cols, const S* src, std::int64_t ld, T* dst) {
  for (std::int64_t t = detail::grid_first(); t < rows * cols; t += detail::grid_stride())
    dst[(t / cols) * ld + t % cols] = detail::store<T>(src[t]);
}

template <StorageScalar T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* o, compute_type_t<T>* lse,
                       compute_type_t<T> scale, cudaStream_t stream) {
  using S = compute_type_t<T>;
  detail::check_attention_shape(s, "cuda_kernels::attention_forward");
  const std::int64_t nbh = s.batch_heads(), n = s.n, m = s.m, d = s.d, ld = s.inner(), H = s.heads;
  if (nbh == 0 || n == 0) return;
  const auto [chunk, tile] = detail::attention_tiling<T>(s);
  auto scores = Tensor<S, cuda>::uninitialized(Shape{chunk, tile, m});  // [chunk, tile, m]
  Tensor<T, cuda> probs16;                                              // P in 16 bits  [chunk, tile, m]
  if constexpr (!std::is_same_v<T, S>) probs16 = Tensor<T, cuda>::uninitialized(Shape{chunk, tile, m});
  T* probs = nullptr;
  if constexpr (std::is_same_v<T, S>)
    probs = scores.data();  // in place
  else
    probs = probs16.data();
  const detail::ProblemOperand<const T> ks{k, m * ld, d, 0}, vs{v, m * ld, d, 0};
  for (std::int64_t p0 = 0; p0 < nbh; p0 += chunk) {
    const std::int64_t count = std::min(nbh, p0 + chunk) - p0;
    for (std::int64_t i0 = 0; i0 < n; i0 += tile) {  // query rows [i0, i0 + rq) of each problem
      const std::int64_t rq = std::min(tile, n - i0), rm = rq * m, rows = count * rq;
      const detail::ProblemOperand<const T> qs{q + i0 * ld, n * ld, d, 0};
      const detail::ProblemOperand<S> sc{scores.data(), H * rm, rm, p0 * rm};
      const detail::ProblemOperand<const T> p_in{probs, H * rm, rm, p0 * rm};
      detail::problem_gemm<T, S>(false, true, rq, m, d, scale, qs, ld, ks, ld, S(0), sc, m, p0, count, H,
                                 stream);  // S = scale Q K^T  [count, rq, m]
      softmax_rows_kernel<T, S><<<detail::row_grid(rows), dim3(32, detail::rows_per_block), 0, stream>>>(
          rows, m, scores.data(), probs, lse + p0 * n + i0, s.causal, rq, i0);  // P, lse  [count, rq]
      SPO_CUDA_CHECK_LAUNCH("softmax_rows_kernel");
      detail::problem_gemm<T, T>(false, false, rq, d, m, S(1), p_in, m, vs, ld, S(0),
                                 detail::ProblemOperand<T>{o + i0 * ld, n * ld, d, 0}, ld, p0, count, H,
                                 stream);  // O = P V  [count, rq, d]
    }
  }
}

template <StorageScalar T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* o, const T* dout,
                        const compute_type_t<T>* lse, T* dq, T* dk, T* dv, compute_type_t<T> scale,
                        cudaStream_t stream) {
  using S = compute_type_t<T>;
  detail::check_attention_shape(s, "cuda_kernels::attention_backward");
  const std::int64_t nbh = s.batch_heads(), n = s.n, m = s.m, d = s.d, ld = s.inner(), H = s.heads;
  if (nbh == 0) return;
  if (n == 0) {
    const std::size_t bytes = static_cast<std::size_t>(s.batch * m * ld) * sizeof(T);
    if (bytes) {
      SPO_CUDA_CHECK(cudaMemsetAsync(dk, 0, bytes, stream));
      SPO_CUDA_CHECK(cudaMemsetAsync(dv, 0, bytes, stream));
    }
    return;
  }
  auto delta = Tensor<S, cuda>::uninitialized(Shape{nbh, n});  // [B * H, n] = rowsum(dO * O)
  attention_delta_kernel<T, S><<<cuda_runtime::grid_1d(nbh * n), cuda_runtime::block_1d, 0, stream>>>(
      nbh * n, s.heads, n, d, o, dout, delta.data());
  SPO_CUDA_CHECK_LAUNCH("attention_delta_kernel");
  const auto [chunk, tile] = detail::attention_tiling<T>(s);
  auto scores = Tensor<S, cuda>::uninitialized(Shape{chunk, tile, m});  // S, then P  [chunk, tile, m]
  auto dprobs = Tensor<S, cuda>::uninitialized(Shape{chunk, tile, m});  // dP  [chunk, tile, m]
  Tensor<T, cuda> probs16;                                              // P, then dS, in 16 bits  [chunk, tile, m]
  if constexpr (!std::is_same_v<T, S>) probs16 = Tensor<T, cuda>::uninitialized(Shape{chunk, tile, m});
  T* pt = nullptr;  // the GEMM operand P, then dS (the scores' own buffer when T is S)
  if constexpr (std::is_same_v<T, S>)
    pt = scores.data();
  else
    pt = probs16.data();
  // dK and dV sum over the query tiles of a tiled problem: in T itself (beta 1 after the first tile) for float and
  // double, in FP32 and rounded once at the end for the 16-bit scalars.
  const bool widen = !std::is_same_v<T, S> && tile < n;
  Tensor<S, cuda> dk_sum, dv_sum;  // [m, d] of one problem
  if (widen) {
    dk_sum = Tensor<S, cuda>::uninitialized(Shape{m, d});
    dv_sum = Tensor<S, cuda>::uninitialized(Shape{m, d});
  }
  const detail::ProblemOperand<const T> ks{k, m * ld, d, 0}, vs{v, m * ld, d, 0};
  for (std::int64_t p0 = 0; p0 < nbh; p0 += chunk) {
    const std::int64_t count = std::min(nbh, p0 + chunk) - p0;
    for (std::int64_t i0 = 0; i0 < n; i0 += tile) {  // query rows [i0, i0 + rq) of each problem
      const std::int64_t rq = std::min(tile, n - i0), rm = rq * m, rows = count * rq;
      S* sp = scores.data();
      S* dp = dprobs.data();
      const S beta = i0 == 0 ? S(0) : S(1);
      const detail::ProblemOperand<const T> qs{q + i0 * ld, n * ld, d, 0}, dos{dout + i0 * ld, n * ld, d, 0};
      const detail::ProblemOperand<S> ss{sp, H * rm, rm, p0 * rm}, dps{dp, H * rm, rm, p0 * rm};
      const detail::ProblemOperand<const T> pt_in{pt, H * rm, rm, p0 * rm};
      // dK or dV of the chunk's problems: the output itself, or (widen, one problem) its FP32 sum.
      auto into = [&](T* out, Tensor<S, cuda>& sum, const detail::ProblemOperand<const T>& b, S alpha) {
        if (widen)
          detail::problem_gemm<T, S>(true, false, m, d, rq, alpha, pt_in, m, b, ld, beta,
                                     detail::ProblemOperand<S>{sum.data(), 0, 0, 0}, d, p0, count, H, stream);
        else
          detail::problem_gemm<T, T>(true, false, m, d, rq, alpha, pt_in, m, b, ld, beta,
                                     detail::ProblemOperand<T>{out, m * ld, d, 0}, ld, p0, count, H, stream);
      };
      detail::problem_gemm<T, S>(false, true, rq, m, d, scale, qs, ld, ks, ld, S(0), ss, m, p0, count, H,
                                 stream);  // S = scale Q K^T  [count, rq, m]
      exp_minus_rows_kernel<T, S><<<detail::row_grid(rows), dim3(32, detail::rows_per_block), 0, stream>>>(
          rows, m, lse + p0 * n + i0, sp, pt, s.causal, rq, i0);  // P = exp(S - lse), 0 above the diagonal
      SPO_CUDA_CHECK_LAUNCH("exp_minus_rows_kernel");
      into(dv, dv_sum, dos, S(1));  // dV (+)= P^T dO  [count, m, d]
      detail::problem_gemm<T, S>(false, true, rq, m, d, S(1), dos, ld, vs, ld, S(0), dps, m, p0, count, H,
                                 stream);  // dP = dO V^T  [count, rq, m]
      softmax_grad_rows_kernel<T, S><<<detail::row_grid(rows), dim3(32, detail::rows_per_block), 0, stream>>>(
          rows, m, dp, delta.data() + p0 * n + i0, sp, pt);  // dS = P * (dP - delta)
      SPO_CUDA_CHECK_LAUNCH("softmax_grad_rows_kernel");
      detail::problem_gemm<T, T>(false, false, rq, d, m, scale, pt_in, m, ks, ld, S(0),
                                 detail::ProblemOperand<T>{dq + i0 * ld, n * ld, d, 0}, ld, p0, count, H,
                                 stream);  // dQ = scale dS K  [count, rq, d]
      into(dk, dk_sum, qs, scale);         // dK (+)= scale dS^T Q  [count, m, d]
    }
    if (widen) {  // one problem p0: its FP32 sums into dK and dV, head p0 % H of batch entry p0 / H
      const std::int64_t at = (p0 / H) * m * ld + (p0 % H) * d;
      store_rows_kernel<T, S>
          <<<cuda_runtime::grid_1d(m * d), cuda_runtime::block_1d, 0, stream>>>(m, d, dk_sum.data(), ld, dk + at);
      SPO_CUDA_CHECK_LAUNCH("store_rows_kernel");
      store_rows_kernel<T, S>
          <<<cuda_runtime::grid_1d(m * d), cuda_runtime::block_1d, 0, stream>>>(m, d, dv_sum.data(), ld, dv + at);
      SPO_CUDA_CHECK_LAUNCH("store_rows_kernel");
    }
  }
}

}  // namespace spo::cuda_kernels
