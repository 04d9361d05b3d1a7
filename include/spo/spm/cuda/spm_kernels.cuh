// SPDX-License-Identifier: MIT
/// @brief Kernels of the preference network on spo::cuda: adaLN modulate / gate, ViT patch tokens, token embeddings,
/// weighted token sums and CLIP cosine scores, forward and backward. Every reduction runs in double in a fixed order
/// (no atomics); host declarations in spm_kernels.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/spm/cuda/spm_kernels.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/layout.cuh"
#include "spo/tensor/cuda/runtime.hpp"

namespace spo::spm::cuda_kernels {

// The grid-stride and block-reduction helpers of spo's elementwise and layout kernels.
namespace detail = spo::cuda_kernels::detail;
namespace layout_detail = spo::cuda_kernels::layout_detail;

}  // namespace spo::spm::cuda_kernels

namespace spo::spm::cuda_kernels::spm_detail {

/// torch.nn.functional.normalize's eps: norms below it are taken as it.
inline constexpr double norm_floor = 1e-12;

/// Blocks of the one-block-per-row kernels (rows beyond it are strided).
inline unsigned row_blocks(std::int64_t rows) {
  return static_cast<unsigned>(std::clamp<std::int64_t>(rows, 1, (std::int64_t{1} << 31) - 1));
}

// i over [B, N, W]: k = i % W, b = i / (N W).
template <Scalar T>
__global__ void modulate_forward_kernel(ModulationShape s, const T* x, const T* mod, std::int64_t shift_chunk,
                                        std::int64_t scale_chunk, T* y) {
  const std::int64_t n = s.batch * s.tokens * s.width, per_batch = s.tokens * s.width;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t k = i % s.width, b = i / per_batch;
    const T* m = mod + b * s.stride;
    y[i] = x[i] * (T(1) + m[scale_chunk * s.width + k]) + m[shift_chunk * s.width + k];
  }
}

// dx[i] = dy[i] (1 + scale[b, k]).
template <Scalar T>
__global__ void modulate_dx_kernel(ModulationShape s, const T* dy, const T* mod, std::int64_t scale_chunk, T* dx) {
  const std::int64_t n = s.batch * s.tokens * s.width, per_batch = s.tokens * s.width;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t k = i % s.width, b = i / per_batch;
    dx[i] = dy[i] * (T(1) + mod[b * s.stride + scale_chunk * s.width + k]);
  }
}

// j over [B, W]: dmod[b, shift, k] += sum_n dy[b, n, k]; dmod[b, scale, k] += sum_n dy[b, n, k] x[b, n, k].
template <Scalar T>
__global__ void modulate_dmod_kernel(ModulationShape s, const T* dy, const T* x, std::int64_t shift_chunk,
                                     std::int64_t scale_chunk, T* dmod) {
  const std::int64_t n = s.batch * s.width;
  for (std::int64_t j = detail::grid_first(); j < n; j += detail::grid_stride()) {
    const std::int64_t k = j % s.width, b = j / s.width;
    double sum = 0, sum_x = 0;
    for (std::int64_t t = 0; t < s.tokens; ++t) {
      const std::int64_t i = (b * s.tokens + t) * s.width + k;
      sum += static_cast<double>(dy[i]);
      sum_x += static_cast<double>(dy[i]) * static_cast<double>(x[i]);
    }
    dmod[b * s.stride + shift_chunk * s.width + k] += static_cast<T>(sum);
    dmod[b * s.stride + scale_chunk * s.width + k] += static_cast<T>(sum_x);
  }
}

// h[i] += gate[b, k] a[i].
template <Scalar T>
__global__ void gate_forward_kernel(ModulationShape s, T* h, const T* a, const T* mod, std::int64_t gate_chunk) {
  const std::int64_t n = s.batch * s.tokens * s.width, per_batch = s.tokens * s.width;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t k = i % s.width, b = i / per_batch;
    h[i] += mod[b * s.stride + gate_chunk * s.width + k] * a[i];
  }
}

// da[i] = gate[b, k] dy[i].
template <Scalar T>
__global__ void gate_da_kernel(ModulationShape s, const T* dy, const T* mod, std::int64_t gate_chunk, T* da) {
  const std::int64_t n = s.batch * s.tokens * s.width, per_batch = s.tokens * s.width;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t k = i % s.width, b = i / per_batch;
    da[i] = mod[b * s.stride + gate_chunk * s.width + k] * dy[i];
  }
}

