// SPDX-License-Identifier: MIT
/// @brief A diffusion model whose network runs in a 16-bit storage scalar while its inputs and outputs are FP32, as
/// torch.autocast runs the UNet of the official SPO recipe.
#pragma once

#include <concepts>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "spo/core/half.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::model {

/*!
  WHAT THIS REPRESENTS
    The denoiser Inner (a TextConditioned model, or anything with its interface) seen through Outer tensors: every
    input is rounded into Inner's scalar S once, Inner computes in S (its own kernels keep statistics, timesteps and
    guidance factors in compute_type_t<S>), and every output is widened to Outer exactly. With a 16-bit S and
    Outer = float this is the mixed precision of the official recipe: the sampler's latents, the DDIM log-probs, their
    means, the ratios and the loss stay FP32 (the trainers see a float DiffusionModel), while the UNet, its weights
    and its activations are 16-bit. Gradients go the same way: d out is rounded into S (under fp16, a loss scale that
    overflows half turns into infinities here and the step is skipped), Inner's backward accumulates its parameters'
    gradients in S, and d input is widened.
    Timesteps reach Inner in compute_type_t<S> (751 is not a bfloat16 number). Parameters are Inner's, under Inner's
    names, so state dicts, LoRA files and checkpoints keep their keys; optim::MasterWeights gives the trainable 16-bit
    ones their FP32 masters.
  REQUIRES
    - Inner: scalar_type S, device_type D; encode, forward(x, t, context), backward(dy, train_text_encoder),
      guided(x, t, cond, uncond, g) for a timestep tensor and a double, guided_backward(dy), visit_parameters
!*/
template <class Inner, Scalar Outer = compute_type_t<typename Inner::scalar_type>>
class Autocast {
 public:
  using inner_type = Inner;
  using storage_type = typename Inner::scalar_type;
  using scalar_type = Outer;
  using device_type = typename Inner::device_type;
  using tensor = Tensor<Outer, device_type>;
  using compute_tensor = tensor;  // the timesteps a caller passes
  using unet_type = typename Inner::unet_type;
  using text_encoder_type = typename Inner::text_encoder_type;

  Autocast() = default;
  explicit Autocast(Inner inner) : inner_(std::move(inner)) {}
  /// Constructs Inner from its own arguments (model::make_fashion_model's (unet, text encoder, tokenizer)).
  template <class... A>
  requires(sizeof...(A) > 1) && std::constructible_from<Inner, A...> explicit Autocast(A&&... a)
      : inner_(std::forward<A>(a)...) {}

  Inner& inner() { return inner_; }
  unet_type& unet() { return inner_.unet(); }
  text_encoder_type& text_encoder() { return inner_.text_encoder(); }
  const auto& tokenizer() const { return inner_.tokenizer(); }
  auto tokenize(std::span<const std::string> prompts) const { return inner_.tokenize(prompts); }

  /// Token features [B, L, E] of the prompts, widened.
  tensor encode(std::span<const std::string> prompts) { return widen(inner_.encode(prompts)); }

  /// The model output for x_t [B, C, H, W] at timesteps t [B] given prompt features [B, L, E].
  tensor forward(const tensor& x_t, const tensor& t, const tensor& context) {
    return widen(inner_.forward(narrow(x_t), timesteps(t), narrow(context)));  // [B, C, H, W]
  }

  /// Training forward through the text encoder and the network.
  tensor forward(const tensor& x_t, const tensor& t, std::span<const std::string> prompts) {
    return widen(inner_.forward(narrow(x_t), timesteps(t), prompts));  // [B, C, H, W]
  }

  /// Backward of forward(); returns d x_t.
  tensor backward(const tensor& dy, bool train_text_encoder) {
    return widen(inner_.backward(narrow(dy), train_text_encoder));  // [B, C, H, W]
  }

  /// Classifier-free guidance in S (TextConditioned::guided), widened.
  tensor guided(const tensor& x_t, const tensor& t, const tensor& cond, const tensor& uncond, double guidance) {
    return widen(inner_.guided(narrow(x_t), timesteps(t), narrow(cond), narrow(uncond), guidance));
  }
  tensor guided(const tensor& x_t, double t, const tensor& cond, const tensor& uncond, double guidance) {
    return widen(inner_.guided(narrow(x_t), t, narrow(cond), narrow(uncond), guidance));
  }

  /// Backward of the last guided(); returns d x_t.
  tensor guided_backward(const tensor& dy) { return widen(inner_.guided_backward(narrow(dy))); }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix = {}) {
    inner_.visit_parameters(std::forward<F>(f), prefix);
  }

 private:
  using D = device_type;
  using S = storage_type;
  using C = compute_type_t<S>;

  static Tensor<S, D> narrow(const tensor& x) { return as_scalar<S>(x); }
  static tensor widen(Tensor<S, D> x) { return as_scalar<Outer>(std::move(x)); }
  static Tensor<C, D> timesteps(const tensor& t) { return as_scalar<C>(t); }

  Inner inner_;
};

/// Inner itself when its scalar is a compute scalar (float, double), Autocast<Inner> for a 16-bit one.
template <class Inner>
using autocast_t = std::conditional_t<HalfScalar<typename Inner::scalar_type>, Autocast<Inner>, Inner>;

}  // namespace spo::model
