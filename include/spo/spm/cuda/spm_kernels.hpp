// SPDX-License-Identifier: MIT
/// @brief The preference network's own operations on spo::cuda (adaLN modulate and gate, ViT patch tokens, token
/// embedding lookup, masked mean pooling, CLIP cosine scores) with their backward: the device twins of the CPU free
/// functions in spm/*.hpp and text/text_encoder.hpp, in namespace spo as those are, and found by ADL from the
/// templates. The launchers (spm::cuda_kernels) are defined in spm_kernels.cuh and instantiated for float and double
/// in spm/cuda/instantiate/spm_kernels.cu.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <cuda_runtime_api.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::spm::cuda_kernels {

/// A modulation mod [batch, stride] read in chunks of `width` (chunk c starts at c * width) and applied to
/// x [batch, tokens, width], broadcast over the tokens.
struct ModulationShape {
  std::int64_t batch = 0, tokens = 0, width = 0, stride = 0;
};

/// y[b, n, k] = x[b, n, k] (1 + mod[b, scale_chunk, k]) + mod[b, shift_chunk, k].
template <Scalar T>
void adaln_modulate_forward(const ModulationShape& s, const T* x, const T* mod, std::int64_t shift_chunk,
                            std::int64_t scale_chunk, T* y);
/// dx = dy (1 + mod[scale]); dmod[b, shift, k] += sum_n dy; dmod[b, scale, k] += sum_n dy x (sums in double).
template <Scalar T>
void adaln_modulate_backward(const ModulationShape& s, const T* dy, const T* x, const T* mod, std::int64_t shift_chunk,
                             std::int64_t scale_chunk, T* dx, T* dmod);
/// h[b, n, k] += mod[b, gate_chunk, k] a[b, n, k].
template <Scalar T>
void adaln_gate_forward(const ModulationShape& s, T* h, const T* a, const T* mod, std::int64_t gate_chunk);
/// da = mod[gate] dy; dmod[b, gate, k] += sum_n dy a (in double).
template <Scalar T>
void adaln_gate_backward(const ModulationShape& s, const T* dy, const T* a, const T* mod, std::int64_t gate_chunk,
                         T* da, T* dmod);

/// seq [batch, np + 1, width]: seq[b, 0] = cls + pos[0], seq[b, 1 + p, k] = patches[b, k, p] + pos[1 + p, k].
template <Scalar T>
void patch_tokens_forward(const T* patches, const T* cls, const T* pos, T* seq, std::int64_t batch, std::int64_t np,
                          std::int64_t width);
/// dpatches[b, k, p] = dseq[b, 1 + p, k]; dpos[t, k] += sum_b dseq[b, t, k] and dcls[k] += sum_b dseq[b, 0, k]
/// (each when not null; sums in double).
template <Scalar T>
void patch_tokens_backward(const T* dseq, T* dpatches, T* dcls, T* dpos, std::int64_t batch, std::int64_t np,
                           std::int64_t width);

/// out[b, l, k] = token[ids[b * length + l], k] + position[l, k] for ids [batch * length] on the device (16-bit
/// entries: added in float, rounded once).
template <StorageScalar T>
void embedding_forward(const T* token, const T* position, const std::int32_t* ids, T* out, std::int64_t batch,
                       std::int64_t length, std::int64_t width);
/// dtoken[unique[u], k] += sum_{j in [offsets[u], offsets[u + 1])} dfeatures[positions[j], k] for u < n_unique
/// (a deterministic scatter-add: the positions of each distinct id in increasing order).
template <Scalar T>
void embedding_token_backward(const T* dfeatures, const std::int32_t* unique, const std::int32_t* offsets,
                              const std::int32_t* positions, T* dtoken, std::int64_t n_unique, std::int64_t width);
/// dposition[l, k] += sum_b dfeatures[b, l, k].
template <Scalar T>
void embedding_position_backward(const T* dfeatures, T* dposition, std::int64_t batch, std::int64_t length,
                                 std::int64_t width);

/// out[b, k] = sum_l weights[b, l] h[b, l, k] (in double).
template <Scalar T>
void weighted_token_sum_forward(const T* h, const T* weights, T* out, std::int64_t batch, std::int64_t length,
                                std::int64_t width);
/// dh[b, l, k] = weights[b, l] dout[b, k].
template <Scalar T>
void weighted_token_sum_backward(const T* dout, const T* weights, T* dh, std::int64_t batch, std::int64_t length,
                                 std::int64_t width);