// j over [B, W]: dmod[b, gate, k] += sum_n dy[b, n, k] a[b, n, k].
template <Scalar T>
__global__ void gate_dmod_kernel(ModulationShape s, const T* dy, const T* a, std::int64_t gate_chunk, T* dmod) {
  const std::int64_t n = s.batch * s.width;
  for (std::int64_t j = detail::grid_first(); j < n; j += detail::grid_stride()) {
    const std::int64_t k = j % s.width, b = j / s.width;
    double sum = 0;
    for (std::int64_t t = 0; t < s.tokens; ++t) {
      const std::int64_t i = (b * s.tokens + t) * s.width + k;
      sum += static_cast<double>(dy[i]) * static_cast<double>(a[i]);
    }
    dmod[b * s.stride + gate_chunk * s.width + k] += static_cast<T>(sum);
  }
}

// i over seq [B, np + 1, W]: k = i % W, t = (i / W) % (np + 1), b = i / ((np + 1) W).
template <Scalar T>
__global__ void patch_tokens_forward_kernel(const T* patches, const T* cls, const T* pos, T* seq, std::int64_t batch,
                                            std::int64_t np, std::int64_t width) {
  const std::int64_t tokens = np + 1, n = batch * tokens * width;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t k = i % width, t = (i / width) % tokens, b = i / (tokens * width);
    const T value = t == 0 ? cls[k] : patches[(b * width + k) * np + (t - 1)];
    seq[i] = value + pos[t * width + k];
  }
}

// i over dpatches [B, W, np]: p = i % np, k = (i / np) % W, b = i / (W np).
template <Scalar T>
__global__ void patch_tokens_dpatches_kernel(const T* dseq, T* dpatches, std::int64_t batch, std::int64_t np,
                                             std::int64_t width) {
  const std::int64_t tokens = np + 1, n = batch * width * np;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t p = i % np, k = (i / np) % width, b = i / (width * np);
    dpatches[i] = dseq[(b * tokens + 1 + p) * width + k];
  }
}

// j over [np + 1, W]: s = sum_b dseq[b, t, k]; dpos[t, k] += s; dcls[k] += s for t = 0.
template <Scalar T>
__global__ void patch_tokens_dparams_kernel(const T* dseq, T* dcls, T* dpos, std::int64_t batch, std::int64_t np,
                                            std::int64_t width) {
  const std::int64_t tokens = np + 1, n = tokens * width;
  for (std::int64_t j = detail::grid_first(); j < n; j += detail::grid_stride()) {
    double sum = 0;
    for (std::int64_t b = 0; b < batch; ++b) sum += static_cast<double>(dseq[b * n + j]);
    if (dpos) dpos[j] += static_cast<T>(sum);
    if (dcls && j < width) dcls[j] += static_cast<T>(sum);
  }
}

// i over out [B, L, W]: k = i % W, r = i / W = b L + l. 16-bit entries add in float and round once.
template <StorageScalar T>
__global__ void embedding_forward_kernel(const T* token, const T* position, const std::int32_t* ids, T* out,
                                         std::int64_t batch, std::int64_t length, std::int64_t width) {
  const std::int64_t n = batch * length * width;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t k = i % width, r = i / width, l = r % length;
    out[i] = detail::store<T>(detail::load(token[static_cast<std::int64_t>(ids[r]) * width + k]) +
                              detail::load(position[l * width + k]));
  }
}

// j over [U, W]: dtoken[unique[u], k] += sum over the positions of id unique[u].
template <Scalar T>
__global__ void embedding_token_backward_kernel(const T* dfeatures, const std::int32_t* unique,
                                                const std::int32_t* offsets, const std::int32_t* positions, T* dtoken,
                                                std::int64_t n_unique, std::int64_t width) {
  const std::int64_t n = n_unique * width;
  for (std::int64_t j = detail::grid_first(); j < n; j += detail::grid_stride()) {
    const std::int64_t k = j % width, u = j / width;
    double sum = 0;
    for (std::int32_t q = offsets[u]; q < offsets[u + 1]; ++q)
      sum += static_cast<double>(dfeatures[static_cast<std::int64_t>(positions[q]) * width + k]);
    dtoken[static_cast<std::int64_t>(unique[u]) * width + k] += static_cast<T>(sum);
  }
}

