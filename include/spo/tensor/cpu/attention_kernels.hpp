// SPDX-License-Identifier: MIT
/// @brief Scaled dot-product attention on the CPU: a fused, blocked online-softmax path and a materialised reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/parallel.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cpu_kernels {

/// Extents of one attention call: `batch * heads` independent problems with n queries, m keys, head width d.
struct AttentionShape {
  std::int64_t batch = 0, heads = 0, n = 0, m = 0, d = 0;
  std::int64_t batch_heads() const { return batch * heads; }
};

/*!
  WHAT THIS REPRESENTS
    The per-(batch, head) matrices of a [rows, d] operand: row i, column c of head (b, h) is
    data[b * batch_stride + h * head_stride + i * row_stride + c]. Columns are contiguous, rows may be strided,
    so the heads can be read straight out of a projection output [B, rows, H * d] without a split copy.
!*/
template <class T>
struct HeadMatrices {
  T* data = nullptr;
  std::int64_t batch_stride = 0, head_stride = 0, row_stride = 0;

  HeadMatrices() = default;
  HeadMatrices(T* p, std::int64_t bs, std::int64_t hs, std::int64_t rs)
      : data(p), batch_stride(bs), head_stride(hs), row_stride(rs) {}
  template <class U>
    requires(std::is_const_v<T> && std::same_as<std::remove_const_t<T>, U>)
  HeadMatrices(HeadMatrices<U> o) : data(o.data), batch_stride(o.batch_stride), head_stride(o.head_stride), row_stride(o.row_stride) {}

  T* head(std::int64_t b, std::int64_t h) const { return data + b * batch_stride + h * head_stride; }
};

/// Heads stored as [B * H, rows, d] (torch's `head_to_batch_dim` layout).
template <class T>
HeadMatrices<T> packed_heads(T* data, std::int64_t heads, std::int64_t rows, std::int64_t d) {
  return {data, heads * rows * d, rows * d, d};
}
/// Heads interleaved in a projection output [B, rows, H * d] (head h = columns [h * d, (h + 1) * d)).
template <class T>
HeadMatrices<T> interleaved_heads(T* data, std::int64_t heads, std::int64_t rows, std::int64_t d) {
  return {data, rows * heads * d, d, heads * d};
}

/// Block extents of the fused path: queries per work item, keys per online-softmax step (forward and backward).
inline constexpr std::int64_t attention_query_block = 64;
inline constexpr std::int64_t attention_key_block = 256;
inline constexpr std::int64_t attention_backward_query_block = 64;
inline constexpr std::int64_t attention_backward_key_block = 128;

namespace detail {

template <class T>
using AttnMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using AttnMap = Eigen::Map<AttnMatrix<std::remove_const_t<T>>, 0, Eigen::OuterStride<>>;
template <class T>
using AttnConstMap = Eigen::Map<const AttnMatrix<std::remove_const_t<T>>, 0, Eigen::OuterStride<>>;

/// Rows [first, first + rows) of head (b, h) as a rows x d matrix.
template <class T>
auto head_block(const HeadMatrices<T>& a, std::int64_t b, std::int64_t h, std::int64_t first, std::int64_t rows,
                std::int64_t d) {
  using Map = std::conditional_t<std::is_const_v<T>, AttnConstMap<T>, AttnMap<T>>;
  return Map(a.head(b, h) + first * a.row_stride, rows, d, Eigen::OuterStride<>(a.row_stride));
}

inline void check_attention_shape(const AttentionShape& s, const char* what) {
  SPO_CHECK(s.batch >= 0 && s.heads >= 1 && s.n >= 0 && s.d >= 1, what << ": invalid extents batch " << s.batch
                                                                        << ", heads " << s.heads << ", n " << s.n
                                                                        << ", d " << s.d);
  SPO_CHECK(s.m >= 1 || s.n == 0, what << ": " << s.n << " queries attend to zero keys");
}

/// Per-thread scratch that grows to the largest request and is reused across calls.
template <class T>
T* scratch(std::size_t slot, std::size_t count) {
  thread_local std::vector<std::vector<T>> buffers;
  if (buffers.size() <= slot) buffers.resize(slot + 1);
  if (buffers[slot].size() < count) buffers[slot].resize(count);
  return buffers[slot].data();
}

}  // namespace detail

