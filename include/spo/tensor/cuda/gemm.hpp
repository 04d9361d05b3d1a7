// SPDX-License-Identifier: MIT
/// @brief Row-major GEMM on spo::cuda through cuBLAS: C = alpha * op(A) op(B) + beta * C (cpu_kernels::gemm's twin).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// The calling thread's cuBLAS handle for the current device, created on first use and kept for the process
/// (like caching_allocator's pools: destroying it at exit races the runtime's own teardown).
/// Its math mode is CUBLAS_DEFAULT_MATH, so FP32 products never use TF32 unless a call asks for it.
inline cublasHandle_t cublas_handle() {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  int device = 0;
  SPO_CUDA_CHECK(cudaGetDevice(&device));
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cublasHandle_t h = nullptr;
  SPO_CUBLAS_CHECK(cublasCreate(&h));
  SPO_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  handles.emplace(device, h);
  return h;
}

/*!
  WHAT THIS REPRESENTS
    One row-major GEMM C[m, n] = alpha * op(A)[m, k] op(B)[k, n] + beta * C with leading dimensions, on device
    pointers; the same contract as cpu_kernels::gemm (beta == 0 never reads C, so C may hold NaN).
    cuBLAS is column-major: the row-major product is run as C^T = op(B)^T op(A)^T, whose column-major operands
    are exactly the row-major buffers, so no copy is made.
    For the 16-bit storage scalars (half, bfloat16) A, B and C are 16-bit, the products accumulate in FP32
    (CUBLAS_COMPUTE_32F, tensor cores), alpha and beta are floats, and C is rounded once to 16 bits.
  ARGUMENTS
    allow_tf32: float only; lets cuBLAS round FP32 inputs to TF32 on tensor cores (10-bit mantissa, ~1e-3
    relative error). Off by default for parity with the CPU; NVIDIA_TF32_OVERRIDE=0 in the environment also
    forbids it process-wide.
!*/
template <StorageScalar T>
struct Gemm {
  using compute_type = compute_type_t<T>;  ///< alpha, beta and the accumulation
  struct Arguments {
    bool trans_a = false, trans_b = false;
    std::int64_t m = 0, n = 0, k = 0;
    compute_type alpha = compute_type(1);
    const T* a = nullptr;
    std::int64_t lda = 0;
    const T* b = nullptr;
    std::int64_t ldb = 0;
    compute_type beta = compute_type(0);
    T* c = nullptr;
    std::int64_t ldc = 0;
    bool allow_tf32 = false;
  };

  /// True when run(args) is valid; otherwise false, with the reason in *why when given.
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    std::ostringstream os;
    const std::int64_t a_cols = args.trans_a ? args.m : args.k, b_cols = args.trans_b ? args.k : args.n;
    if (args.m < 0 || args.n < 0 || args.k < 0)
      os << "negative size " << args.m << "x" << args.n << "x" << args.k;
    else if (args.m > INT_MAX || args.n > INT_MAX || args.k > INT_MAX || args.lda > INT_MAX || args.ldb > INT_MAX ||
             args.ldc > INT_MAX)
      os << "sizes and leading dimensions must fit in int (cuBLAS 32-bit API)";
    else if (args.m > 0 && args.n > 0) {
      if (args.lda < a_cols)
        os << "lda " << args.lda << " < " << a_cols << " columns of " << (args.trans_a ? "A [k, m]" : "A [m, k]");
      else if (args.ldb < b_cols)
        os << "ldb " << args.ldb << " < " << b_cols << " columns of " << (args.trans_b ? "B [n, k]" : "B [k, n]");
      else if (args.ldc < args.n)
        os << "ldc " << args.ldc << " < n = " << args.n;
      else if (args.c == nullptr || (args.k > 0 && (args.a == nullptr || args.b == nullptr)))
        os << "null operand pointer";
      else if (args.allow_tf32 && !std::is_same_v<T, float>)
        os << "allow_tf32 applies to float only";
    }
    const std::string reason = os.str();
    if (why) *why = reason;
    return reason.empty();
  }

  /// Enqueues the product on `stream` (the legacy default stream when null).
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why),
              "cuda_kernels::Gemm (" << args.m << "x" << args.n << "x" << args.k << "): " << why);
    if (args.m == 0 || args.n == 0) return;
    cublasHandle_t h = cublas_handle();
    SPO_CUBLAS_CHECK(cublasSetStream(h, stream));
    const cublasOperation_t op_b = args.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_a = args.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int n = static_cast<int>(args.n), m = static_cast<int>(args.m), k = static_cast<int>(args.k);
    // Column-major leading dimensions must be >= 1 even when an operand is empty (k == 0).
    const int lda = static_cast<int>(std::max<std::int64_t>(args.lda, 1));
    const int ldb = static_cast<int>(std::max<std::int64_t>(args.ldb, 1));
    const int ldc = static_cast<int>(args.ldc);
    if constexpr (std::is_same_v<T, float>) {
      const cublasComputeType_t compute = args.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      SPO_CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, n, m, k, &args.alpha, args.b, CUDA_R_32F, ldb, args.a, CUDA_R_32F,
                                    lda, &args.beta, args.c, CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT));
    } else if constexpr (HalfScalar<T>) {
      const cudaDataType_t type = std::is_same_v<T, half> ? CUDA_R_16F : CUDA_R_16BF;
      SPO_CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, n, m, k, &args.alpha, args.b, type, ldb, args.a, type, lda,
                                    &args.beta, args.c, type, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
      SPO_CUBLAS_CHECK(
          cublasDgemm(h, op_b, op_a, n, m, k, &args.alpha, args.b, ldb, args.a, lda, &args.beta, args.c, ldc));
    }
  }
};

/// Row-major GEMM with leading dimensions on device pointers; op(A) is [m, k], op(B) is [k, n], C is [m, n].
/// The signature of cpu_kernels::gemm plus an optional stream; FP32 stays FP32 (no TF32).
template <StorageScalar T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, compute_type_t<T> alpha,
          const T* a, std::int64_t lda, const T* b, std::int64_t ldb, compute_type_t<T> beta, T* c, std::int64_t ldc,
          cudaStream_t stream = nullptr) {
  Gemm<T>::run({trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, false}, stream);
}

}  // namespace spo::cuda_kernels

namespace spo::inline kernels {

/// The spo::cuda overload of kernels::gemm (tensor/cpu/gemm.hpp): the same contract on device tensors, through
/// cuBLAS; float products use TF32 only under cuda_runtime::allow_tf32().
template <StorageScalar T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, compute_type_t<T> alpha,
          const Tensor<T, cuda>& a, const Tensor<T, cuda>& b, compute_type_t<T> beta, Tensor<T, cuda>& c) {
  cuda_kernels::Gemm<T>::run({trans_a, trans_b, m, n, k, alpha, a.data(), trans_a ? m : k, b.data(), trans_b ? k : n,
                              beta, c.data(), n, std::is_same_v<T, float> && cuda_runtime::allow_tf32()});
}

}  // namespace spo::inline kernels
