// SPDX-License-Identifier: MIT
/// @brief A small text encoder: token + position embeddings -> token features [B, L, D] for cross-attention.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "spo/core/rng.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/ops.hpp"

namespace spo {

/// Token + position embeddings (the CPU form; spm/cuda/spm_kernels.hpp has the spo::cuda twin, found by ADL):
/// out[b, l] = token[ids[b L + l]] + position[l] for ids [B * L] already checked against the vocabulary -> [B, L, W].
template <Scalar T>
Tensor<T, cpu> embedding_lookup(const Tensor<T, cpu>& token, const Tensor<T, cpu>& position,
                                std::span<const std::int32_t> ids, std::int64_t batch) {
  SPO_CHECK(token.rank() == 2 && position.rank() == 2 && token.size(1) == position.size(1) &&
                static_cast<std::int64_t>(ids.size()) == batch * position.size(0),
            "embedding_lookup: " << ids.size() << " ids for " << batch << " rows, token table " << token.shape()
                                 << ", position table " << position.shape());
  const std::int64_t length = position.size(0), dim = position.size(1);
  auto out = Tensor<T, cpu>::uninitialized(Shape{batch, length, dim});  // [B, L, W]
  for (std::int64_t r = 0; r < batch * length; ++r) {
    const T* tok = token.data() + static_cast<std::int64_t>(ids[static_cast<std::size_t>(r)]) * dim;
    const T* pos = position.data() + (r % length) * dim;
    T* o = out.data() + r * dim;
    for (std::int64_t k = 0; k < dim; ++k) o[k] = tok[k] + pos[k];
  }
  return out;
}

/// Backward of embedding_lookup: accumulates dfeatures [B, L, W] into *dtoken (rows ids) and *dposition when not null.
template <Scalar T>
void embedding_lookup_backward(const Tensor<T, cpu>& dfeatures, std::span<const std::int32_t> ids,
                               Tensor<T, cpu>* dtoken, Tensor<T, cpu>* dposition) {
  SPO_CHECK(dfeatures.rank() == 3 && static_cast<std::int64_t>(ids.size()) == dfeatures.size(0) * dfeatures.size(1),
            "embedding_lookup_backward: gradient shape " << dfeatures.shape() << " for " << ids.size() << " ids");
  const std::int64_t length = dfeatures.size(1), dim = dfeatures.size(2);
  for (std::int64_t r = 0; r < dfeatures.size(0) * length; ++r) {
    const T* g = dfeatures.data() + r * dim;
    if (dtoken) {
      T* gt = dtoken->data() + static_cast<std::int64_t>(ids[static_cast<std::size_t>(r)]) * dim;
      for (std::int64_t k = 0; k < dim; ++k) gt[k] += g[k];
    }
    if (dposition) {
      T* gp = dposition->data() + (r % length) * dim;
      for (std::int64_t k = 0; k < dim; ++k) gp[k] += g[k];
    }
  }
}

}  // namespace spo

namespace spo::text {

/*!
  WHAT THIS REPRESENTS
    The conditioning policy of the embedded default, in the role CLIP's text tower plays for Stable Diffusion:
      features[b, l] = token_embedding[ids[b, l]] + position_embedding[l]          // [B, L, D]
    Trained jointly with the base UNet, then frozen. Keys: token_embedding.weight [V, D],
    position_embedding.weight [L, D].
!*/
template <Scalar T, Device D = cpu>
class EmbeddingTextEncoder {
 public:
  using scalar_type = T;
  using device_type = D;

  EmbeddingTextEncoder() = default;
  EmbeddingTextEncoder(std::int64_t vocab_size, std::int64_t max_length, std::int64_t dim)
      : vocab_(vocab_size),
        length_(max_length),
        dim_(dim),
        token_(Shape{vocab_size, dim}),
        position_(Shape{max_length, dim}) {}

  void reset_parameters(Generator& gen) {
    fill_normal(token_.value.view(), gen, T(0), T(0.02));  // CLIP's init scale
    fill_normal(position_.value.view(), gen, T(0), T(0.01));
  }

  std::int64_t dim() const { return dim_; }
  std::int64_t max_length() const { return length_; }

  /// ids: B rows of max_length token ids.
  Tensor<T, D> forward(std::span<const std::vector<std::int32_t>> ids) {
    const std::int64_t batch = static_cast<std::int64_t>(ids.size());
    std::vector<std::int32_t> flat;  // [B * L] token ids
    flat.reserve(static_cast<std::size_t>(batch * length_));
    for (std::int64_t b = 0; b < batch; ++b) {
      SPO_CHECK(static_cast<std::int64_t>(ids[b].size()) == length_,
                "token row " << b << " has " << ids[b].size() << " ids, expected " << length_);
      for (const std::int32_t id : ids[b]) {
        SPO_CHECK(id >= 0 && id < vocab_, "token id " << id << " outside the vocabulary of " << vocab_);
        flat.push_back(id);
      }
    }
    const std::span<const std::int32_t> row_ids(flat);
    Tensor<T, D> out = embedding_lookup(token_.value, position_.value, row_ids, batch);  // [B, L, D]
    if (nn::grad_enabled()) ids_ = std::move(flat);
    return out;
  }

  /// Accumulates d features into the embeddings (no input gradient: token ids are discrete).
  void backward(const Tensor<T, D>& dfeatures) {
    const std::int64_t batch = length_ > 0 ? static_cast<std::int64_t>(ids_.size()) / length_ : 0;
    check_same_shape(dfeatures.shape(), Shape{batch, length_, dim_}, "EmbeddingTextEncoder::backward");
    Tensor<T, D>* dtoken = token_.trainable ? &token_.grad : nullptr;
    Tensor<T, D>* dposition = position_.trainable ? &position_.grad : nullptr;
    embedding_lookup_backward(dfeatures, std::span<const std::int32_t>(ids_), dtoken, dposition);
    ids_.clear();
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(nn::join_name(prefix, "token_embedding.weight"), token_);
    f(nn::join_name(prefix, "position_embedding.weight"), position_);
  }

 private:
  std::int64_t vocab_ = 0, length_ = 0, dim_ = 0;
  nn::Parameter<T, D> token_, position_;
  std::vector<std::int32_t> ids_;  // [B * L] token ids of the last forward in grad mode
};

}  // namespace spo::text
