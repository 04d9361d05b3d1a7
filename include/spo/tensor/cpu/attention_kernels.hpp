// SPDX-License-Identifier: MIT
/// @brief Scaled dot-product attention on the CPU: a fused, blocked online-softmax path and a materialised reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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
/// causal: query i sees keys j <= i only (torch's is_causal, aligned top-left; CLIP's text transformer).
struct AttentionShape {
  std::int64_t batch = 0, heads = 0, n = 0, m = 0, d = 0;
  bool causal = false;
  std::int64_t batch_heads() const { return batch * heads; }
  /// Keys [j0, j0 + cols) that query i sees: their count from j0 (0 when it sees none of them).
  std::int64_t visible_keys(std::int64_t i, std::int64_t j0, std::int64_t cols) const {
    return causal ? std::clamp<std::int64_t>(i - j0 + 1, 0, cols) : cols;
  }
  /// True when no query of [i0, i0 + rows) sees any key from j0 on.
  bool masked_block(std::int64_t i0, std::int64_t rows, std::int64_t j0) const { return causal && j0 > i0 + rows - 1; }
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
  requires(std::is_const_v<T>&& std::same_as<std::remove_const_t<T>, U>) HeadMatrices(HeadMatrices<U> o)
      : data(o.data), batch_stride(o.batch_stride), head_stride(o.head_stride), row_stride(o.row_stride) {}

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
  SPO_CHECK(s.batch >= 0 && s.heads >= 1 && s.n >= 0 && s.d >= 1,
            what << ": invalid extents batch " << s.batch << ", heads " << s.heads << ", n " << s.n << ", d " << s.d);
  SPO_CHECK(s.m >= 1 || s.n == 0, what << ": " << s.n << " queries attend to zero keys");
}

/// Per-thread, 64-byte aligned scratch that grows to the largest request and is reused across calls.
template <class T>
T* scratch(std::size_t slot, std::size_t count) {
  constexpr std::size_t pad = 64 / sizeof(T);
  thread_local std::vector<std::vector<T>> buffers;
  if (buffers.size() <= slot) buffers.resize(slot + 1);
  if (buffers[slot].size() < count + pad) buffers[slot].resize(count + pad);
  const auto address = reinterpret_cast<std::uintptr_t>(buffers[slot].data());
  return buffers[slot].data() + (((64 - address % 64) % 64) / sizeof(T));
}

/// The tile kernels' vector width and register tile follow the target ISA: C += A B keeps rows x 2 vector
/// accumulators, 2 B vectors and one broadcast in registers (AVX-512: 32 registers of 64 bytes, 8 rows; AVX2 and
/// SSE: 16 registers of 32 / 16 bytes, 6 rows). Wider vectors than the ISA's would be split by the compiler and the
/// accumulators spilled to memory on every step of the depth loop.
#if defined(__AVX512F__)
inline constexpr std::size_t simd_bytes = 64;
inline constexpr int tile_rows = 8;
#elif defined(__AVX__)
inline constexpr std::size_t simd_bytes = 32;
inline constexpr int tile_rows = 6;
#else
inline constexpr std::size_t simd_bytes = 16;
inline constexpr int tile_rows = 6;
#endif

/// Elements per SIMD register for the tile kernels.
template <class T>
inline constexpr std::int64_t simd_width = simd_bytes / sizeof(T);
template <class T>
struct simd_register;
template <>
struct simd_register<float> {
  using type = float __attribute__((vector_size(simd_bytes)));
};
template <>
struct simd_register<double> {
  using type = double __attribute__((vector_size(simd_bytes)));
};
template <class T>
using Simd = typename simd_register<T>::type;

/// Columns per register tile of tile_gemm.
template <class T>
inline constexpr std::int64_t tile_panel = 2 * simd_width<T>;

inline std::int64_t round_up(std::int64_t x, std::int64_t to) { return (x + to - 1) / to * to; }

