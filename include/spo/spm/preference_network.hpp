// SPDX-License-Identifier: MIT
/// @brief PreferenceNetwork: CLIP-style scores s = exp(logit_scale) cos(image(x, t), text(c)) (SPO's SPM network).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/rng.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/spm/image_encoder.hpp"
#include "spo/spm/prompt_encoder.hpp"
#include "spo/spm/time_policy.hpp"
#include "spo/text/prompts.hpp"

namespace spo {

namespace spm_detail {

/// torch.nn.functional.normalize's eps: norms below it are taken as it.
inline constexpr double norm_floor = 1e-12;

/// out = x / max(|x|, floor); returns max(|x|, floor).
template <Scalar T>
double normalize_row(const T* x, T* out, std::int64_t n) {
  double ss = 0;
  for (std::int64_t k = 0; k < n; ++k) ss += static_cast<double>(x[k]) * static_cast<double>(x[k]);
  const double norm = std::max(std::sqrt(ss), norm_floor);
  for (std::int64_t k = 0; k < n; ++k) out[k] = static_cast<T>(static_cast<double>(x[k]) / norm);
  return norm;
}

/// dx = (du - u <u, du>) / norm with du = alpha * other (the gradient of <x / |x|, other> times alpha).
template <Scalar T>
void normalize_row_backward(const T* u, const T* other, double alpha, double norm, T* dx, std::int64_t n) {
  double proj = 0;
  for (std::int64_t k = 0; k < n; ++k) proj += static_cast<double>(u[k]) * static_cast<double>(other[k]);
  for (std::int64_t k = 0; k < n; ++k)
    dx[k] = static_cast<T>(alpha * (static_cast<double>(other[k]) - static_cast<double>(u[k]) * proj) / norm);
}

}  // namespace spm_detail

/// CLIP scores (the CPU form; spm/cuda/spm_kernels.hpp has the spo::cuda twin, found by ADL): f, g [B, E] and
/// logit_scale (one element) -> scores [B] = exp(logit_scale) <f / |f|, g / |g|>; writes u = f / |f|, v = g / |g|
/// [B, E] and norms [B, 2] = (|f|, |g|) for the backward.
template <Scalar T>
Tensor<T, cpu> clip_scores(const Tensor<T, cpu>& f, const Tensor<T, cpu>& g, const Tensor<T, cpu>& logit_scale,
                           Tensor<T, cpu>& u, Tensor<T, cpu>& v, Tensor<T, cpu>& norms) {
  SPO_CHECK(f.rank() == 2 && f.shape() == g.shape() && logit_scale.numel() == 1,
            "clip_scores: image features " << f.shape() << ", text features " << g.shape() << ", logit scale "
                                           << logit_scale.shape());
  const std::int64_t batch = f.size(0), e = f.size(1);
  u = Tensor<T, cpu>::uninitialized(f.shape());               // [B, E]
  v = Tensor<T, cpu>::uninitialized(g.shape());               // [B, E]
  norms = Tensor<T, cpu>::uninitialized(Shape{batch, 2});     // [B, 2] |f|, |g|
  auto scores = Tensor<T, cpu>::uninitialized(Shape{batch});  // [B]
  const double scale = std::exp(static_cast<double>(logit_scale[0]));
  for (std::int64_t b = 0; b < batch; ++b) {
    const double nf = spm_detail::normalize_row(f.data() + b * e, u.data() + b * e, e);
    const double ng = spm_detail::normalize_row(g.data() + b * e, v.data() + b * e, e);
    double c = 0;
    for (std::int64_t k = 0; k < e; ++k) c += static_cast<double>(u[b * e + k]) * static_cast<double>(v[b * e + k]);
    norms[2 * b] = static_cast<T>(nf);
    norms[2 * b + 1] = static_cast<T>(ng);
    scores[b] = static_cast<T>(scale * c);
  }
  return scores;
}

/// Backward of clip_scores: with c = <u, v>, du = ds e^ls v, df = (du - u <u, du>) / |f| (symmetrically dg);
/// *dlogit_scale += sum_b ds_b s_b when not null.
template <Scalar T>
void clip_scores_backward(const Tensor<T, cpu>& ds, const Tensor<T, cpu>& u, const Tensor<T, cpu>& v,
                          const Tensor<T, cpu>& norms, const Tensor<T, cpu>& scores, const Tensor<T, cpu>& logit_scale,
                          Tensor<T, cpu>& df, Tensor<T, cpu>& dg, Tensor<T, cpu>* dlogit_scale) {
  check_same_shape(ds.shape(), scores.shape(), "clip_scores_backward (gradient vs scores)");
  const std::int64_t batch = u.size(0), e = u.size(1);
  const double scale = std::exp(static_cast<double>(logit_scale[0]));
  df = Tensor<T, cpu>::uninitialized(u.shape());  // [B, E]
  dg = Tensor<T, cpu>::uninitialized(v.shape());  // [B, E]
  double dls = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const double d = static_cast<double>(ds[b]);
    dls += d * static_cast<double>(scores[b]);
    spm_detail::normalize_row_backward(u.data() + b * e, v.data() + b * e, d * scale, static_cast<double>(norms[2 * b]),
                                       df.data() + b * e, e);
    spm_detail::normalize_row_backward(v.data() + b * e, u.data() + b * e, d * scale,
                                       static_cast<double>(norms[2 * b + 1]), dg.data() + b * e, e);
  }
  if (dlogit_scale) (*dlogit_scale)[0] += static_cast<T>(dls);
}

}  // namespace spo

