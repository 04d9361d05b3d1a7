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
      : vocab_(vocab_size), length_(max_length), dim_(dim),
        token_(Shape{vocab_size, dim}), position_(Shape{max_length, dim}) {}

  void reset_parameters(Generator& gen) {
    fill_normal(token_.value.view(), gen, T(0), T(0.02));     // CLIP's init scale
    fill_normal(position_.value.view(), gen, T(0), T(0.01));
  }

  std::int64_t dim() const { return dim_; }
  std::int64_t max_length() const { return length_; }

  /// ids: B rows of max_length token ids.
  Tensor<T, D> forward(std::span<const std::vector<std::int32_t>> ids) {
    const std::int64_t batch = static_cast<std::int64_t>(ids.size());
    Tensor<T, D> out = Tensor<T, D>::uninitialized(Shape{batch, length_, dim_});   // [B, L, D]
    for (std::int64_t b = 0; b < batch; ++b) {
      SPO_CHECK(static_cast<std::int64_t>(ids[b].size()) == length_,
                "token row " << b << " has " << ids[b].size() << " ids, expected " << length_);
      for (std::int64_t l = 0; l < length_; ++l) {
        const std::int32_t id = ids[b][static_cast<std::size_t>(l)];
        SPO_CHECK(id >= 0 && id < vocab_, "token id " << id << " outside the vocabulary of " << vocab_);
        const T* tok = token_.value.data() + id * dim_;
        const T* pos = position_.value.data() + l * dim_;
        T* o = out.data() + (b * length_ + l) * dim_;
        for (std::int64_t k = 0; k < dim_; ++k) o[k] = tok[k] + pos[k];
      }
    }
    if (nn::grad_enabled()) ids_.assign(ids.begin(), ids.end());
    return out;
  }

  /// Accumulates d features into the embeddings (no input gradient: token ids are discrete).
  void backward(const Tensor<T, D>& dfeatures) {
    const std::int64_t batch = static_cast<std::int64_t>(ids_.size());
    check_same_shape(dfeatures.shape(), Shape{batch, length_, dim_}, "EmbeddingTextEncoder::backward");
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t l = 0; l < length_; ++l) {
        const T* g = dfeatures.data() + (b * length_ + l) * dim_;
        if (token_.trainable) {
          T* gt = token_.grad.data() + ids_[b][static_cast<std::size_t>(l)] * dim_;
          for (std::int64_t k = 0; k < dim_; ++k) gt[k] += g[k];
        }
        if (position_.trainable) {
          T* gp = position_.grad.data() + l * dim_;
          for (std::int64_t k = 0; k < dim_; ++k) gp[k] += g[k];
        }
      }
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
  std::vector<std::vector<std::int32_t>> ids_;
};

}  // namespace spo::text