/// dst[kk * ldb + j] = src[kk * src_k + j * src_n] for kk < k, j < n; columns [n, ldb) are zero.
template <class T>
void pack_panel(const T* src, std::int64_t src_k, std::int64_t src_n, std::int64_t k, std::int64_t n, T* dst,
                std::int64_t ldb) {
  for (std::int64_t kk = 0; kk < k; ++kk) {
    T* row = dst + kk * ldb;
    if (src_n == 1) {
      std::copy(src + kk * src_k, src + kk * src_k + n, row);
    } else {
      for (std::int64_t j = 0; j < n; ++j) row[j] = src[kk * src_k + j * src_n];
    }
    std::fill(row + n, row + ldb, T(0));
  }
}

/// R x (NV * simd_width) tile of C (+)= A B over depth k: A(r, kk) = a[r * a_r + kk * a_k] is broadcast, B is a
/// packed panel with row stride ldb; only the first `width` columns of the tile are stored.
template <class T, int R, int NV>
inline void gemm_tile(std::int64_t k, const T* a, std::int64_t a_r, std::int64_t a_k, const T* b, std::int64_t ldb,
                      T* c, std::int64_t ldc, std::int64_t width, bool accumulate) {
  constexpr std::int64_t lanes = simd_width<T>;
  Simd<T> acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = Simd<T>{};
  for (std::int64_t kk = 0; kk < k; ++kk) {
    Simd<T> bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + kk * ldb + v * lanes, sizeof(Simd<T>));
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const T s = a[r * a_r + kk * a_k];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += s * bv[v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    T* crow = c + r * ldc;
    if (width == NV * lanes) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        Simd<T> out = acc[r][v];
        if (accumulate) {
          Simd<T> prev;
          std::memcpy(&prev, crow + v * lanes, sizeof(Simd<T>));
          out += prev;
        }
        std::memcpy(crow + v * lanes, &out, sizeof(Simd<T>));
      }
    } else {
      alignas(64) T tmp[NV * lanes];
      std::memcpy(tmp, &acc[r][0], sizeof(tmp));
      for (std::int64_t j = 0; j < width; ++j) crow[j] = accumulate ? crow[j] + tmp[j] : tmp[j];
    }
  }
}

template <class T, int R, int NV>
void gemm_rows(std::int64_t rows, std::int64_t k, const T* a, std::int64_t a_r, std::int64_t a_k, const T* b,
               std::int64_t ldb, T* c, std::int64_t ldc, std::int64_t width, bool accumulate) {
  if constexpr (R > 0) {
    if (rows == R)
      gemm_tile<T, R, NV>(k, a, a_r, a_k, b, ldb, c, ldc, width, accumulate);
    else
      gemm_rows<T, R - 1, NV>(rows, k, a, a_r, a_k, b, ldb, c, ldc, width, accumulate);
  }
}