namespace spo::spm {

/*!
  WHAT THIS REPRESENTS
    The preference network's topology; every key is required. The text tower has one block of text_width with
    text_heads heads over text_max_length tokens; the vocabulary comes from the tokenizer (make_preference_network:
    text::fashion_tokenizer(text_max_length)). init_logit_scale is CLIP's ln(1 / 0.07) = 2.6592600369327779.
    The embedded Fashion-MNIST default (images [B, 1, 32, 32] in [-1, 1]):
      image {resolution 32, channels 1, patch_size 4 (64 patches + class token), width 64, depth 4, heads 4,
      embed_dim 64}, text_width 64, text_heads 4, text_max_length 8, init_logit_scale 2.6592600369327779.
!*/
struct PreferenceNetworkConfig {
  BOOST_HANA_DEFINE_STRUCT(PreferenceNetworkConfig, (ImageEncoderConfig, image), (std::int64_t, text_width),
                           (std::int64_t, text_heads), (std::int64_t, text_max_length), (double, init_logit_scale));
};

/// Both towers' topologies in range (keys under `key`, "network" in a preference-model config).
inline void validate(const PreferenceNetworkConfig& c, std::string_view key = "network") {
  const std::string k(key);
  validate(c.image, k + ".image");
  SPO_CONFIG_CHECK(c.text_width > 0, k + ".text_width", "must be >= 1, got " << c.text_width);
  SPO_CONFIG_CHECK(c.text_heads > 0 && c.text_width % c.text_heads == 0, k + ".text_heads",
                   "must be >= 1 and divide text_width " << c.text_width << ", got " << c.text_heads);
  SPO_CONFIG_CHECK(c.text_max_length > 0, k + ".text_max_length", "must be >= 1, got " << c.text_max_length);
  SPO_CONFIG_CHECK(std::isfinite(c.init_logit_scale), k + ".init_logit_scale",
                   "must be finite, got " << c.init_logit_scale);
}

/*!
  WHAT THIS REPRESENTS
    SPO's step-aware preference model network (docs/algorithm.md 4.1; PickScore / CLIP scoring), for images
    [B, C, R, R], timesteps t [B] and token rows ids [B][L]:
      u = f / |f|, f = visual(x, t)  [B, E];   v = g / |g|, g = text(ids)  [B, E]
      s_b = exp(logit_scale) <u_b, v_b>                                         [B]
    Policy = StepConditioned gives the step-aware SPM, Unconditioned a PickScore-like CLIP scorer (t ignored).
    Keys: visual.*, text.*, logit_scale (a 0-dim tensor, as torch's nn.Parameter(torch.ones([]) * init)).
  CALL FORMS
    forward(images, t, ids) -> scores [B] then backward(dscores) -> dimages; parameter gradients (both towers and
    logit_scale) accumulate.
!*/
template <Scalar T, TimePolicy Policy, Device D = cpu>
class PreferenceNetwork {
 public:
  using scalar_type = T;
  using device_type = D;
  using policy_type = Policy;
  using tensor = Tensor<T, D>;
  using image_encoder_type = ImageEncoder<T, Policy, D>;
  using prompt_encoder_type = PromptEncoder<T, D>;
  static constexpr bool conditioned = Policy::conditioned;

