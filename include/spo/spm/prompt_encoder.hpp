// SPDX-License-Identifier: MIT
/// @brief PromptEncoder: the text tower of the preference network (embeddings, one CLIP block, masked mean pooling).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spo/core/rng.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/spm/adaln_block.hpp"
#include "spo/spm/time_policy.hpp"
#include "spo/text/text_encoder.hpp"
#include "spo/text/tokenizer.hpp"

namespace spo {

/// Weighted token sum (the CPU form; spm/cuda/spm_kernels.hpp has the spo::cuda twin, found by ADL):
/// out[b] = sum_l weights[b, l] h[b, l] for h [B, L, W], weights [B, L] -> [B, W].
template <Scalar T>
Tensor<T, cpu> weighted_token_sum(const Tensor<T, cpu>& h, const Tensor<T, cpu>& weights) {
  SPO_CHECK(h.rank() == 3 && weights.shape() == (Shape{h.size(0), h.size(1)}),
            "weighted_token_sum: weights shape " << weights.shape() << " does not match tokens " << h.shape());
  const std::int64_t batch = h.size(0), length = h.size(1), w = h.size(2);
  auto pooled = Tensor<T, cpu>::uninitialized(Shape{batch, w});  // [B, W]
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t k = 0; k < w; ++k) {
      T acc = 0;
      for (std::int64_t l = 0; l < length; ++l) acc += weights[b * length + l] * h[(b * length + l) * w + k];
      pooled[b * w + k] = acc;
    }
  return pooled;
}

/// Backward of weighted_token_sum: dout [B, W] -> dh [B, L, W] = weights[b, l] dout[b].
template <Scalar T>
Tensor<T, cpu> weighted_token_sum_backward(const Tensor<T, cpu>& dout, const Tensor<T, cpu>& weights) {
  SPO_CHECK(weights.rank() == 2 && dout.rank() == 2 && dout.size(0) == weights.size(0),
            "weighted_token_sum_backward: gradient shape " << dout.shape() << " for weights " << weights.shape());
  const std::int64_t batch = weights.size(0), length = weights.size(1), w = dout.size(1);
  auto dh = Tensor<T, cpu>::uninitialized(Shape{batch, length, w});  // [B, L, W]
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t l = 0; l < length; ++l)
      for (std::int64_t k = 0; k < w; ++k) dh[(b * length + l) * w + k] = weights[b * length + l] * dout[b * w + k];
  return dh;
}

}  // namespace spo

namespace spo::spm {

/*!
  WHAT THIS REPRESENTS
    A small CLIP-style text tower for token rows ids [B][L] (text::Tokenizer, pad id 0):
      h = token_embedding[ids] + position_embedding                 [B, L, W']   (text::EmbeddingTextEncoder)
      h = ln_final(blocks.0(h))                                     plain pre-LN CLIP block, no attention mask
      p[b] = sum_l m[b, l] h[b, l] / sum_l m[b, l]                  m = (ids != pad); all ones for an all-pad row
      y = text_projection(p)                                        [B, E], Linear(W' -> E, no bias)
    CLIP pools the EOT token of a causal transformer; the closed word vocabulary here has no EOT token, so the
    non-pad tokens are averaged instead. The empty prompt (all padding) averages every position.
    Keys: token_embedding.weight [V, W'], position_embedding.weight [L, W'], blocks.0.*, ln_final.*,
    text_projection.weight [E, W'].
  CALL FORMS
    forward(ids) -> [B, E] then backward(dy) (accumulates parameter gradients; token ids have no gradient).
!*/
template <Scalar T, Device D = cpu>
class PromptEncoder {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;
  using block_type = AdaLNBlock<T, Unconditioned, D>;

