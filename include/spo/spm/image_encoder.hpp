// SPDX-License-Identifier: MIT
/// @brief ImageEncoder: a CLIP ViT image tower, optionally time-conditioned (SPO's step-aware SPM vision tower).
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <boost/hana/define_struct.hpp>

#include "spo/core/parallel.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/nn/timestep_embedding.hpp"
#include "spo/spm/adaln_block.hpp"
#include "spo/spm/time_policy.hpp"
#include "spo/tensor/ops.hpp"

namespace spo {

// The ViT token operations on whole tensors (the CPU forms; spm/cuda/spm_kernels.hpp has the spo::cuda twins, found by
// ADL).

/// CLIP ViT tokens: patches [B, W, g, g], cls [W], pos [g g + 1, W] -> seq [B, g g + 1, W] with
/// seq[b, 0] = cls + pos[0], seq[b, 1 + p] = patches[b, :, p] + pos[1 + p].
template <Scalar T>
Tensor<T, cpu> patch_tokens(const Tensor<T, cpu>& patches, const Tensor<T, cpu>& cls_embedding,
                            const Tensor<T, cpu>& pos_embedding) {
  SPO_CHECK(patches.rank() == 4 && cls_embedding.shape() == Shape{patches.size(1)} &&
                pos_embedding.shape() == (Shape{patches.size(2) * patches.size(3) + 1, patches.size(1)}),
            "patch_tokens: patches " << patches.shape() << ", class embedding " << cls_embedding.shape()
                                     << " and positional embedding " << pos_embedding.shape() << " do not agree");
  const std::int64_t batch = patches.size(0), w = patches.size(1), np = patches.size(2) * patches.size(3), n = np + 1;
  auto seq = Tensor<T, cpu>::uninitialized(Shape{batch, n, w});  // [B, N + 1, W]
  const T* pos = pos_embedding.data();
  const T* cls = cls_embedding.data();
  parallel_for(
      0, batch,
      [&](std::int64_t b) {
        T* s = seq.data() + b * n * w;
        const T* src = patches.data() + b * w * np;
        for (std::int64_t k = 0; k < w; ++k) s[k] = cls[k] + pos[k];
        for (std::int64_t p = 0; p < np; ++p)
          for (std::int64_t k = 0; k < w; ++k) s[(1 + p) * w + k] = src[k * np + p] + pos[(1 + p) * w + k];
      },
      cpu_kernels::ModulationLayout{batch, n, w, w}.grain());
  return seq;
}

/// Backward of patch_tokens: dseq [B, g g + 1, W] -> dpatches [B, W, g, g]; accumulates into *dcls [W] and
/// *dpos [g g + 1, W] when not null.
template <Scalar T>
Tensor<T, cpu> patch_tokens_backward(const Tensor<T, cpu>& dseq, std::int64_t grid, Tensor<T, cpu>* dcls,
                                     Tensor<T, cpu>* dpos) {
  SPO_CHECK(dseq.rank() == 3 && dseq.size(1) == grid * grid + 1,
            "patch_tokens_backward: gradient shape " << dseq.shape() << " is not [B, " << grid * grid + 1 << ", W]");
  const std::int64_t batch = dseq.size(0), w = dseq.size(2), n = dseq.size(1), np = n - 1;
  SPO_CHECK(!dcls || dcls->shape() == Shape{w}, "patch_tokens_backward: class gradient shape " << dcls->shape());
  SPO_CHECK(!dpos || dpos->shape() == (Shape{n, w}),
            "patch_tokens_backward: positional gradient shape " << dpos->shape());
  if (dcls)
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t k = 0; k < w; ++k) (*dcls)[k] += dseq[b * n * w + k];
  if (dpos) {
    auto gp = as_array(*dpos);
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    for (std::int64_t b = 0; b < batch; ++b) gp += Eigen::Map<const Array>(dseq.data() + b * n * w, n * w);
  }
  auto dpatches = Tensor<T, cpu>::uninitialized(Shape{batch, w, grid, grid});  // [B, W, g, g]
  parallel_for(
      0, batch,
      [&](std::int64_t b) {
        const T* s = dseq.data() + b * n * w;
        T* dst = dpatches.data() + b * w * np;
        for (std::int64_t p = 0; p < np; ++p)
          for (std::int64_t k = 0; k < w; ++k) dst[k * np + p] = s[(1 + p) * w + k];
      },
      cpu_kernels::ModulationLayout{batch, n, w, w}.grain());
  return dpatches;
}