// j over [L, W]: dposition[l, k] += sum_b dfeatures[b, l, k].
template <Scalar T>
__global__ void embedding_position_backward_kernel(const T* dfeatures, T* dposition, std::int64_t batch,
                                                   std::int64_t length, std::int64_t width) {
  const std::int64_t n = length * width;
  for (std::int64_t j = detail::grid_first(); j < n; j += detail::grid_stride()) {
    double sum = 0;
    for (std::int64_t b = 0; b < batch; ++b) sum += static_cast<double>(dfeatures[b * n + j]);
    dposition[j] += static_cast<T>(sum);
  }
}

// j over out [B, W]: out[b, k] = sum_l weights[b, l] h[b, l, k].
template <Scalar T>
__global__ void weighted_sum_forward_kernel(const T* h, const T* weights, T* out, std::int64_t batch,
                                            std::int64_t length, std::int64_t width) {
  const std::int64_t n = batch * width;
  for (std::int64_t j = detail::grid_first(); j < n; j += detail::grid_stride()) {
    const std::int64_t k = j % width, b = j / width;
    double sum = 0;
    for (std::int64_t l = 0; l < length; ++l)
      sum += static_cast<double>(weights[b * length + l]) * static_cast<double>(h[(b * length + l) * width + k]);
    out[j] = static_cast<T>(sum);
  }
}

// i over dh [B, L, W]: dh[b, l, k] = weights[b, l] dout[b, k].
template <Scalar T>
__global__ void weighted_sum_backward_kernel(const T* dout, const T* weights, T* dh, std::int64_t batch,
                                             std::int64_t length, std::int64_t width) {
  const std::int64_t n = batch * length * width;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const std::int64_t k = i % width, r = i / width, b = r / length;
    dh[i] = weights[r] * dout[b * width + k];
  }
}

// One block (reduce_block threads) per row b.
template <Scalar T>
__global__ void clip_scores_forward_kernel(const T* f, const T* g, const T* logit_scale, T* u, T* v, T* norms,
                                           T* scores, std::int64_t batch, std::int64_t dim) {
  const double scale = exp(static_cast<double>(logit_scale[0]));
  for (std::int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const T* fb = f + b * dim;
    const T* gb = g + b * dim;
    double ss[2] = {0.0, 0.0};
    for (std::int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
      ss[0] += static_cast<double>(fb[k]) * static_cast<double>(fb[k]);
      ss[1] += static_cast<double>(gb[k]) * static_cast<double>(gb[k]);
    }
    layout_detail::block_sum(ss);
    const double nf = fmax(sqrt(ss[0]), norm_floor), ng = fmax(sqrt(ss[1]), norm_floor);
    double c[1] = {0.0};
    for (std::int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
      const T uk = static_cast<T>(static_cast<double>(fb[k]) / nf);
      const T vk = static_cast<T>(static_cast<double>(gb[k]) / ng);
      u[b * dim + k] = uk;
      v[b * dim + k] = vk;
      c[0] += static_cast<double>(uk) * static_cast<double>(vk);
    }
    layout_detail::block_sum(c);
    if (threadIdx.x == 0) {
      norms[2 * b] = static_cast<T>(nf);
      norms[2 * b + 1] = static_cast<T>(ng);
      scores[b] = static_cast<T>(scale * c[0]);
    }
  }
}

// One block per row b: c = <u_b, v_b>, a = ds_b e^ls; df = a (v - u c) / nf, dg = a (u - v c) / ng.
template <Scalar T>
__global__ void clip_scores_backward_kernel(const T* ds, const T* u, const T* v, const T* norms, const T* logit_scale,
                                            T* df, T* dg, std::int64_t batch, std::int64_t dim) {
  const double scale = exp(static_cast<double>(logit_scale[0]));
  for (std::int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const T* ub = u + b * dim;
    const T* vb = v + b * dim;
    double c[1] = {0.0};
    for (std::int64_t k = threadIdx.x; k < dim; k += blockDim.x)
      c[0] += static_cast<double>(ub[k]) * static_cast<double>(vb[k]);
    layout_detail::block_sum(c);
    const double alpha = static_cast<double>(ds[b]) * scale;
    const double nf = static_cast<double>(norms[2 * b]), ng = static_cast<double>(norms[2 * b + 1]);
    for (std::int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
      const double uk = static_cast<double>(ub[k]), vk = static_cast<double>(vb[k]);
      df[b * dim + k] = static_cast<T>(alpha * (vk - uk * c[0]) / nf);
      dg[b * dim + k] = static_cast<T>(alpha * (uk - vk * c[0]) / ng);
    }
  }
}

