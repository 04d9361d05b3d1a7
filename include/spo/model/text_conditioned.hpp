// SPDX-License-Identifier: MIT
/// @brief A text-conditioned denoiser: tokenizer + text encoder policy + UNet policy, with classifier-free guidance.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/diffusion/ddim.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/tokenizer.hpp"

namespace spo::model {

/*!
  WHAT THIS REPRESENTS
    u = unet(x_t, t, text_encoder(tokenize(prompt))), the conditional model of a text-to-image diffusion model.
    The empty prompt is the unconditional input of classifier-free guidance. Parameter keys: "unet.*",
    "text_encoder.*". The text encoder may compute in another scalar than the UNet (a float embedding table in front
    of a 16-bit UNet): its features are rounded into the UNet's scalar once, and their gradient back into its own.
  REQUIRES
    - UNet: forward(x, t, context) -> Tensor, backward(dy) -> {dsample, dcontext}, visit_parameters
    - TextEncoder: forward(ids) -> [B, L, D], backward(dcontext), visit_parameters
!*/
template <class UNet, class TextEncoder>
class TextConditioned {
 public:
  using scalar_type = typename UNet::scalar_type;
  using device_type = typename UNet::device_type;
  using unet_type = UNet;
  using text_encoder_type = TextEncoder;
  using tensor = Tensor<scalar_type, device_type>;
  /// Timesteps stay in the compute type of a 16-bit model (the UNet's: 751 is not a bfloat16 number).
  using compute_tensor = Tensor<compute_type_t<scalar_type>, device_type>;

  TextConditioned() = default;
  TextConditioned(UNet unet, TextEncoder encoder, text::Tokenizer tokenizer)
      : unet_(std::move(unet)), text_encoder_(std::move(encoder)), tokenizer_(std::move(tokenizer)) {}

  UNet& unet() { return unet_; }
  TextEncoder& text_encoder() { return text_encoder_; }
  const text::Tokenizer& tokenizer() const { return tokenizer_; }

  std::vector<std::vector<std::int32_t>> tokenize(std::span<const std::string> prompts) const {
    std::vector<std::vector<std::int32_t>> ids;
    ids.reserve(prompts.size());
    for (const auto& p : prompts) ids.push_back(tokenizer_.encode(p));
    return ids;
  }

  /// Token features [B, L, D] of the prompts.
  tensor encode(std::span<const std::string> prompts) {
    return as_scalar<scalar_type>(text_encoder_.forward(tokenize(prompts)));
  }

  /// The model output for x_t [B, C, H, W] at timesteps t [B] given prompt features [B, L, D].
  tensor forward(const tensor& x_t, const compute_tensor& t, const tensor& context) {
    return unet_.forward(x_t, t, context);
  }

  /// Training forward through the text encoder and the UNet.
  tensor forward(const tensor& x_t, const compute_tensor& t, std::span<const std::string> prompts) {
    return unet_.forward(x_t, t, encode(prompts));
  }

  /// Backward of the training forward; returns d x_t. The text encoder receives its gradient when it is trained.
  tensor backward(const tensor& dy, bool train_text_encoder) {
    auto g = unet_.backward(dy);
    if (train_text_encoder) text_encoder_.backward(as_scalar<typename TextEncoder::scalar_type>(std::move(g.dcontext)));
    return std::move(g.dsample);
  }

