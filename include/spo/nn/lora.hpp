// SPDX-License-Identifier: MIT
/// @brief LoRA<Base>: a frozen base projection plus a trainable low-rank update, y = base(x) + (alpha / r) x A^T B^T,
/// on the device of Base (its products are the device's gemm kernel).
#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "spo/core/rng.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/gradient_hook.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    A layer that maps the last axis from in_features() to out_features() (a Linear, or any projection shaped
    like one), so that a low-rank update of the same shape can be added to its output.
!*/
template <class L>
concept LoRABase = Layer<L> && requires(const L& l) {
  { l.in_features() } -> std::convertible_to<std::int64_t>;
  { l.out_features() } -> std::convertible_to<std::int64_t>;
};

/*!
  WHAT THIS REPRESENTS
    LoRA (Hu et al. 2021) around a projection Base. Without an adapter it is exactly Base (constructed with
    Base's arguments, so a template taking a projection type can hold Linear or LoRA<Linear>). attach(r, alpha)
    adds A = `lora_A.weight` [r, in] and B = `lora_B.weight` [out, r], freezes every base parameter, and gives
      y = base(x) + (alpha / r) (x A^T) B^T.
    Init as diffusers' LoRALinearLayer: A ~ N(0, (1/r)^2) (std 1/r), B = 0, so the output starts equal to base.
    diffusers without network_alpha scales by 1, which is alpha = r here.
    Keys: the base keys unchanged (`weight`, `bias`), then `lora_A.weight`, `lora_B.weight`, under one prefix.
!*/
template <class Base>
class LoRA {
  static_assert(LoRABase<Base>,
                "spo::nn::LoRA: the base must satisfy the concept spo::nn::LoRABase (an spo::nn::Layer with "
                "in_features() and out_features())");

 public:
  using base_type = Base;
  using scalar_type = typename Base::scalar_type;
  using device_type = typename Base::device_type;
  using T = scalar_type;
  using D = device_type;
  using tensor = Tensor<T, D>;
  using compute = compute_type_t<T>;  ///< the scale, alpha, beta and the accumulation

  LoRA() = default;
  template <class... Args>
  requires(sizeof...(Args) > 0 && std::constructible_from<Base, Args...>) explicit(sizeof...(Args) == 1)
      LoRA(Args&&... args)
      : base_(std::forward<Args>(args)...) {}

  void reset_parameters(Generator& gen) requires requires(Base& b, Generator& g) { b.reset_parameters(g); }
  { base_.reset_parameters(gen); }

  /// Adds a rank-r adapter with scale alpha / r and freezes the base (A ~ N(0, 1/r^2), B = 0).
  void attach(std::int64_t rank, double alpha, Generator& gen) {
    SPO_CHECK(rank > 0, "LoRA::attach: rank " << rank << " must be positive");
    if (!attached()) {
      saved_trainable_.clear();
      base_.visit_parameters([&](std::string_view, auto& p) { saved_trainable_.push_back(p.trainable); }, {});
    }
    set_trainable(base_, false);
    rank_ = rank;
    scale_ = static_cast<compute>(alpha / static_cast<double>(rank));
    lora_a_ = Parameter<T, D>(Shape{rank, in_features()});   // [r, in]
    lora_b_ = Parameter<T, D>(Shape{out_features(), rank});  // [out, r] = 0
    fill_normal(lora_a_.value.view(), gen, compute(0), compute(1) / static_cast<compute>(rank));
  }

  bool attached() const { return rank_ > 0; }

  /// Removes the adapter and restores the trainable flags the base had before attach().
  void detach() {
    if (!attached()) return;
    std::size_t i = 0;
    base_.visit_parameters(
        [&](std::string_view, auto& p) {
          if (i < saved_trainable_.size()) p.set_trainable(saved_trainable_[i++]);
        },
        {});
    lora_a_ = Parameter<T, D>();
    lora_b_ = Parameter<T, D>();
    rank_ = 0;
    input_ = tensor();
    down_ = tensor();
  }