/*!
  Fused forward of O = softmax(scale * Q K^T) V per head, never holding more than a
  [attention_query_block, attention_key_block] tile of scores (FlashAttention's online softmax,
  Dao et al. 2022, Alg. 1; torch: F.scaled_dot_product_attention).
  REQUIRES
    - q, o: [n, d] per head; k, v: [m, d] per head; lse: batch * heads * n values ([B, H, n])
  ENSURES
    - o = softmax(scale q k^T) v and lse[(b * heads + h) * n + i] = log sum_j exp(scale q_i . k_j), the row statistic
      that attention_backward recomputes the probabilities from
!*/
template <Scalar T>
void attention_forward(const AttentionShape& s, std::type_identity_t<HeadMatrices<const T>> q,
                       std::type_identity_t<HeadMatrices<const T>> k, std::type_identity_t<HeadMatrices<const T>> v,
                       HeadMatrices<T> o, T* lse, T scale) {
  detail::check_attention_shape(s, "attention_forward");
  constexpr std::int64_t br = attention_query_block, bc = attention_key_block;
  const std::int64_t d = s.d, qblocks = (s.n + br - 1) / br;
  using Mat = Eigen::Map<detail::AttnMatrix<T>>;
  using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  parallel_for(0, s.batch_heads() * qblocks, [&](std::int64_t item) {
    const std::int64_t bh = item / qblocks, b = bh / s.heads, h = bh % s.heads;
    const std::int64_t i0 = (item % qblocks) * br, rows = std::min(br, s.n - i0);
    Mat qs(detail::scratch<T>(0, br * d), rows, d);                          // [rows, d]
    Mat acc(detail::scratch<T>(1, br * d), rows, d);                         // [rows, d]
    Mat sc(detail::scratch<T>(2, br * bc), rows, std::min(bc, s.m));         // [rows, bc]
    Vec mx(detail::scratch<T>(3, br), rows), l(detail::scratch<T>(4, br), rows);
    qs.noalias() = scale * detail::head_block(q, b, h, i0, rows, d);
    for (std::int64_t j0 = 0; j0 < s.m; j0 += bc) {
      const std::int64_t cols = std::min(bc, s.m - j0);
      auto kj = detail::head_block(k, b, h, j0, cols, d);                    // [cols, d]
      auto vj = detail::head_block(v, b, h, j0, cols, d);                    // [cols, d]
      Mat st(sc.data(), rows, cols);                                         // [rows, cols]
      st.noalias() = qs * kj.transpose();
      for (std::int64_t r = 0; r < rows; ++r) {
        auto row = st.row(r).array();
        const T row_max = row.maxCoeff();
        if (j0 == 0) {
          row = (row - row_max).exp();
          mx[r] = row_max;
          l[r] = row.sum();
        } else {
          const T new_max = std::max(mx[r], row_max);
          row = (row - new_max).exp();
          const T alpha = std::exp(mx[r] - new_max);
          mx[r] = new_max;
          l[r] = alpha * l[r] + row.sum();
          acc.row(r) *= alpha;
        }
      }
      if (j0 == 0) acc.noalias() = st * vj;
      else acc.noalias() += st * vj;
    }
    auto ob = detail::head_block(o, b, h, i0, rows, d);                      // [rows, d]
    T* lse_row = lse + bh * s.n + i0;
    for (std::int64_t r = 0; r < rows; ++r) {
      ob.row(r) = acc.row(r) * (T(1) / l[r]);
      lse_row[r] = mx[r] + std::log(l[r]);
    }
  });
}