  /// Classifier-free guidance eps_u + g (eps_c - eps_u) in one UNet pass over [uncond; cond] (2B rows).
  /// context_cond / context_uncond are [B, L, D]; t [B] holds each row's timestep. In grad mode the UNet keeps what
  /// guided_backward needs.
  tensor guided(const tensor& x_t, const compute_tensor& t, const tensor& context_cond, const tensor& context_uncond,
                double guidance) {
    using D = device_type;
    const std::int64_t b = x_t.size(0);
    check_same_shape(t.shape(), Shape{b}, "TextConditioned::guided (timesteps vs batch)");
    check_same_shape(context_cond.shape(), context_uncond.shape(), "TextConditioned::guided (cond vs uncond)");
    Shape ctx_shape = context_cond.shape();
    ctx_shape[0] = 2 * b;
    auto ctx = tensor::uninitialized(ctx_shape);  // [2B, L, D]
    copy_elements<D>(context_uncond.data(), context_uncond.numel(), ctx.data());
    copy_elements<D>(context_cond.data(), context_cond.numel(), ctx.data() + context_uncond.numel());
    Shape xs = x_t.shape();
    xs[0] = 2 * b;
    auto x2 = tensor::uninitialized(xs);  // [2B, C, H, W]
    copy_elements<D>(x_t.data(), x_t.numel(), x2.data());
    copy_elements<D>(x_t.data(), x_t.numel(), x2.data() + x_t.numel());
    compute_tensor tt = compute_tensor::uninitialized(Shape{2 * b});  // [2B]
    copy_elements<D>(t.data(), b, tt.data());
    copy_elements<D>(t.data(), b, tt.data() + b);
    auto out = unet_.forward(x2, tt, ctx);  // [2B, C, H, W]
    tensor eu = tensor::uninitialized(x_t.shape()), ec = tensor::uninitialized(x_t.shape());
    copy_elements<D>(out.data(), x_t.numel(), eu.data());
    copy_elements<D>(out.data() + x_t.numel(), x_t.numel(), ec.data());
    guidance_ = guidance;
    if constexpr (HalfScalar<scalar_type>) {
      // Combined in the compute type (the device's per-sample kernels take float and double), then rounded to T.
      using C = compute_type_t<scalar_type>;
      return cast<scalar_type>(diffusion::guide(cast<C>(eu), cast<C>(ec), guidance));
    } else {
      return diffusion::guide(eu, ec, guidance);
    }
  }

  /// The same with one timestep for all rows.
  tensor guided(const tensor& x_t, double t, const tensor& context_cond, const tensor& context_uncond,
                double guidance) {
    using C = compute_type_t<scalar_type>;
    Tensor<C, cpu> tt = Tensor<C, cpu>::uninitialized(Shape{x_t.size(0)});  // [B]
    for (std::int64_t i = 0; i < tt.numel(); ++i) tt[i] = static_cast<C>(t);
    return guided(x_t, transfer<device_type>(tt), context_cond, context_uncond, guidance);
  }

  /// Backward of the last guided() in grad mode, given d(guided output) [B, C, H, W]: the UNet rows receive
  /// (1 - g) dy (unconditional half) and g dy (conditional half); parameter gradients accumulate, the text encoder
  /// is not trained (prompt features are inputs here). Returns d x_t.
  tensor guided_backward(const tensor& dy) {
    using D = device_type;
    const std::int64_t b = dy.size(0);
    Shape s = dy.shape();
    s[0] = 2 * b;
    tensor d2(s);                           // [2B, C, H, W] zeros
    using C = compute_type_t<scalar_type>;  // the factors of a 16-bit model's axpy
    const auto g = static_cast<C>(guidance_);
    axpy<scalar_type>(C(1) - g, dy.view(), d2.view().slice(0, b));
    axpy<scalar_type>(g, dy.view(), d2.view().slice(b, b));
    auto r = unet_.backward(d2);
    tensor dx = tensor::uninitialized(dy.shape());  // [B, C, H, W]
    copy_elements<D>(r.dsample.data(), dy.numel(), dx.data());
    axpy<scalar_type>(C(1), r.dsample.view().slice(b, b), dx.view());
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix = {}) {
    unet_.visit_parameters(f, nn::join_name(prefix, "unet"));
    text_encoder_.visit_parameters(f, nn::join_name(prefix, "text_encoder"));
  }

 private:
  UNet unet_;
  TextEncoder text_encoder_;
  text::Tokenizer tokenizer_;
  double guidance_ = 1.0;
};

/// DDIM sampling with classifier-free guidance from x_T [B, C, H, W] (Ref: diffusers StableDiffusionPipeline with
/// DDIMScheduler): for each timestep, u = guided model output, x <- DDIM step(u, t, x, eta).
template <class Model, class Scheduler>
typename Model::tensor sample_ddim(Model& model, const Scheduler& ddim, typename Model::tensor x,
                                   std::span<const std::string> prompts, double guidance, double eta, Generator& gen) {
  nn::no_grad_guard no_grad;
  const std::vector<std::string> empty(prompts.size());
  auto cond = model.encode(prompts);
  auto uncond = model.encode(empty);
  for (const std::int64_t t : ddim.timesteps()) {
    auto u = model.guided(x, static_cast<double>(t), cond, uncond, guidance);
    x = std::move(ddim.step(u, t, x, eta, &gen).prev_sample);
  }
  return x;
}

}  // namespace spo::model