  PromptEncoder() = default;
  PromptEncoder(std::int64_t vocab_size, std::int64_t max_length, std::int64_t width, std::int64_t heads,
                std::int64_t embed_dim)
      : embedding_(vocab_size, max_length, width),
        block_(width, heads),
        ln_final_(width),
        projection_(width, embed_dim, false) {
    SPO_CHECK(vocab_size > 0 && max_length > 0 && embed_dim > 0,
              "PromptEncoder: vocab_size " << vocab_size << ", max_length " << max_length << ", embed_dim " << embed_dim
                                           << " must be positive");
  }

  /// Embeddings as text::EmbeddingTextEncoder (N(0, 0.02) tokens, N(0, 0.01) positions), the block per ClipInitStd
  /// (depth 1), ln_final (1, 0), text_projection N(0, W'^-0.5) (open_clip TextTransformer).
  void reset_parameters(Generator& gen) {
    embedding_.reset_parameters(gen);
    block_.reset_parameters(gen, 1);
    reset_layer_norm(ln_final_);
    fill_normal(projection_.weight().value.view(), gen, T(0), T(1) / std::sqrt(static_cast<T>(width())));
  }

  /// ids: B rows of max_length token ids -> features [B, E].
  tensor forward(std::span<const std::vector<std::int32_t>> ids) {
    const std::int64_t batch = static_cast<std::int64_t>(ids.size()), length = max_length();
    tensor h = embedding_.forward(ids);                                  // [B, L, W']
    h = ln_final_.forward(block_.forward(h, tensor()));                  // [B, L, W']
    auto weights = Tensor<T, cpu>::uninitialized(Shape{batch, length});  // [B, L] pooling weights m / sum m
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto& row = ids[static_cast<std::size_t>(b)];
      std::int64_t count = 0;
      for (auto id : row) count += id != text::Tokenizer::pad_id;
      for (std::int64_t l = 0; l < length; ++l) {
        const bool used = count == 0 || row[static_cast<std::size_t>(l)] != text::Tokenizer::pad_id;
        weights[b * length + l] = used ? T(1) / static_cast<T>(count == 0 ? length : count) : T(0);
      }
    }
    tensor m;  // [B, L] on D
    if constexpr (D::host_accessible)
      m = std::move(weights);
    else
      m = to_device(weights);                  // host-side ids: one small upload
    tensor pooled = weighted_token_sum(h, m);  // [B, W']
    if (nn::grad_enabled()) weights_ = std::move(m);
    batch_ = batch;
    return projection_.forward(pooled);  // [B, E]
  }

  void backward(const tensor& dy) {
    SPO_CHECK(!weights_.empty(), "PromptEncoder::backward without a forward in grad mode");
    SPO_CHECK(dy.shape() == (Shape{batch_, embed_dim()}), "PromptEncoder::backward: gradient shape "
                                                              << dy.shape() << " does not match output shape "
                                                              << Shape{batch_, embed_dim()});
    tensor dp = projection_.backward(dy);                   // [B, W']
    tensor dh = weighted_token_sum_backward(dp, weights_);  // [B, L, W']
    auto g = block_.backward(ln_final_.backward(dh));
    embedding_.backward(g.dx);
    weights_ = tensor();
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    embedding_.visit_parameters(f, prefix);
    block_.visit_parameters(f, nn::join_name(prefix, "blocks.0"));
    ln_final_.visit_parameters(f, nn::join_name(prefix, "ln_final"));
    projection_.visit_parameters(f, nn::join_name(prefix, "text_projection"));
  }

  std::int64_t width() const { return embedding_.dim(); }
  std::int64_t max_length() const { return embedding_.max_length(); }
  std::int64_t embed_dim() const { return projection_.out_features(); }
  block_type& block() { return block_; }

 private:
  text::EmbeddingTextEncoder<T, D> embedding_;
  block_type block_;
  nn::LayerNorm<T, D> ln_final_;
  nn::Linear<T, D> projection_;
  std::int64_t batch_ = 0;
  tensor weights_;  // [B, L] pooling weights, kept for backward
};

}  // namespace spo::spm