/// h[:, 0] of h [B, N, W] -> [B, W].
template <Scalar T>
Tensor<T, cpu> first_token(const Tensor<T, cpu>& h) {
  SPO_CHECK(h.rank() == 3 && h.size(1) >= 1, "first_token: shape " << h.shape() << " is not [B, N >= 1, W]");
  const std::int64_t batch = h.size(0), n = h.size(1), w = h.size(2);
  auto cls = Tensor<T, cpu>::uninitialized(Shape{batch, w});  // [B, W]
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t k = 0; k < w; ++k) cls[b * w + k] = h[b * n * w + k];
  return cls;
}

/// Backward of first_token: dcls [B, W] -> dh [B, tokens, W], zero except dh[:, 0] = dcls.
template <Scalar T>
Tensor<T, cpu> first_token_backward(const Tensor<T, cpu>& dcls, std::int64_t tokens) {
  SPO_CHECK(dcls.rank() == 2 && tokens >= 1,
            "first_token_backward: gradient shape " << dcls.shape() << " with " << tokens << " tokens");
  const std::int64_t batch = dcls.size(0), w = dcls.size(1);
  Tensor<T, cpu> dh(Shape{batch, tokens, w});  // [B, N, W]
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t k = 0; k < w; ++k) dh[b * tokens * w + k] = dcls[b * w + k];
  return dh;
}

}  // namespace spo

namespace spo::spm {

/// The image tower's topology; every key is required. Tokens: (resolution / patch_size)^2 patches plus the class token.
struct ImageEncoderConfig {
  BOOST_HANA_DEFINE_STRUCT(ImageEncoderConfig, (std::int64_t, resolution), (std::int64_t, channels),
                           (std::int64_t, patch_size), (std::int64_t, width), (std::int64_t, depth),
                           (std::int64_t, heads), (std::int64_t, embed_dim));
};

/// Throws naming the offending values when the config does not describe a tower.
inline void validate(const ImageEncoderConfig& c, std::string_view key = "network.image") {
  const std::string k(key);
  SPO_CONFIG_CHECK(c.resolution > 0, k + ".resolution", "must be >= 1, got " << c.resolution);
  SPO_CONFIG_CHECK(c.channels > 0, k + ".channels", "must be >= 1, got " << c.channels);
  SPO_CONFIG_CHECK(c.patch_size > 0, k + ".patch_size", "must be >= 1, got " << c.patch_size);
  SPO_CONFIG_CHECK(c.width > 0, k + ".width", "must be >= 1, got " << c.width);
  SPO_CONFIG_CHECK(c.depth >= 0, k + ".depth", "must be >= 0, got " << c.depth);
  SPO_CONFIG_CHECK(c.heads > 0, k + ".heads", "must be >= 1, got " << c.heads);
  SPO_CONFIG_CHECK(c.embed_dim > 0, k + ".embed_dim", "must be >= 1, got " << c.embed_dim);
  SPO_CONFIG_CHECK(c.resolution % c.patch_size == 0, k + ".patch_size",
                   c.patch_size << " does not divide resolution " << c.resolution);
  SPO_CONFIG_CHECK(c.width % c.heads == 0, k + ".heads", c.heads << " does not divide width " << c.width);
}

/// Width of the sinusoidal timestep features of the SPM (DiT's frequency_embedding_size; docs/algorithm.md 4.1).
inline constexpr std::int64_t time_frequency_dim = 256;

/*!
  WHAT THIS REPRESENTS
    CLIP's VisionTransformer (open_clip / HF CLIPVisionTransformer) with SPO's time conditioning
    (time_conditioned_clip.py; docs/algorithm.md 4.1), for images x [B, C, R, R] and timesteps t [B]:
      tokens = conv1(x) as [B, N, W]  (kernel = stride = patch, no bias; N = (R / patch)^2)
      h      = ln_pre([class_embedding; tokens] + positional_embedding)          [B, N + 1, W]
      h      = blocks.depth-1(... blocks.0(h, t_emb))                             AdaLNBlock<Policy>
      p      = ln_post(h[:, 0])                                                   [B, W]
      p      = p * (1 + sc) + sh, (sh, sc) = final_adaLN_modulation(SiLU(t_emb)).chunk(2)   (conditioned only)
      y      = proj(p)                                                            [B, E], Linear(W -> E, no bias)
    t_emb = t_embedder(emb(t)) with emb the cos-first sinusoidal embedding of width 256 (half 128,
    f_k = exp(-ln(10000) k / 128)) and t_embedder = Linear(256 -> W) SiLU Linear(W -> W) (diffusers'
    TimestepEmbedding). Unconditioned ignores t and has no t_embedder or modulation parameters; every shared
    parameter has the same key in both policies, so either state dict loads non-strictly into the other.
    Keys: conv1.weight, class_embedding [W], positional_embedding [N + 1, W], ln_pre.*, blocks.<i>.*, ln_post.*,
    proj.weight [E, W]; conditioned also t_embedder.linear_1.*, t_embedder.linear_2.*, final_adaLN_modulation.1.*.
  CALL FORMS
    forward(x, t) -> [B, E] then backward(dy) -> dx [B, C, R, R]. No gradient w.r.t. t.
!*/
template <Scalar T, TimePolicy Policy, Device D = cpu>
class ImageEncoder {
 public:
  using scalar_type = T;
  using device_type = D;
  using policy_type = Policy;
  using tensor = Tensor<T, D>;
  using block_type = AdaLNBlock<T, Policy, D>;
  static constexpr bool conditioned = Policy::conditioned;

