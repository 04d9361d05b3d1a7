// SPDX-License-Identifier: MIT
/// @brief Row-major GEMM on the CPU: C = alpha * op(A) op(B) + beta * C; float through oneDNN, double through Eigen.
#pragma once

#include <cstdint>

#include <Eigen/Core>
#include <oneapi/dnnl/dnnl.hpp>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cpu/dnnl_context.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cpu_kernels {

/// Products with m * n * k below this go to Eigen: oneDNN's per-call overhead (~2-5 us) dominates them.
inline constexpr std::int64_t dnnl_gemm_min_volume = 32 * 32 * 32;

/// Eigen's blocking assumes the L1 it reads (48 KiB on Zen 5) and drops to 20-35 GFLOP/s at n ~ 192-256;
/// a 64 KiB L1 figure removes that cliff (measured on the project's reference machine).
inline void configure_eigen_cache_sizes() {
  static const bool done = [] {
    std::ptrdiff_t l1, l2, l3;
    Eigen::internal::manage_caching_sizes(Eigen::GetAction, &l1, &l2, &l3);
    Eigen::setCpuCacheSizes(65536, l2, l3);
    return true;
  }();
  (void)done;
}

/// The Eigen product for any scalar (the double path, small float products, and the reference in tests).
template <Scalar T>
void gemm_eigen(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  configure_eigen_cache_sizes();
  Eigen::Map<Mat, 0, Stride> cm(c, m, n, Stride(ldc));
  if (m == 0 || n == 0) return;
  if (beta == T(0))
    cm.setZero();
  else if (beta != T(1))
    cm *= beta;
  if (k == 0) return;
  Eigen::Map<const Mat, 0, Stride> am(a, trans_a ? k : m, trans_a ? m : k, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> bm(b, trans_b ? n : k, trans_b ? k : n, Stride(ldb));
  if (!trans_a && !trans_b)
    cm.noalias() += alpha * am * bm;
  else if (trans_a && !trans_b)
    cm.noalias() += alpha * am.transpose() * bm;
  else if (!trans_a && trans_b)
    cm.noalias() += alpha * am * bm.transpose();
  else
    cm.noalias() += alpha * am.transpose() * bm.transpose();
}

/// oneDNN's row-major sgemm (jit AVX-512 kernels on the OpenMP pool); no primitive to create or cache.
inline void gemm_dnnl(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                      const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                      std::int64_t ldc) {
  const dnnl_status_t st =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  SPO_CHECK(st == dnnl_success,
            "dnnl_sgemm(" << m << "x" << n << "x" << k << ") failed with status " << static_cast<int>(st));
}

namespace detail {
/// One cached oneDNN matmul: dst[m, n] = alpha * src[m, k] weights[k, n] + beta * dst, strides from the leading dims.
struct MatmulEntry {
  dnnl::matmul prim;
  dnnl::memory::desc a_md, b_md, c_md;

  /// The primitive for c = alpha * a b + beta * c on the given descriptors (alpha as an output scale, beta as a
  /// sum post-op).
  static MatmulEntry create(dnnl::memory::desc a, dnnl::memory::desc b, dnnl::memory::desc c, float alpha, float beta) {
    dnnl::primitive_attr attr;
    if (alpha != 1.f) attr.set_output_scales(0, {alpha});
    if (beta != 0.f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, DnnlContext::instance().engine());
    return {dnnl::matmul(pd), a, b, c};
  }

  void execute(const float* a, const float* b, float* c) const {
    prim.execute(DnnlContext::instance().stream(), {{DNNL_ARG_SRC, dnnl_wrap(a_md, a)},
                                                    {DNNL_ARG_WEIGHTS, dnnl_wrap(b_md, b)},
                                                    {DNNL_ARG_DST, dnnl_wrap(c_md, c)}});
  }
};
}  // namespace detail

/// oneDNN matmul primitive, cached by (shape, transposition, leading dims, alpha, beta).
inline void gemm_dnnl_matmul(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                             const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                             std::int64_t ldc) {
  using dt = dnnl::memory::data_type;
  DnnlKey key{1, {m, n, k, trans_a, trans_b, lda, ldb, ldc, float_key(alpha), float_key(beta)}};
  using dims = dnnl::memory::dims;
  const auto& e = DnnlCache<detail::MatmulEntry>::instance().get(key, [&] {
    return detail::MatmulEntry::create(dnnl::memory::desc({m, k}, dt::f32, trans_a ? dims{1, lda} : dims{lda, 1}),
                                       dnnl::memory::desc({k, n}, dt::f32, trans_b ? dims{1, ldb} : dims{ldb, 1}),
                                       dnnl::memory::desc({m, n}, dt::f32, dims{ldc, 1}), alpha, beta);
  });
  e.execute(a, b, c);
}

/// Row-major GEMM with leading dimensions; op(A) is [m, k], op(B) is [k, n], C is [m, n].
/// float: oneDNN sgemm above dnnl_gemm_min_volume, Eigen below; double: Eigen.
template <Scalar T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  if constexpr (std::same_as<T, float>) {
    if (m > 0 && n > 0 && k > 0 && m * n * k >= dnnl_gemm_min_volume) {
      gemm_dnnl(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
  }
  gemm_eigen(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// oneDNN batched matmul: `batch` products in one primitive (one parallel region), cached like gemm_dnnl_matmul.
inline void gemm_batched_dnnl(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
                              std::int64_t k, float alpha, const float* a, std::int64_t lda, std::int64_t stride_a,
                              const float* b, std::int64_t ldb, std::int64_t stride_b, float beta, float* c,
                              std::int64_t ldc, std::int64_t stride_c) {
  using dt = dnnl::memory::data_type;
  DnnlKey key{2,
              {batch, m, n, k, trans_a, trans_b, lda, ldb, ldc, stride_a, stride_b, stride_c, float_key(alpha),
               float_key(beta)}};
  using dims = dnnl::memory::dims;
  const auto& e = DnnlCache<detail::MatmulEntry>::instance().get(key, [&] {
    return detail::MatmulEntry::create(
        dnnl::memory::desc({batch, m, k}, dt::f32, trans_a ? dims{stride_a, 1, lda} : dims{stride_a, lda, 1}),
        dnnl::memory::desc({batch, k, n}, dt::f32, trans_b ? dims{stride_b, 1, ldb} : dims{stride_b, ldb, 1}),
        dnnl::memory::desc({batch, m, n}, dt::f32, dims{stride_c, ldc, 1}), alpha, beta);
  });
  e.execute(a, b, c);
}

/// `batch` independent GEMMs; operand i starts at a + i * stride_a (likewise b, c). Used by attention.
/// float: one oneDNN batched matmul (strides must be non-zero; otherwise a loop of gemm); double: a loop of Eigen
/// products.
template <Scalar T>
void gemm_batched(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  T alpha, const T* a, std::int64_t lda, std::int64_t stride_a, const T* b, std::int64_t ldb,
                  std::int64_t stride_b, T beta, T* c, std::int64_t ldc, std::int64_t stride_c) {
  if constexpr (std::same_as<T, float>) {
    // A zero stride (one operand shared by the batch) sends oneDNN 2.6 to its reference kernel: loop instead.
    if (batch > 1 && m > 0 && n > 0 && k > 0 && stride_a != 0 && stride_b != 0 && stride_c != 0) {
      gemm_batched_dnnl(batch, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                        stride_c);
      return;
    }
  }
  for (std::int64_t i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}

}  // namespace spo::cpu_kernels

namespace spo::inline kernels {

/*!
  C = alpha op(A) op(B) + beta C on contiguous row-major matrices held in tensors of any rank: op(A) is [m, k],
  op(B) is [k, n], C is [m, n], and each leading dimension is the stored row length (A: trans_a ? m : k,
  B: trans_b ? k : n, C: n). The CPU overload is cpu_kernels::gemm; beta == 0 never reads C.
  REQUIRES
    - a, b and c hold at least the elements of their matrices
!*/
template <Scalar T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const Tensor<T, cpu>& a,
          const Tensor<T, cpu>& b, T beta, Tensor<T, cpu>& c) {
  cpu_kernels::gemm(trans_a, trans_b, m, n, k, alpha, a.data(), trans_a ? m : k, b.data(), trans_b ? k : n, beta,
                    c.data(), n);
}

}  // namespace spo::inline kernels