// One block: dls[0] += sum_b ds_b scores_b.
template <Scalar T>
__global__ void logit_scale_grad_kernel(const T* ds, const T* scores, T* dls, std::int64_t batch) {
  double acc[1] = {0.0};
  for (std::int64_t b = threadIdx.x; b < batch; b += blockDim.x)
    acc[0] += static_cast<double>(ds[b]) * static_cast<double>(scores[b]);
  layout_detail::block_sum(acc);
  if (threadIdx.x == 0) dls[0] += static_cast<T>(acc[0]);
}

}  // namespace spo::spm::cuda_kernels::spm_detail

namespace spo::spm::cuda_kernels {

template <Scalar T>
void adaln_modulate_forward(const ModulationShape& s, const T* x, const T* mod, std::int64_t shift_chunk,
                            std::int64_t scale_chunk, T* y) {
  const std::int64_t n = s.batch * s.tokens * s.width;
  if (n == 0) return;
  spm_detail::modulate_forward_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(s, x, mod, shift_chunk, scale_chunk, y);
  SPO_CUDA_CHECK_LAUNCH("modulate_forward_kernel");
}

template <Scalar T>
void adaln_modulate_backward(const ModulationShape& s, const T* dy, const T* x, const T* mod, std::int64_t shift_chunk,
                             std::int64_t scale_chunk, T* dx, T* dmod) {
  const std::int64_t n = s.batch * s.tokens * s.width;
  if (n == 0) return;
  spm_detail::modulate_dx_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(s, dy, mod, scale_chunk, dx);
  SPO_CUDA_CHECK_LAUNCH("modulate_dx_kernel");
  spm_detail::modulate_dmod_kernel<T>
      <<<cuda_runtime::grid_1d(s.batch * s.width), cuda_runtime::block_1d>>>(s, dy, x, shift_chunk, scale_chunk, dmod);
  SPO_CUDA_CHECK_LAUNCH("modulate_dmod_kernel");
}

template <Scalar T>
void adaln_gate_forward(const ModulationShape& s, T* h, const T* a, const T* mod, std::int64_t gate_chunk) {
  const std::int64_t n = s.batch * s.tokens * s.width;
  if (n == 0) return;
  spm_detail::gate_forward_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(s, h, a, mod, gate_chunk);
  SPO_CUDA_CHECK_LAUNCH("gate_forward_kernel");
}

template <Scalar T>
void adaln_gate_backward(const ModulationShape& s, const T* dy, const T* a, const T* mod, std::int64_t gate_chunk,
                         T* da, T* dmod) {
  const std::int64_t n = s.batch * s.tokens * s.width;
  if (n == 0) return;
  spm_detail::gate_da_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(s, dy, mod, gate_chunk, da);
  SPO_CUDA_CHECK_LAUNCH("gate_da_kernel");
  spm_detail::gate_dmod_kernel<T>
      <<<cuda_runtime::grid_1d(s.batch * s.width), cuda_runtime::block_1d>>>(s, dy, a, gate_chunk, dmod);
  SPO_CUDA_CHECK_LAUNCH("gate_dmod_kernel");
}

template <Scalar T>
void patch_tokens_forward(const T* patches, const T* cls, const T* pos, T* seq, std::int64_t batch, std::int64_t np,
                          std::int64_t width) {
  const std::int64_t n = batch * (np + 1) * width;
  if (n == 0) return;
  spm_detail::patch_tokens_forward_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(patches, cls, pos, seq, batch, np, width);
  SPO_CUDA_CHECK_LAUNCH("patch_tokens_forward_kernel");
}

template <Scalar T>
void patch_tokens_backward(const T* dseq, T* dpatches, T* dcls, T* dpos, std::int64_t batch, std::int64_t np,
                           std::int64_t width) {
  const std::int64_t n = batch * width * np;
  if (n > 0) {
    spm_detail::patch_tokens_dpatches_kernel<T>
        <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(dseq, dpatches, batch, np, width);
    SPO_CUDA_CHECK_LAUNCH("patch_tokens_dpatches_kernel");
  }
  const std::int64_t m = (np + 1) * width;
  if ((dcls || dpos) && m > 0) {
    spm_detail::patch_tokens_dparams_kernel<T>
        <<<cuda_runtime::grid_1d(m), cuda_runtime::block_1d>>>(dseq, dcls, dpos, batch, np, width);
    SPO_CUDA_CHECK_LAUNCH("patch_tokens_dparams_kernel");
  }
}

template <StorageScalar T>
void embedding_forward(const T* token, const T* position, const std::int32_t* ids, T* out, std::int64_t batch,
                       std::int64_t length, std::int64_t width) {
  const std::int64_t n = batch * length * width;
  if (n == 0) return;
  spm_detail::embedding_forward_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(token, position, ids, out, batch, length, width);
  SPO_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

template <Scalar T>
void embedding_token_backward(const T* dfeatures, const std::int32_t* unique, const std::int32_t* offsets,
                              const std::int32_t* positions, T* dtoken, std::int64_t n_unique, std::int64_t width) {
  const std::int64_t n = n_unique * width;
  if (n == 0) return;
  spm_detail::embedding_token_backward_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(
      dfeatures, unique, offsets, positions, dtoken, n_unique, width);
  SPO_CUDA_CHECK_LAUNCH("embedding_token_backward_kernel");
}

template <Scalar T>
void embedding_position_backward(const T* dfeatures, T* dposition, std::int64_t batch, std::int64_t length,
                                 std::int64_t width) {
  const std::int64_t n = length * width;
  if (n == 0) return;
  spm_detail::embedding_position_backward_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(dfeatures, dposition, batch, length, width);
  SPO_CUDA_CHECK_LAUNCH("embedding_position_backward_kernel");
}

template <Scalar T>
void weighted_token_sum_forward(const T* h, const T* weights, T* out, std::int64_t batch, std::int64_t length,
                                std::int64_t width) {
  const std::int64_t n = batch * width;
  if (n == 0) return;
  spm_detail::weighted_sum_forward_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(h, weights, out, batch, length, width);
  SPO_CUDA_CHECK_LAUNCH("weighted_sum_forward_kernel");
}

template <Scalar T>
void weighted_token_sum_backward(const T* dout, const T* weights, T* dh, std::int64_t batch, std::int64_t length,
                                 std::int64_t width) {
  const std::int64_t n = batch * length * width;
  if (n == 0) return;
  spm_detail::weighted_sum_backward_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(dout, weights, dh, batch, length, width);
  SPO_CUDA_CHECK_LAUNCH("weighted_sum_backward_kernel");
}

template <Scalar T>
void clip_scores_forward(const T* f, const T* g, const T* logit_scale, T* u, T* v, T* norms, T* scores,
                         std::int64_t batch, std::int64_t dim) {
  if (batch == 0) return;
  spm_detail::clip_scores_forward_kernel<T><<<spm_detail::row_blocks(batch), layout_detail::reduce_block>>>(
      f, g, logit_scale, u, v, norms, scores, batch, dim);
  SPO_CUDA_CHECK_LAUNCH("clip_scores_forward_kernel");
}

template <Scalar T>
void clip_scores_backward(const T* ds, const T* u, const T* v, const T* norms, const T* scores, const T* logit_scale,
                          T* df, T* dg, T* dlogit_scale, std::int64_t batch, std::int64_t dim) {
  if (batch == 0) return;
  spm_detail::clip_scores_backward_kernel<T><<<spm_detail::row_blocks(batch), layout_detail::reduce_block>>>(
      ds, u, v, norms, logit_scale, df, dg, batch, dim);
  SPO_CUDA_CHECK_LAUNCH("clip_scores_backward_kernel");
  if (dlogit_scale) {
    spm_detail::logit_scale_grad_kernel<T><<<1, layout_detail::reduce_block>>>(ds, scores, dlogit_scale, batch);
    SPO_CUDA_CHECK_LAUNCH("logit_scale_grad_kernel");
  }
}

}  // namespace spo::spm::cuda_kernels