  ImageEncoder() = default;
  explicit ImageEncoder(const ImageEncoderConfig& c) : config_(c) {
    validate(c);
    grid_ = c.resolution / c.patch_size;
    conv1_ = nn::Conv2d<T, D>(c.channels, c.width, c.patch_size, c.patch_size, 0, false);
    class_embedding_ = nn::Parameter<T, D>(Shape{c.width});
    positional_embedding_ = nn::Parameter<T, D>(Shape{tokens(), c.width});
    ln_pre_ = nn::LayerNorm<T, D>(c.width);
    for (std::int64_t i = 0; i < c.depth; ++i) blocks_.emplace_back(c.width, c.heads);
    ln_post_ = nn::LayerNorm<T, D>(c.width);
    proj_ = nn::Linear<T, D>(c.width, c.embed_dim, false);
    if constexpr (conditioned) {
      t_embedder_ = nn::TimestepEmbedding<T, D>(time_frequency_dim, c.width, c.width);
      final_modulation_ = nn::Linear<T, D>(c.width, 2 * c.width);
      init_adaln_identity();
    }
  }

  /// CLIP's init (open_clip VisionTransformer): conv1 torch default, class and positional embeddings and proj
  /// N(0, W^-0.5), blocks per ClipInitStd; t_embedder weights N(0, 0.02) with zero biases (DiT); adaLN identity.
  void reset_parameters(Generator& gen) {
    const T scale = T(1) / std::sqrt(static_cast<T>(config_.width));
    conv1_.reset_parameters(gen);
    fill_normal(class_embedding_.value.view(), gen, T(0), scale);
    fill_normal(positional_embedding_.value.view(), gen, T(0), scale);
    reset_layer_norm(ln_pre_);
    for (auto& b : blocks_) b.reset_parameters(gen, config_.depth);
    reset_layer_norm(ln_post_);
    fill_normal(proj_.weight().value.view(), gen, T(0), scale);
    if constexpr (conditioned) {
      for (nn::Linear<T, D>* l : {&t_embedder_.linear_1(), &t_embedder_.linear_2()}) {
        fill_normal(l->weight().value.view(), gen, T(0), T(0.02));
        l->bias().value.fill_zero();
      }
      init_adaln_identity();
    }
  }

  /// SPO's init_adaln_paras: every block at its identity (gates 1) and the final modulation 0.
  void init_adaln_identity() requires conditioned {
    for (auto& b : blocks_) b.init_adaln_identity();
    final_modulation_.weight().value.fill_zero();
    final_modulation_.bias().value.fill_zero();
  }