/*!
  Fused backward of attention_forward, recomputing P = exp(scale q k^T - lse) tile by tile (FlashAttention-2,
  Dao 2023, Alg. 2): with delta_i = dO_i . O_i,
    dV = P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  dQ = scale dS K,  dK = scale dS^T Q.
  Work items are (batch * head, key chunk); each owns its dK and dV rows, and dQ partial sums of several key
  chunks of one head are reduced afterwards (chunks > 1 only when there are fewer heads than 2 per thread).
  REQUIRES
    - q, k, v, o, lse as produced by attention_forward with the same shape and scale; dout like o
  ENSURES
    - dq, dk, dv are overwritten with the gradients of sum(o * dout)
!*/
template <Scalar T>
void attention_backward(const AttentionShape& s, std::type_identity_t<HeadMatrices<const T>> q,
                        std::type_identity_t<HeadMatrices<const T>> k, std::type_identity_t<HeadMatrices<const T>> v,
                        std::type_identity_t<HeadMatrices<const T>> o, std::type_identity_t<HeadMatrices<const T>> dout,
                        const T* lse, HeadMatrices<T> dq, HeadMatrices<T> dk, HeadMatrices<T> dv, T scale) {
  detail::check_attention_shape(s, "attention_backward");
  constexpr std::int64_t br = attention_backward_query_block, bc = attention_backward_key_block;
  const std::int64_t d = s.d, n = s.n, m = s.m, nbh = s.batch_heads();
  using Mat = Eigen::Map<detail::AttnMatrix<T>>;
  using ConstMat = Eigen::Map<const detail::AttnMatrix<T>>;
  if (n == 0) {
    parallel_for(0, nbh, [&](std::int64_t bh) {
      detail::head_block(dk, bh / s.heads, bh % s.heads, 0, m, d).setZero();
      detail::head_block(dv, bh / s.heads, bh % s.heads, 0, m, d).setZero();
    });
    return;
  }

  auto delta = Tensor<T, cpu>::uninitialized(Shape{nbh, n});                 // [BH, n]
  parallel_for(0, nbh, [&](std::int64_t bh) {
    const std::int64_t b = bh / s.heads, h = bh % s.heads;
    auto ob = detail::head_block(o, b, h, 0, n, d);
    auto gb = detail::head_block(dout, b, h, 0, n, d);
    T* out = delta.data() + bh * n;
    for (std::int64_t i = 0; i < n; ++i) out[i] = ob.row(i).dot(gb.row(i));
  });

  const std::int64_t kblocks = (m + bc - 1) / bc;
  const std::int64_t threads = num_threads();
  const std::int64_t chunks = nbh >= 2 * threads ? 1 : std::min(kblocks, (2 * threads + nbh - 1) / nbh);
  const std::int64_t blocks_per_chunk = (kblocks + chunks - 1) / chunks;
  Tensor<T, cpu> dq_partial;
  if (chunks > 1) dq_partial = Tensor<T, cpu>::uninitialized(Shape{nbh, chunks, n, d});  // [BH, chunks, n, d]

  parallel_for(0, nbh * chunks, [&](std::int64_t item) {
    const std::int64_t bh = item / chunks, chunk = item % chunks, b = bh / s.heads, h = bh % s.heads;
    HeadMatrices<T> dq_target = chunks == 1 ? dq : HeadMatrices<T>(dq_partial.data() + (bh * chunks + chunk) * n * d, 0, 0, d);
    const std::int64_t tb = chunks == 1 ? b : 0, th = chunks == 1 ? h : 0;
    detail::head_block(dq_target, tb, th, 0, n, d).setZero();
    const T* lse_head = lse + bh * n;
    const T* delta_head = delta.data() + bh * n;
    Mat dk_acc(detail::scratch<T>(0, bc * d), bc, d), dv_acc(detail::scratch<T>(1, bc * d), bc, d);
    T* p_buf = detail::scratch<T>(2, br * bc);
    T* dp_buf = detail::scratch<T>(3, br * bc);
    const std::int64_t kb_end = std::min(kblocks, (chunk + 1) * blocks_per_chunk);
    for (std::int64_t kb = chunk * blocks_per_chunk; kb < kb_end; ++kb) {
      const std::int64_t j0 = kb * bc, cols = std::min(bc, m - j0);
      auto kj = detail::head_block(k, b, h, j0, cols, d);                    // [cols, d]
      auto vj = detail::head_block(v, b, h, j0, cols, d);                    // [cols, d]
      Mat dka(dk_acc.data(), cols, d), dva(dv_acc.data(), cols, d);          // [cols, d]
      dka.setZero();
      dva.setZero();
      for (std::int64_t i0 = 0; i0 < n; i0 += br) {
        const std::int64_t rows = std::min(br, n - i0);
        auto qi = detail::head_block(q, b, h, i0, rows, d);                  // [rows, d]
        auto gi = detail::head_block(dout, b, h, i0, rows, d);               // [rows, d]
        Mat p(p_buf, rows, cols), dp(dp_buf, rows, cols);                    // [rows, cols]
        p.noalias() = qi * kj.transpose();
        for (std::int64_t r = 0; r < rows; ++r) p.row(r).array() = (scale * p.row(r).array() - lse_head[i0 + r]).exp();
        dva.noalias() += p.transpose() * gi;
        dp.noalias() = gi * vj.transpose();
        for (std::int64_t r = 0; r < rows; ++r)
          dp.row(r).array() = p.row(r).array() * (dp.row(r).array() - delta_head[i0 + r]);
        detail::head_block(dq_target, tb, th, i0, rows, d).noalias() += scale * dp * kj;
        dka.noalias() += dp.transpose() * qi;
      }
      detail::head_block(dk, b, h, j0, cols, d) = scale * dka;
      detail::head_block(dv, b, h, j0, cols, d) = dva;
    }
  });

  if (chunks > 1) {
    parallel_for(0, nbh, [&](std::int64_t bh) {
      auto target = detail::head_block(dq, bh / s.heads, bh % s.heads, 0, n, d);
      const T* base = dq_partial.data() + bh * chunks * n * d;
      target = ConstMat(base, n, d);
      for (std::int64_t c = 1; c < chunks; ++c) target += ConstMat(base + c * n * d, n, d);
    });
  }
}