  /// Folds the adapter into the base weight, W += (alpha / r) B A, then detaches it.
  void merge() requires requires(Base& b) { b.weight().value; }
  {
    if (!attached()) return;
    auto& w = base_.weight().value;  // [out, in]
    check_same_shape(w.shape(), Shape{out_features(), in_features()}, "LoRA::merge (base weight vs [out, in])");
    gemm(false, false, out_features(), in_features(), rank_, scale_, lora_b_.value, lora_a_.value, compute(1), w);
    detach();
  }

  tensor forward(const tensor& x) {
    tensor y = base_.forward(x);  // [..., out]
    if (!attached()) return y;
    const std::int64_t in = in_features(), out = out_features(), rows = in ? x.numel() / in : 0;
    Shape us = x.shape();
    us[-1] = rank_;
    auto u = tensor::uninitialized(us);  // [..., r] = x A^T
    gemm(false, true, rows, rank_, in, compute(1), x, lora_a_.value, compute(0), u);
    gemm(false, true, rows, out, rank_, scale_, u, lora_b_.value, compute(1), y);  // y += s u B^T  [..., out]
    count_flops(Pass::forward, gemm_flops(rows, rank_, in) + gemm_flops(rows, out, rank_));
    if (grad_enabled()) {
      input_ = x;
      down_ = std::move(u);
    } else {
      input_ = tensor();
      down_ = tensor();
    }
    return y;
  }

  tensor backward(const tensor& dy) {
    tensor dx = base_.backward(dy);  // [..., in]
    if (!attached()) return dx;
    SPO_CHECK(!down_.empty() || input_.numel() == 0, "LoRA::backward without a forward in grad mode");
    const std::int64_t in = in_features(), out = out_features(), rows = in ? input_.numel() / in : 0;
    if (lora_b_.trainable)  // dB += s dy^T u  [out, r]
      gemm(true, false, out, rank_, rows, scale_, dy, down_, compute(1), lora_b_.grad);
    if (lora_b_.trainable) gradient_ready(lora_b_);
    auto du = tensor::uninitialized(down_.shape());  // [..., r] = s dy B
    gemm(false, false, rows, rank_, out, scale_, dy, lora_b_.value, compute(0), du);
    if (lora_a_.trainable)  // dA += du^T x  [r, in]
      gemm(true, false, rank_, in, rows, compute(1), du, input_, compute(1), lora_a_.grad);
    if (lora_a_.trainable) gradient_ready(lora_a_);
    gemm(false, false, rows, in, rank_, compute(1), du, lora_a_.value, compute(1), dx);  // dx += du A  [..., in]
    count_flops(Pass::backward, gemm_flops(rows, rank_, out) * (lora_b_.trainable ? 2 : 1) +
                                    gemm_flops(rows, rank_, in) * (lora_a_.trainable ? 2 : 1));
    input_ = tensor();
    down_ = tensor();
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    base_.visit_parameters(f, prefix);
    if (!attached()) return;
    f(join_name(prefix, "lora_A.weight"), lora_a_);
    f(join_name(prefix, "lora_B.weight"), lora_b_);
  }

  std::int64_t in_features() const { return base_.in_features(); }
  std::int64_t out_features() const { return base_.out_features(); }
  std::int64_t rank() const { return rank_; }
  compute scale() const { return scale_; }
  Base& base() { return base_; }
  const Base& base() const { return base_; }
  Parameter<T, D>& lora_A() { return lora_a_; }
  Parameter<T, D>& lora_B() { return lora_b_; }
  /// Forwarded so that code written against Linear (e.g. weight loading) keeps working on LoRA<Linear>.
  auto& weight() requires requires(Base& b) { b.weight(); }
  { return base_.weight(); }
  auto& bias() requires requires(Base& b) { b.bias(); }
  { return base_.bias(); }

 private:
  Base base_;
  std::int64_t rank_ = 0;
  compute scale_ = compute(1);
  Parameter<T, D> lora_a_, lora_b_;
  std::vector<bool> saved_trainable_;
  tensor input_;  // [..., in]
  tensor down_;   // [..., r] = x A^T
};

}  // namespace spo::nn
