// SPDX-License-Identifier: MIT
/// @brief Row-major GEMM on the CPU: C = alpha * op(A) op(B) + beta * C.
#pragma once

#include <cstdint>

#include <Eigen/Core>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"

namespace spo::cpu_kernels {

/// Row-major GEMM with leading dimensions; op(A) is [m, k], op(B) is [k, n], C is [m, n].
template <Scalar T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<Mat, 0, Stride> cm(c, m, n, Stride(ldc));
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == T(0)) cm.setZero(); else cm *= beta;
    return;
  }
  Eigen::Map<const Mat, 0, Stride> am(a, trans_a ? k : m, trans_a ? m : k, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> bm(b, trans_b ? n : k, trans_b ? k : n, Stride(ldb));
  if (beta == T(0)) cm.setZero();
  else if (beta != T(1)) cm *= beta;
  if (!trans_a && !trans_b) cm.noalias() += alpha * am * bm;
  else if (trans_a && !trans_b) cm.noalias() += alpha * am.transpose() * bm;
  else if (!trans_a && trans_b) cm.noalias() += alpha * am * bm.transpose();
  else cm.noalias() += alpha * am.transpose() * bm.transpose();
}

}  // namespace spo::cpu_kernels