  PreferenceNetwork() = default;
  PreferenceNetwork(const PreferenceNetworkConfig& c, std::int64_t vocab_size)
      : config_(c),
        visual_(c.image),
        text_(vocab_size, c.text_max_length, c.text_width, c.text_heads, c.image.embed_dim),
        logit_scale_(Shape{}) {
    SPO_CHECK(c.text_width > 0 && c.text_heads > 0 && c.text_width % c.text_heads == 0,
              "PreferenceNetworkConfig: text_width " << c.text_width << " is not a positive multiple of text_heads "
                                                     << c.text_heads);
    fill_constant(logit_scale_.value.view(), static_cast<T>(c.init_logit_scale));
  }

  /// Both towers' CLIP inits (with the adaLN identity when conditioned) and logit_scale = init_logit_scale.
  void reset_parameters(Generator& gen) {
    visual_.reset_parameters(gen);
    text_.reset_parameters(gen);
    fill_constant(logit_scale_.value.view(), static_cast<T>(config_.init_logit_scale));
  }

  /// images [B, C, R, R], t [B], ids B rows of text_max_length ids -> scores [B].
  tensor forward(const tensor& images, const tensor& t, std::span<const std::vector<std::int32_t>> ids) {
    SPO_CHECK(images.rank() >= 1 && static_cast<std::int64_t>(ids.size()) == images.size(0),
              "PreferenceNetwork: " << ids.size() << " token rows for image shape " << images.shape());
    const nn::NetworkScope metered("preference_model", nn::Pass::forward, images.size(0));
    tensor f = visual_.forward(images, t);                               // [B, E]
    tensor g = text_.forward(ids);                                       // [B, E]
    tensor u, v, norms;                                                  // [B, E], [B, E], [B, 2]
    tensor scores = clip_scores(f, g, logit_scale_.value, u, v, norms);  // [B]
    if (nn::grad_enabled()) {
      u_ = std::move(u);
      v_ = std::move(v);
      norms_ = std::move(norms);
      scores_ = scores;
    }
    return scores;
  }

  /// dscores [B] -> dimages [B, C, R, R]. With c = <u, v>: d logit_scale += sum_b ds_b s_b,
  /// du = ds e^ls v, df = (du - u <u, du>) / |f| (and symmetrically for the text features).
  tensor backward(const tensor& dscores) {
    SPO_CHECK(!u_.empty(), "PreferenceNetwork::backward without a forward in grad mode");
    SPO_CHECK(dscores.shape() == scores_.shape(), "PreferenceNetwork::backward: gradient shape "
                                                      << dscores.shape() << " does not match scores shape "
                                                      << scores_.shape());
    const nn::NetworkScope metered("preference_model", nn::Pass::backward, dscores.size(0));
    tensor df, dg;  // [B, E]
    clip_scores_backward(dscores, u_, v_, norms_, scores_, logit_scale_.value, df, dg,
                         logit_scale_.trainable ? &logit_scale_.grad : nullptr);
    u_ = tensor();
    v_ = tensor();
    norms_ = tensor();
    scores_ = tensor();
    text_.backward(dg);
    return visual_.backward(df);  // [B, C, R, R]
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    visual_.visit_parameters(f, nn::join_name(prefix, "visual"));
    text_.visit_parameters(f, nn::join_name(prefix, "text"));
    f(nn::join_name(prefix, "logit_scale"), logit_scale_);
  }

  const PreferenceNetworkConfig& config() const { return config_; }
  image_encoder_type& visual() { return visual_; }
  prompt_encoder_type& text() { return text_; }
  nn::Parameter<T, D>& logit_scale() { return logit_scale_; }

 private:
  PreferenceNetworkConfig config_{};
  image_encoder_type visual_;
  prompt_encoder_type text_;
  nn::Parameter<T, D> logit_scale_;
  tensor u_, v_;   // [B, E] normalised features, kept for backward
  tensor norms_;   // [B, 2] feature norms
  tensor scores_;  // [B]
};

/// A network of type Net (a PreferenceNetwork) for the Fashion-MNIST prompts: vocabulary from
/// text::fashion_tokenizer(config.text_max_length), parameters from reset_parameters(gen).
template <class Net>
Net make_preference_network(const PreferenceNetworkConfig& config, Generator& gen) {
  const auto tokenizer = text::fashion_tokenizer(static_cast<int>(config.text_max_length));
  Net net(config, tokenizer.vocab_size());
  net.reset_parameters(gen);
  return net;
}

}  // namespace spo::spm