/// Per row b of f, g [batch, dim]: nf = max(|f_b|, 1e-12), u_b = f_b / nf (likewise g -> v), norms[b] = (nf, ng),
/// scores[b] = exp(logit_scale[0]) <u_b, v_b> (all in double, rounded once).
template <Scalar T>
void clip_scores_forward(const T* f, const T* g, const T* logit_scale, T* u, T* v, T* norms, T* scores,
                         std::int64_t batch, std::int64_t dim);
/// With a_b = ds_b exp(logit_scale) and c_b = <u_b, v_b>: df_b = a_b (v_b - u_b c_b) / nf_b, dg_b = a_b (u_b - v_b c_b)
/// / ng_b; dlogit_scale[0] += sum_b ds_b scores_b when not null.
template <Scalar T>
void clip_scores_backward(const T* ds, const T* u, const T* v, const T* norms, const T* scores, const T* logit_scale,
                          T* df, T* dg, T* dlogit_scale, std::int64_t batch, std::int64_t dim);

}  // namespace spo::spm::cuda_kernels

namespace spo {

namespace spm_detail {

/// The layout of x [B, ..., W] under mod [B, stride] with chunks of W; checks that `chunks` chunks fit.
template <Scalar T, Device D>
spm::cuda_kernels::ModulationShape modulation_shape(const Tensor<T, D>& x, const Tensor<T, D>& mod, std::int64_t chunks,
                                                    const char* what) {
  SPO_CHECK(x.rank() >= 2 && mod.rank() == 2 && mod.size(0) == x.size(0) && chunks * x.shape()[-1] <= mod.size(1),
            what << ": modulation shape " << mod.shape() << " does not fit input shape " << x.shape());
  const std::int64_t batch = x.size(0), width = x.shape()[-1];
  return {batch, batch * width != 0 ? x.numel() / (batch * width) : 0, width, mod.size(1)};
}

/// A device int32 buffer with the host values (a synchronous upload; the values are host-side token ids).
inline Tensor<std::int32_t, cuda> upload_ids(std::span<const std::int32_t> values) {
  auto dev = Tensor<std::int32_t, cuda>::uninitialized(Shape{static_cast<std::int64_t>(values.size())});
  if (!values.empty())
    SPO_CUDA_CHECK(cudaMemcpy(dev.data(), values.data(), values.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice));
  return dev;
}

}  // namespace spm_detail

/// DiT's modulate on the device: x [B, N, W] (or [B, W]), mod [B, k W] -> x (1 + mod[scale_chunk]) + mod[shift_chunk].
template <Scalar T>
Tensor<T, cuda> adaln_modulate(const Tensor<T, cuda>& x, const Tensor<T, cuda>& mod, std::int64_t shift_chunk,
                               std::int64_t scale_chunk) {
  const auto s = spm_detail::modulation_shape(x, mod, std::max(shift_chunk, scale_chunk) + 1, "adaln_modulate");
  auto y = Tensor<T, cuda>::uninitialized(x.shape());  // x.shape
  spm::cuda_kernels::adaln_modulate_forward<T>(s, x.data(), mod.data(), shift_chunk, scale_chunk, y.data());
  return y;
}

/// Backward of adaln_modulate: returns dx; accumulates the shift and scale chunks of dmod [B, k W].
template <Scalar T>
Tensor<T, cuda> adaln_modulate_backward(const Tensor<T, cuda>& dy, const Tensor<T, cuda>& x, const Tensor<T, cuda>& mod,
                                        std::int64_t shift_chunk, std::int64_t scale_chunk, Tensor<T, cuda>& dmod) {
  check_same_shape(dy.shape(), x.shape(), "adaln_modulate_backward (gradient vs input)");
  check_same_shape(dmod.shape(), mod.shape(), "adaln_modulate_backward (dmod vs mod)");
  const auto s =
      spm_detail::modulation_shape(x, mod, std::max(shift_chunk, scale_chunk) + 1, "adaln_modulate_backward");
  auto dx = Tensor<T, cuda>::uninitialized(x.shape());  // x.shape
  spm::cuda_kernels::adaln_modulate_backward<T>(s, dy.data(), x.data(), mod.data(), shift_chunk, scale_chunk, dx.data(),
                                                dmod.data());
  return dx;
}

/// adaLN-Zero's gated residual on the device: h += mod[gate_chunk] a (broadcast over the tokens).
template <Scalar T>
void adaln_gate_add(Tensor<T, cuda>& h, const Tensor<T, cuda>& a, const Tensor<T, cuda>& mod, std::int64_t gate_chunk) {
  check_same_shape(a.shape(), h.shape(), "adaln_gate_add (branch vs residual)");
  const auto s = spm_detail::modulation_shape(h, mod, gate_chunk + 1, "adaln_gate_add");
  spm::cuda_kernels::adaln_gate_forward<T>(s, h.data(), a.data(), mod.data(), gate_chunk);
}

/// Backward of adaln_gate_add w.r.t. the branch: returns da = gate dy; accumulates the gate chunk of dmod.
template <Scalar T>
Tensor<T, cuda> adaln_gate_backward(const Tensor<T, cuda>& dy, const Tensor<T, cuda>& a, const Tensor<T, cuda>& mod,
                                    std::int64_t gate_chunk, Tensor<T, cuda>& dmod) {
  check_same_shape(dy.shape(), a.shape(), "adaln_gate_backward (gradient vs branch)");
  check_same_shape(dmod.shape(), mod.shape(), "adaln_gate_backward (dmod vs mod)");
  const auto s = spm_detail::modulation_shape(a, mod, gate_chunk + 1, "adaln_gate_backward");
  auto da = Tensor<T, cuda>::uninitialized(a.shape());  // a.shape
  spm::cuda_kernels::adaln_gate_backward<T>(s, dy.data(), a.data(), mod.data(), gate_chunk, da.data(), dmod.data());
  return da;
}

/// CLIP ViT tokens on the device: patches [B, W, g, g], cls [W], pos [g g + 1, W] -> [B, g g + 1, W].
template <Scalar T>
Tensor<T, cuda> patch_tokens(const Tensor<T, cuda>& patches, const Tensor<T, cuda>& cls, const Tensor<T, cuda>& pos) {
  SPO_CHECK(patches.rank() == 4 && cls.shape() == Shape{patches.size(1)} &&
                pos.shape() == (Shape{patches.size(2) * patches.size(3) + 1, patches.size(1)}),
            "patch_tokens: patches " << patches.shape() << ", class embedding " << cls.shape()
                                     << " and positional embedding " << pos.shape() << " do not agree");
  const std::int64_t batch = patches.size(0), w = patches.size(1), np = patches.size(2) * patches.size(3);
  auto seq = Tensor<T, cuda>::uninitialized(Shape{batch, np + 1, w});  // [B, N + 1, W]
  spm::cuda_kernels::patch_tokens_forward<T>(patches.data(), cls.data(), pos.data(), seq.data(), batch, np, w);
  return seq;
}

/// Backward of patch_tokens: dseq [B, g g + 1, W] -> dpatches [B, W, g, g]; accumulates into *dcls and *dpos when not
/// null.
template <Scalar T>
Tensor<T, cuda> patch_tokens_backward(const Tensor<T, cuda>& dseq, std::int64_t grid, Tensor<T, cuda>* dcls,
                                      Tensor<T, cuda>* dpos) {
  SPO_CHECK(dseq.rank() == 3 && dseq.size(1) == grid * grid + 1,
            "patch_tokens_backward: gradient shape " << dseq.shape() << " is not [B, " << grid * grid + 1 << ", W]");
  const std::int64_t batch = dseq.size(0), np = grid * grid, w = dseq.size(2);
  SPO_CHECK(!dcls || dcls->shape() == Shape{w}, "patch_tokens_backward: class gradient shape " << dcls->shape());
  SPO_CHECK(!dpos || dpos->shape() == (Shape{np + 1, w}),
            "patch_tokens_backward: positional gradient shape " << dpos->shape());
  auto dpatches = Tensor<T, cuda>::uninitialized(Shape{batch, w, grid, grid});  // [B, W, g, g]
  spm::cuda_kernels::patch_tokens_backward<T>(dseq.data(), dpatches.data(), dcls ? dcls->data() : nullptr,
                                              dpos ? dpos->data() : nullptr, batch, np, w);
  return dpatches;
}

/// h[:, 0] of h [B, N, W] -> [B, W] (one strided copy).
template <Scalar T>
Tensor<T, cuda> first_token(const Tensor<T, cuda>& h) {
  SPO_CHECK(h.rank() == 3 && h.size(1) >= 1, "first_token: shape " << h.shape() << " is not [B, N >= 1, W]");
  const std::int64_t batch = h.size(0), n = h.size(1), w = h.size(2);
  auto cls = Tensor<T, cuda>::uninitialized(Shape{batch, w});  // [B, W]
  const auto row = static_cast<std::size_t>(w) * sizeof(T);
  if (batch * w > 0)
    SPO_CUDA_CHECK(cudaMemcpy2DAsync(cls.data(), row, h.data(), static_cast<std::size_t>(n) * row, row,
                                     static_cast<std::size_t>(batch), cudaMemcpyDeviceToDevice, nullptr));
  return cls;
}

/// Backward of first_token: dcls [B, W] -> dh [B, tokens, W], zero except dh[:, 0] = dcls.
template <Scalar T>
Tensor<T, cuda> first_token_backward(const Tensor<T, cuda>& dcls, std::int64_t tokens) {
  SPO_CHECK(dcls.rank() == 2 && tokens >= 1,
            "first_token_backward: gradient shape " << dcls.shape() << " with " << tokens << " tokens");
  const std::int64_t batch = dcls.size(0), w = dcls.size(1);
  Tensor<T, cuda> dh(Shape{batch, tokens, w});  // [B, N, W] zeros
  const auto row = static_cast<std::size_t>(w) * sizeof(T);
  if (batch * w > 0)
    SPO_CUDA_CHECK(cudaMemcpy2DAsync(dh.data(), static_cast<std::size_t>(tokens) * row, dcls.data(), row, row,
                                     static_cast<std::size_t>(batch), cudaMemcpyDeviceToDevice, nullptr));
  return dh;
}

/// Token + position embeddings on the device: ids [B * L] (host, validated) -> [B, L, W].
template <StorageScalar T>
Tensor<T, cuda> embedding_lookup(const Tensor<T, cuda>& token, const Tensor<T, cuda>& position,
                                 std::span<const std::int32_t> ids, std::int64_t batch) {
  SPO_CHECK(token.rank() == 2 && position.rank() == 2 && token.size(1) == position.size(1) &&
                static_cast<std::int64_t>(ids.size()) == batch * position.size(0),
            "embedding_lookup: " << ids.size() << " ids for " << batch << " rows, token table " << token.shape()
                                 << ", position table " << position.shape());
  const std::int64_t length = position.size(0), w = position.size(1);
  const auto dev_ids = spm_detail::upload_ids(ids);
  auto out = Tensor<T, cuda>::uninitialized(Shape{batch, length, w});  // [B, L, W]
  spm::cuda_kernels::embedding_forward<T>(token.data(), position.data(), dev_ids.data(), out.data(), batch, length, w);
  return out;
}

/// Backward of embedding_lookup: accumulates dfeatures [B, L, W] into *dtoken (rows ids) and *dposition when not null.
template <Scalar T>
void embedding_lookup_backward(const Tensor<T, cuda>& dfeatures, std::span<const std::int32_t> ids,
                               Tensor<T, cuda>* dtoken, Tensor<T, cuda>* dposition) {
  SPO_CHECK(dfeatures.rank() == 3 && static_cast<std::int64_t>(ids.size()) == dfeatures.size(0) * dfeatures.size(1),
            "embedding_lookup_backward: gradient shape " << dfeatures.shape() << " for " << ids.size() << " ids");
  const std::int64_t batch = dfeatures.size(0), length = dfeatures.size(1), w = dfeatures.size(2);
  if (dtoken) {
    SPO_CHECK(dtoken->rank() == 2 && dtoken->size(1) == w,
              "embedding_lookup_backward: token gradient shape " << dtoken->shape() << " for width " << w);
    // CSR of the positions of each distinct id, ids ascending, positions ascending (a counting sort).
    const auto vocab = static_cast<std::size_t>(dtoken->size(0));
    std::vector<std::int32_t> count(vocab + 1, 0);
    for (auto id : ids) {
      SPO_CHECK(id >= 0 && static_cast<std::size_t>(id) < vocab,
                "embedding_lookup_backward: token id " << id << " outside the vocabulary of " << vocab);
      ++count[static_cast<std::size_t>(id)];
    }
    std::vector<std::int32_t> unique, offsets{0}, start(vocab, 0);
    for (std::size_t v = 0; v < vocab; ++v)
      if (count[v] > 0) {
        start[v] = offsets.back();
        unique.push_back(static_cast<std::int32_t>(v));
        offsets.push_back(offsets.back() + count[v]);
      }
    std::vector<std::int32_t> positions(ids.size());
    for (std::size_t j = 0; j < ids.size(); ++j)
      positions[static_cast<std::size_t>(start[static_cast<std::size_t>(ids[j])]++)] = static_cast<std::int32_t>(j);
    const auto dev_unique = spm_detail::upload_ids(unique);
    const auto dev_offsets = spm_detail::upload_ids(offsets);
    const auto dev_positions = spm_detail::upload_ids(positions);
    spm::cuda_kernels::embedding_token_backward<T>(dfeatures.data(), dev_unique.data(), dev_offsets.data(),
                                                   dev_positions.data(), dtoken->data(),
                                                   static_cast<std::int64_t>(unique.size()), w);
  }
  if (dposition) {
    check_same_shape(dposition->shape(), Shape{length, w}, "embedding_lookup_backward (position gradient)");
    spm::cuda_kernels::embedding_position_backward<T>(dfeatures.data(), dposition->data(), batch, length, w);
  }
}

/// Weighted token sum on the device: h [B, L, W], weights [B, L] -> [B, W] (the masked mean pool).
template <Scalar T>
Tensor<T, cuda> weighted_token_sum(const Tensor<T, cuda>& h, const Tensor<T, cuda>& weights) {
  SPO_CHECK(h.rank() == 3 && weights.shape() == (Shape{h.size(0), h.size(1)}),
            "weighted_token_sum: weights shape " << weights.shape() << " does not match tokens " << h.shape());
  const std::int64_t batch = h.size(0), length = h.size(1), w = h.size(2);
  auto out = Tensor<T, cuda>::uninitialized(Shape{batch, w});  // [B, W]
  spm::cuda_kernels::weighted_token_sum_forward<T>(h.data(), weights.data(), out.data(), batch, length, w);
  return out;
}

/// Backward of weighted_token_sum: dout [B, W] -> dh [B, L, W].
template <Scalar T>
Tensor<T, cuda> weighted_token_sum_backward(const Tensor<T, cuda>& dout, const Tensor<T, cuda>& weights) {
  SPO_CHECK(weights.rank() == 2 && dout.rank() == 2 && dout.size(0) == weights.size(0),
            "weighted_token_sum_backward: gradient shape " << dout.shape() << " for weights " << weights.shape());
  const std::int64_t batch = weights.size(0), length = weights.size(1), w = dout.size(1);
  auto dh = Tensor<T, cuda>::uninitialized(Shape{batch, length, w});  // [B, L, W]
  spm::cuda_kernels::weighted_token_sum_backward<T>(dout.data(), weights.data(), dh.data(), batch, length, w);
  return dh;
}

/// CLIP scores on the device: f, g [B, E], logit_scale (one element) -> scores [B]; u, v [B, E] and norms [B, 2]
/// are written for the backward.
template <Scalar T>
Tensor<T, cuda> clip_scores(const Tensor<T, cuda>& f, const Tensor<T, cuda>& g, const Tensor<T, cuda>& logit_scale,
                            Tensor<T, cuda>& u, Tensor<T, cuda>& v, Tensor<T, cuda>& norms) {
  SPO_CHECK(f.rank() == 2 && f.shape() == g.shape() && logit_scale.numel() == 1,
            "clip_scores: image features " << f.shape() << ", text features " << g.shape() << ", logit scale "
                                           << logit_scale.shape());
  const std::int64_t batch = f.size(0), e = f.size(1);
  u = Tensor<T, cuda>::uninitialized(f.shape());               // [B, E]
  v = Tensor<T, cuda>::uninitialized(g.shape());               // [B, E]
  norms = Tensor<T, cuda>::uninitialized(Shape{batch, 2});     // [B, 2]
  auto scores = Tensor<T, cuda>::uninitialized(Shape{batch});  // [B]
  spm::cuda_kernels::clip_scores_forward<T>(f.data(), g.data(), logit_scale.data(), u.data(), v.data(), norms.data(),
                                            scores.data(), batch, e);
  return scores;
}

/// Backward of clip_scores: df, dg [B, E] from ds [B]; accumulates into *dlogit_scale when not null.
template <Scalar T>
void clip_scores_backward(const Tensor<T, cuda>& ds, const Tensor<T, cuda>& u, const Tensor<T, cuda>& v,
                          const Tensor<T, cuda>& norms, const Tensor<T, cuda>& scores,
                          const Tensor<T, cuda>& logit_scale, Tensor<T, cuda>& df, Tensor<T, cuda>& dg,
                          Tensor<T, cuda>* dlogit_scale) {
  check_same_shape(ds.shape(), scores.shape(), "clip_scores_backward (gradient vs scores)");
  const std::int64_t batch = u.size(0), e = u.size(1);
  df = Tensor<T, cuda>::uninitialized(u.shape());  // [B, E]
  dg = Tensor<T, cuda>::uninitialized(v.shape());  // [B, E]
  spm::cuda_kernels::clip_scores_backward<T>(ds.data(), u.data(), v.data(), norms.data(), scores.data(),
                                             logit_scale.data(), df.data(), dg.data(),
                                             dlogit_scale ? dlogit_scale->data() : nullptr, batch, e);
}

}  // namespace spo
