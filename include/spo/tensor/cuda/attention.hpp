// SPDX-License-Identifier: MIT
/// @brief Host declarations of multi-head scaled dot-product attention on spo::cuda (cuBLAS strided-batched GEMMs
/// and row-softmax kernels): definitions in attention.cuh, instantiated for float, double, half and bfloat16 in
/// instantiate/attention.cu. For the 16-bit scalars the scores, the softmax, lse and the backward's dP and delta are
/// FP32 (compute_type_t), and P and dS are rounded to 16 bits as operands of the GEMMs that follow.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"

namespace spo::cuda_kernels {

/// Extents of one attention call: `batch * heads` independent problems with n queries, m keys, head width d.
/// causal: query i sees keys j <= i only, min(i + 1, m) of them (cpu_kernels::AttentionShape::causal: torch's
/// is_causal, aligned top-left; CLIP's text transformer).
struct AttentionShape {
  std::int64_t batch = 0, heads = 0, n = 0, m = 0, d = 0;
  bool causal = false;
  std::int64_t batch_heads() const { return batch * heads; }
  std::int64_t inner() const { return heads * d; }
};

/// Upper bound in bytes of one buffer of scores in the compute type (forward keeps one, backward two; the 16-bit
/// scalars add one buffer of P in 16 bits). The problems of a call are processed in chunks of whole problems that fit;
/// a problem whose [n, m] scores alone exceed the bound is processed in tiles of query rows that fit (at least one
/// row), so the scores never take more than the bound, whatever n and m, and the rest of a call's memory is linear in
/// n + m: O(N) attention memory in the sequence length (the 16k-token VAE attention of SDXL at 1024 x 1024 needs 1 GiB
/// of FP32 scores per problem untiled). Process-wide; tests lower it to exercise chunking and tiling.
inline std::size_t& attention_score_buffer_bytes() {
  static std::size_t bytes = std::size_t{512} << 20;
  return bytes;
}

/*!
  O = softmax(scale Q K^T) V per (batch, head), the scores materialised chunk by chunk.
  REQUIRES
    - device pointers; q, o: [batch, n, heads * d]; k, v: [batch, m, heads * d], head h in columns
      [h * d, (h + 1) * d) (diffusers' head_to_batch_dim order); lse: [batch, heads, n] in T's compute type
    - m >= 1 when n >= 1
  ENSURES
    - o = softmax(scale q k^T) v and lse[(b * heads + h) * n + i] = log sum_j exp(scale q_i . k_j), the row
      statistic that attention_backward recomputes the probabilities from (float softmax with max subtraction)
    - with s.causal, the max, the sum and the softmax of row i run over keys j <= i only and the probabilities of
      keys j > i are exactly 0 (the scores of all m keys are still computed, then overwritten)
!*/
template <StorageScalar T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* o, compute_type_t<T>* lse,
                       compute_type_t<T> scale, cudaStream_t stream = nullptr);

/*!
  Backward of attention_forward from q, k, v, o, lse (P recomputed as exp(scale q k^T - lse)): with
  delta_i = dO_i . O_i,
    dV = P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  dQ = scale dS K,  dK = scale dS^T Q.
  REQUIRES
    - the layouts of attention_forward; dout like o; dq like q; dk, dv like k
    - o and lse from attention_forward with the same shape (causal included) and scale
  ENSURES
    - dq, dk, dv are overwritten with the gradients of sum(o * dout); with s.causal, P is 0 for keys j > i, so
      dS is 0 there too and masked keys receive no gradient from query i
!*/
template <StorageScalar T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* o, const T* dout,
                        const compute_type_t<T>* lse, T* dq, T* dk, T* dv, compute_type_t<T> scale,
                        cudaStream_t stream = nullptr);

}  // namespace spo::cuda_kernels