/*!
  C[m, n] = A B (or C += A B) for the small products of one attention tile.
  A(r, kk) = a[r * a_r + kk * a_k] (any strides: A or A^T of a row-major block); B [k, n] row-major with row stride
  ldb, readable up to column round_up(n, simd_width<T>) (a padded panel from pack_panel, or any B with
  n % simd_width<T> == 0); C row-major with row stride ldc.
!*/
template <class T>
void tile_gemm(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t a_r, std::int64_t a_k,
               const T* b, std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate) {
  constexpr int rows_per_tile = tile_rows, vectors = tile_panel<T> / simd_width<T>;
  constexpr std::int64_t panel = tile_panel<T>;
  for (std::int64_t j0 = 0; j0 < n; j0 += panel) {
    const std::int64_t width = std::min(panel, n - j0);
    for (std::int64_t r0 = 0; r0 < m; r0 += rows_per_tile) {
      const std::int64_t rows = std::min<std::int64_t>(rows_per_tile, m - r0);
      if (width > simd_width<T>)
        gemm_rows<T, rows_per_tile, vectors>(rows, k, a + r0 * a_r, a_r, a_k, b + j0, ldb, c + r0 * ldc + j0, ldc,
                                             width, accumulate);
      else  // one vector: B is never read past column round_up(n, simd_width)
        gemm_rows<T, rows_per_tile, 1>(rows, k, a + r0 * a_r, a_r, a_k, b + j0, ldb, c + r0 * ldc + j0, ldc, width,
                                       accumulate);
    }
  }
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
    - with s.causal, the sums and the softmax run over keys j <= i only; key blocks that no query of a block sees
      are skipped
!*/
template <Scalar T>
void attention_forward(const AttentionShape& s, std::type_identity_t<HeadMatrices<const T>> q,
                       std::type_identity_t<HeadMatrices<const T>> k, std::type_identity_t<HeadMatrices<const T>> v,
                       HeadMatrices<T> o, T* lse, T scale) {
  detail::check_attention_shape(s, "attention_forward");
  constexpr std::int64_t br = attention_query_block, bc = attention_key_block, lanes = detail::simd_width<T>;
  const std::int64_t d = s.d, qblocks = (s.n + br - 1) / br, dpad = detail::round_up(d, lanes);
  const std::int64_t cpad_max = detail::round_up(std::min(bc, s.m), lanes);
  const bool direct = d % lanes == 0;  // V read in place, no padded copy
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  // Work items are (batch * head, group of query blocks): whole heads when there are enough of them, so that each
  // key block is packed once per item; smaller groups when heads are fewer than 4 per thread.
  const std::int64_t nbh = s.batch_heads();
  const std::int64_t groups = std::clamp<std::int64_t>((4 * num_threads() + nbh - 1) / std::max<std::int64_t>(nbh, 1),
                                                       1, std::max<std::int64_t>(qblocks, 1));
  const std::int64_t blocks_per_group = (qblocks + groups - 1) / groups;
  const std::int64_t group_rows = blocks_per_group * br;
  parallel_for(0, nbh * groups, [&](std::int64_t item) {
    const std::int64_t bh = item / groups, b = bh / s.heads, h = bh % s.heads;
    const std::int64_t g0 = (item % groups) * group_rows, g1 = std::min(s.n, g0 + group_rows);
    if (g0 >= g1) return;
    T* kt = detail::scratch<T>(0, d * cpad_max);              // K_j^T [d, cpad]
    T* vp = detail::scratch<T>(1, std::min(bc, s.m) * dpad);  // V_j [cols, dpad]
    T* sc = detail::scratch<T>(2, br * cpad_max);             // S, then P [rows, cpad]
    T* acc = detail::scratch<T>(3, group_rows * dpad);        // [group rows, dpad]
    T* mx = detail::scratch<T>(4, group_rows);                // running max of scale * S
    T* l = detail::scratch<T>(5, group_rows);                 // running sum of exp
    for (std::int64_t j0 = 0; j0 < s.m; j0 += bc) {
      const std::int64_t cols = std::min(bc, s.m - j0), cpad = detail::round_up(cols, lanes);
      detail::pack_panel(k.head(b, h) + j0 * k.row_stride, std::int64_t{1}, k.row_stride, d, cols, kt, cpad);
      const T* vj = v.head(b, h) + j0 * v.row_stride;  // [cols, d]
      if (!direct) detail::pack_panel(vj, v.row_stride, std::int64_t{1}, cols, d, vp, dpad);
      for (std::int64_t i0 = g0; i0 < g1; i0 += br) {
        const std::int64_t rows = std::min(br, g1 - i0), off = i0 - g0;
        if (s.masked_block(i0, rows, j0)) continue;  // j0 > 0 here: every row already saw key 0
        T* acc_i = acc + off * dpad;
        detail::tile_gemm(rows, cols, d, q.head(b, h) + i0 * q.row_stride, q.row_stride, std::int64_t{1}, kt, cpad, sc,
                          cpad, false);  // q k^T
        for (std::int64_t r = 0; r < rows; ++r) {
          const std::int64_t visible = s.visible_keys(i0 + r, j0, cols);
          if (visible == 0) {  // a later key block of a causal row: P = 0, statistics unchanged
            Row(sc + r * cpad, cols).setZero();
            continue;
          }
          Row row(sc + r * cpad, visible), padded(sc + r * cpad, cpad);  // exp over whole vectors; padding unused
          const T row_max = scale * row.maxCoeff();
          if (j0 == 0) {
            padded = (scale * padded - row_max).exp();
            if (visible < cols) Row(sc + r * cpad + visible, cols - visible).setZero();
            mx[off + r] = row_max;
            l[off + r] = row.sum();
          } else {
            const T new_max = std::max(mx[off + r], row_max);
            padded = (scale * padded - new_max).exp();
            if (visible < cols) Row(sc + r * cpad + visible, cols - visible).setZero();
            const T alpha = std::exp(mx[off + r] - new_max);
            mx[off + r] = new_max;
            l[off + r] = alpha * l[off + r] + row.sum();
            Row(acc_i + r * dpad, d) *= alpha;
          }
        }
        detail::tile_gemm(rows, d, cols, sc, cpad, std::int64_t{1}, direct ? vj : vp, direct ? v.row_stride : dpad,
                          acc_i, dpad, j0 != 0);  // P V
      }
    }
    T* oi = o.head(b, h) + g0 * o.row_stride;
    T* lse_row = lse + bh * s.n + g0;
    for (std::int64_t r = 0; r < g1 - g0; ++r) {
      const T inv = T(1) / l[r];
      for (std::int64_t c = 0; c < d; ++c) oi[r * o.row_stride + c] = acc[r * dpad + c] * inv;
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
    - q, k, v, o, lse as produced by attention_forward with the same shape (causal included) and scale; dout like o
  ENSURES
    - dq, dk, dv are overwritten with the gradients of sum(o * dout); with s.causal, P is zero above the diagonal
      (j > i) and tiles that no query sees are skipped
!*/
template <Scalar T>
void attention_backward(const AttentionShape& s, std::type_identity_t<HeadMatrices<const T>> q,
                        std::type_identity_t<HeadMatrices<const T>> k, std::type_identity_t<HeadMatrices<const T>> v,
                        std::type_identity_t<HeadMatrices<const T>> o, std::type_identity_t<HeadMatrices<const T>> dout,
                        const T* lse, HeadMatrices<T> dq, HeadMatrices<T> dk, HeadMatrices<T> dv, T scale) {
  detail::check_attention_shape(s, "attention_backward");
  constexpr std::int64_t br = attention_backward_query_block, bc = attention_backward_key_block;
  constexpr std::int64_t lanes = detail::simd_width<T>;
  const std::int64_t d = s.d, n = s.n, m = s.m, nbh = s.batch_heads(), dpad = detail::round_up(d, lanes);
  const std::int64_t cpad_max = detail::round_up(std::min(bc, m), lanes);
  const bool direct = d % lanes == 0;  // K, Q, dO read in place
  using ConstMat = Eigen::Map<const detail::AttnMatrix<T>>;
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  if (n == 0) {
    parallel_for(0, nbh, [&](std::int64_t bh) {
      detail::head_block(dk, bh / s.heads, bh % s.heads, 0, m, d).setZero();
      detail::head_block(dv, bh / s.heads, bh % s.heads, 0, m, d).setZero();
    });
    return;
  }

  const std::int64_t kblocks = (m + bc - 1) / bc;
  const std::int64_t threads = num_threads();
  const std::int64_t chunks = nbh >= 2 * threads ? 1 : std::min(kblocks, (2 * threads + nbh - 1) / nbh);
  const std::int64_t blocks_per_chunk = (kblocks + chunks - 1) / chunks;
  Tensor<T, cpu> dq_partial;
  if (chunks > 1) dq_partial = Tensor<T, cpu>::uninitialized(Shape{nbh, chunks, n, d});  // [BH, chunks, n, d]

  parallel_for(0, nbh * chunks, [&](std::int64_t item) {
    const std::int64_t bh = item / chunks, chunk = item % chunks, b = bh / s.heads, h = bh % s.heads;
    HeadMatrices<T> dq_target =
        chunks == 1 ? dq : HeadMatrices<T>(dq_partial.data() + (bh * chunks + chunk) * n * d, 0, 0, d);
    const std::int64_t tb = chunks == 1 ? b : 0, th = chunks == 1 ? h : 0;
    detail::head_block(dq_target, tb, th, 0, n, d).setZero();
    T* dq_head = dq_target.head(tb, th);
    const T* lse_head = lse + bh * n;
    T* delta_head = detail::scratch<T>(9, n);  // delta_i = dO_i . O_i  [n]
    {
      auto ob = detail::head_block(o, b, h, 0, n, d);
      auto gb = detail::head_block(dout, b, h, 0, n, d);
      for (std::int64_t i = 0; i < n; ++i) delta_head[i] = ob.row(i).dot(gb.row(i));
    }
    T* kt = detail::scratch<T>(0, d * cpad_max);   // K_j^T [d, cpad]
    T* vt = detail::scratch<T>(1, d * cpad_max);   // V_j^T [d, cpad]
    T* kp = detail::scratch<T>(2, bc * dpad);      // K_j [cols, dpad]
    T* qp = detail::scratch<T>(3, br * dpad);      // Q_i [rows, dpad]
    T* gp = detail::scratch<T>(4, br * dpad);      // dO_i [rows, dpad]
    T* p = detail::scratch<T>(5, br * cpad_max);   // P [rows, cpad]
    T* ds = detail::scratch<T>(6, br * cpad_max);  // dP, then scale * dS [rows, cpad]
    T* dka = detail::scratch<T>(7, bc * dpad);     // dK_j [cols, dpad]
    T* dva = detail::scratch<T>(8, bc * dpad);     // dV_j [cols, dpad]
    const std::int64_t kb_end = std::min(kblocks, (chunk + 1) * blocks_per_chunk);
    for (std::int64_t kb = chunk * blocks_per_chunk; kb < kb_end; ++kb) {
      const std::int64_t j0 = kb * bc, cols = std::min(bc, m - j0), cpad = detail::round_up(cols, lanes);
      const T* kj = k.head(b, h) + j0 * k.row_stride;
      const T* vj = v.head(b, h) + j0 * v.row_stride;
      detail::pack_panel(kj, std::int64_t{1}, k.row_stride, d, cols, kt, cpad);
      detail::pack_panel(vj, std::int64_t{1}, v.row_stride, d, cols, vt, cpad);
      if (!direct) detail::pack_panel(kj, k.row_stride, std::int64_t{1}, cols, d, kp, dpad);
      const T* kb_op = direct ? kj : kp;
      const std::int64_t kb_ld = direct ? k.row_stride : dpad;
      bool fresh = true;  // dK_j and dV_j not written yet
      for (std::int64_t i0 = 0; i0 < n; i0 += br) {
        const std::int64_t rows = std::min(br, n - i0);
        if (s.masked_block(i0, rows, j0)) continue;
        const bool first = fresh;
        fresh = false;
        const T* qi = q.head(b, h) + i0 * q.row_stride;        // [rows, d]
        const T* gi = dout.head(b, h) + i0 * dout.row_stride;  // [rows, d]
        if (!direct) {
          detail::pack_panel(qi, q.row_stride, std::int64_t{1}, rows, d, qp, dpad);
          detail::pack_panel(gi, dout.row_stride, std::int64_t{1}, rows, d, gp, dpad);
          qi = qp;
          gi = gp;
        }
        const std::int64_t q_ld = direct ? q.row_stride : dpad, g_ld = direct ? dout.row_stride : dpad;
        detail::tile_gemm(rows, cols, d, qi, q_ld, std::int64_t{1}, kt, cpad, p, cpad, false);  // q k^T
        for (std::int64_t r = 0; r < rows; ++r) {
          Row pr(p + r * cpad, cpad);  // exp over whole vectors; padding columns are never read
          pr = (scale * pr - lse_head[i0 + r]).exp();
          const std::int64_t visible = s.visible_keys(i0 + r, j0, cols);
          if (visible < cols) Row(p + r * cpad + visible, cols - visible).setZero();
        }
        detail::tile_gemm(cols, d, rows, p, std::int64_t{1}, cpad, gi, g_ld, dva, dpad, !first);  // dV += P^T dO
        detail::tile_gemm(rows, cols, d, gi, g_ld, std::int64_t{1}, vt, cpad, ds, cpad, false);   // dP = dO V^T
        for (std::int64_t r = 0; r < rows; ++r) {
          Row dr(ds + r * cpad, cols);
          dr = scale * Row(p + r * cpad, cols) * (dr - delta_head[i0 + r]);
        }
        detail::tile_gemm(rows, d, cols, ds, cpad, std::int64_t{1}, kb_op, kb_ld, dq_head + i0 * dq_target.row_stride,
                          dq_target.row_stride, true);                                             // dQ += dS K
        detail::tile_gemm(cols, d, rows, ds, std::int64_t{1}, cpad, qi, q_ld, dka, dpad, !first);  // dK += dS^T Q
      }
      if (fresh) {  // no query sees these keys
        std::fill(dka, dka + cols * dpad, T(0));
        std::fill(dva, dva + cols * dpad, T(0));
      }
      T* dkj = dk.head(b, h) + j0 * dk.row_stride;
      T* dvj = dv.head(b, h) + j0 * dv.row_stride;
      for (std::int64_t j = 0; j < cols; ++j) {
        std::copy(dka + j * dpad, dka + j * dpad + d, dkj + j * dk.row_stride);
        std::copy(dva + j * dpad, dva + j * dpad + d, dvj + j * dv.row_stride);
      }
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

namespace detail {
/// Scores of keys j > i set to -inf (causal), so that the softmax gives them probability 0.
template <class T>
void mask_causal(AttnMatrix<T>& scores) {
  for (std::int64_t i = 0; i + 1 < scores.cols() && i < scores.rows(); ++i)
    scores.row(i).tail(scores.cols() - i - 1).setConstant(-std::numeric_limits<T>::infinity());
}
}  // namespace detail

/// Reference forward that materialises softmax(scale Q K^T) per head ([n, m]), with keys j > i masked when
/// s.causal; for tests and as a baseline.
template <Scalar T>
void attention_forward_reference(const AttentionShape& s, std::type_identity_t<HeadMatrices<const T>> q,
                                 std::type_identity_t<HeadMatrices<const T>> k,
                                 std::type_identity_t<HeadMatrices<const T>> v, HeadMatrices<T> o, T scale) {
  detail::check_attention_shape(s, "attention_forward_reference");
  parallel_for(0, s.batch_heads(), [&](std::int64_t bh) {
    const std::int64_t b = bh / s.heads, h = bh % s.heads;
    detail::AttnMatrix<T> p = scale * detail::head_block(q, b, h, 0, s.n, s.d) *
                              detail::head_block(k, b, h, 0, s.m, s.d).transpose();  // [n, m]
    if (s.causal) detail::mask_causal(p);
    for (std::int64_t i = 0; i < s.n; ++i) {
      p.row(i).array() = (p.row(i).array() - p.row(i).maxCoeff()).exp();
      p.row(i) /= p.row(i).sum();
    }
    detail::head_block(o, b, h, 0, s.n, s.d) = p * detail::head_block(v, b, h, 0, s.m, s.d);
  });
}

/// Reference backward from the materialised probabilities P [n, m] (causal as the forward):
/// dS = P * (dP - rowsum(P * dP)).
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
    detail::AttnMatrix<T> p = scale * qh * kh.transpose();  // [n, m]
    if (s.causal) detail::mask_causal(p);
    for (std::int64_t i = 0; i < s.n; ++i) {
      p.row(i).array() = (p.row(i).array() - p.row(i).maxCoeff()).exp();
      p.row(i) /= p.row(i).sum();
    }
    detail::AttnMatrix<T> dp = gh * vh.transpose();  // [n, m]
    detail::AttnMatrix<T> ds = p.cwiseProduct(dp);   // [n, m]
    for (std::int64_t i = 0; i < s.n; ++i) ds.row(i) -= p.row(i) * ds.row(i).sum();
    detail::head_block(dv, b, h, 0, s.m, s.d) = p.transpose() * gh;
    detail::head_block(dq, b, h, 0, s.n, s.d) = scale * ds * kh;
    detail::head_block(dk, b, h, 0, s.m, s.d) = scale * ds.transpose() * qh;
  });
}

}  // namespace spo::cpu_kernels