/// Reference forward that materialises softmax(scale Q K^T) per head ([n, m]); for tests and as a baseline.
template <Scalar T>
void attention_forward_reference(const AttentionShape& s, std::type_identity_t<HeadMatrices<const T>> q,
                                 std::type_identity_t<HeadMatrices<const T>> k,
                                 std::type_identity_t<HeadMatrices<const T>> v, HeadMatrices<T> o, T scale) {
  detail::check_attention_shape(s, "attention_forward_reference");
  parallel_for(0, s.batch_heads(), [&](std::int64_t bh) {
    const std::int64_t b = bh / s.heads, h = bh % s.heads;
    detail::AttnMatrix<T> p = scale * detail::head_block(q, b, h, 0, s.n, s.d) *
                              detail::head_block(k, b, h, 0, s.m, s.d).transpose();   // [n, m]
    for (std::int64_t i = 0; i < s.n; ++i) {
      p.row(i).array() = (p.row(i).array() - p.row(i).maxCoeff()).exp();
      p.row(i) /= p.row(i).sum();
    }
    detail::head_block(o, b, h, 0, s.n, s.d) = p * detail::head_block(v, b, h, 0, s.m, s.d);
  });
}

/// Reference backward from the materialised probabilities P [n, m]: dS = P * (dP - rowsum(P * dP)).
template <Scalar T>
void attention_backward_reference(const AttentionShape& s, std::type_identity_t<HeadMatrices<const T>> q,
                                  std::type_identity_t<HeadMatrices<const T>> k,
                                  std::type_identity_t<HeadMatrices<const T>> v,
                                  std::type_identity_t<HeadMatrices<const T>> dout, HeadMatrices<T> dq,
                                  HeadMatrices<T> dk, HeadMatrices<T> dv, T scale) {
  detail::check_attention_shape(s, "attention_backward_reference");
  parallel_for(0, s.batch_heads(), [&](std::int64_t bh) {
    const std::int64_t b = bh / s.heads, h = bh % s.heads;
    auto qh = detail::head_block(q, b, h, 0, s.n, s.d);
    auto kh = detail::head_block(k, b, h, 0, s.m, s.d);
    auto vh = detail::head_block(v, b, h, 0, s.m, s.d);
    auto gh = detail::head_block(dout, b, h, 0, s.n, s.d);
    detail::AttnMatrix<T> p = scale * qh * kh.transpose();                  // [n, m]
    for (std::int64_t i = 0; i < s.n; ++i) {
      p.row(i).array() = (p.row(i).array() - p.row(i).maxCoeff()).exp();
      p.row(i) /= p.row(i).sum();
    }
    detail::AttnMatrix<T> dp = gh * vh.transpose();                         // [n, m]
    detail::AttnMatrix<T> ds = p.cwiseProduct(dp);                           // [n, m]
    for (std::int64_t i = 0; i < s.n; ++i) ds.row(i) -= p.row(i) * ds.row(i).sum();
    detail::head_block(dv, b, h, 0, s.m, s.d) = p.transpose() * gh;
    detail::head_block(dq, b, h, 0, s.n, s.d) = scale * ds * kh;
    detail::head_block(dk, b, h, 0, s.m, s.d) = scale * ds.transpose() * qh;
  });
}

}  // namespace spo::cpu_kernels