  /// x [B, C, R, R], t [B] -> features [B, E].
  tensor forward(const tensor& x, const tensor& t) {
    const ImageEncoderConfig& c = config_;
    SPO_CHECK(x.rank() == 4 && x.size(1) == c.channels && x.size(2) == c.resolution && x.size(3) == c.resolution,
              describe() << ": image shape " << x.shape() << " is not [B, " << c.channels << ", " << c.resolution
                         << ", " << c.resolution << "]");
    SPO_CHECK(t.shape() == Shape{x.size(0)}, describe() << ": timestep shape " << t.shape() << " is not [" << x.size(0)
                                                        << "] for image shape " << x.shape());
    const std::int64_t batch = x.size(0);
    tensor t_emb;
    if constexpr (conditioned) {
      const auto opts = nn::SinusoidalEmbeddingOptions::cos_first(time_frequency_dim);
      t_emb = t_embedder_.forward(timestep_embedding(t, opts));  // [B, W] (nn:: by ADL on opts)
    }
    tensor h = patch_tokens(conv1_.forward(x), class_embedding_.value, positional_embedding_.value);  // [B, N + 1, W]
    h = ln_pre_.forward(h);                                                                           // [B, N + 1, W]
    for (auto& b : blocks_) h = b.forward(h, t_emb);                                                  // [B, N + 1, W]
    tensor p = ln_post_.forward(first_token(h));                                                      // [B, W]
    if constexpr (conditioned) {
      tensor mod = final_modulation_.forward(final_act_.forward(t_emb));  // [B, 2W]
      tensor q = adaln_modulate(p, mod, 0, 1);                            // [B, W]
      if (nn::grad_enabled()) {
        pooled_ = std::move(p);
        final_mod_ = std::move(mod);
      }
      p = std::move(q);
    }
    batch_ = batch;
    return proj_.forward(p);  // [B, E]
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(dy.shape() == (Shape{batch_, config_.embed_dim}), describe() << ": gradient shape " << dy.shape()
                                                                           << " does not match output shape "
                                                                           << Shape{batch_, config_.embed_dim});
    tensor dp = proj_.backward(dy);  // [B, W]
    tensor dt_emb;
    if constexpr (conditioned) {
      SPO_CHECK(!final_mod_.empty(), describe() << ": backward without a forward in grad mode");
      tensor dmod(final_mod_.shape());                                           // [B, 2W]
      tensor dq = adaln_modulate_backward(dp, pooled_, final_mod_, 0, 1, dmod);  // [B, W]
      dt_emb = final_act_.backward(final_modulation_.backward(dmod));            // [B, W]
      dp = std::move(dq);
      pooled_ = tensor();
      final_mod_ = tensor();
    }
    tensor dcls = ln_post_.backward(dp);               // [B, W]
    tensor dh = first_token_backward(dcls, tokens());  // [B, N + 1, W]
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      auto g = it->backward(dh);
      dh = std::move(g.dx);  // [B, N + 1, W]
      if constexpr (conditioned) add_inplace(dt_emb, g.dt_emb);
    }
    if constexpr (conditioned) t_embedder_.backward(dt_emb);  // no gradient w.r.t. t
    tensor dseq = ln_pre_.backward(dh);                       // [B, N + 1, W]
    tensor dpatches = patch_tokens_backward(dseq, grid_, class_embedding_.trainable ? &class_embedding_.grad : nullptr,
                                            positional_embedding_.trainable ? &positional_embedding_.grad : nullptr);
    return conv1_.backward(dpatches);  // [B, C, R, R]
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    conv1_.visit_parameters(f, nn::join_name(prefix, "conv1"));
    f(nn::join_name(prefix, "class_embedding"), class_embedding_);
    f(nn::join_name(prefix, "positional_embedding"), positional_embedding_);
    ln_pre_.visit_parameters(f, nn::join_name(prefix, "ln_pre"));
    for (std::size_t i = 0; i < blocks_.size(); ++i)
      blocks_[i].visit_parameters(f, nn::join_name(prefix, "blocks." + std::to_string(i)));
    ln_post_.visit_parameters(f, nn::join_name(prefix, "ln_post"));
    if constexpr (conditioned) {
      final_modulation_.visit_parameters(f, nn::join_name(prefix, "final_adaLN_modulation.1"));
      t_embedder_.visit_parameters(f, nn::join_name(prefix, "t_embedder"));
    }
    proj_.visit_parameters(f, nn::join_name(prefix, "proj"));
  }

  const ImageEncoderConfig& config() const { return config_; }
  /// Sequence length: patches plus the class token.
  std::int64_t tokens() const { return grid_ * grid_ + 1; }
  std::vector<block_type>& blocks() { return blocks_; }
  /// Linear(W -> 2W) of the final modulation (the `1` of final_adaLN_modulation).
  nn::Linear<T, D>& final_adaln_modulation() requires conditioned { return final_modulation_; }
  nn::TimestepEmbedding<T, D>& t_embedder() requires conditioned { return t_embedder_; }

 private:
  std::string describe() const {
    std::ostringstream os;
    os << "ImageEncoder<" << Policy::name << ">(resolution=" << config_.resolution << ", channels=" << config_.channels
       << ", patch_size=" << config_.patch_size << ", width=" << config_.width << ")";
    return os.str();
  }

  struct Empty {};
  template <class L>
  using IfConditioned = std::conditional_t<conditioned, L, Empty>;

  ImageEncoderConfig config_{};
  std::int64_t grid_ = 0, batch_ = 0;
  nn::Conv2d<T, D> conv1_;
  nn::Parameter<T, D> class_embedding_, positional_embedding_;
  nn::LayerNorm<T, D> ln_pre_;
  std::vector<block_type> blocks_;
  nn::LayerNorm<T, D> ln_post_;
  [[no_unique_address]] IfConditioned<nn::TimestepEmbedding<T, D>> t_embedder_;
  [[no_unique_address]] IfConditioned<nn::SiLU<T, D>> final_act_;
  [[no_unique_address]] IfConditioned<nn::Linear<T, D>> final_modulation_;
  nn::Linear<T, D> proj_;
  tensor pooled_;     // [B, W] ln_post output (conditioned, for backward)
  tensor final_mod_;  // [B, 2W] final modulation (conditioned, for backward)
};

}  // namespace spo::spm
