// SPDX-License-Identifier: MIT
/// @brief LoRA<Linear<T, cuda>>: a frozen device Linear plus a trainable low-rank update (the twin of nn/lora.hpp).
#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/lora.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    LoRA around a device Linear, with the CPU LoRA's contract: y = base(x) + (alpha / r) (x A^T) B^T, A =
    `lora_A.weight` [r, in] ~ N(0, 1/r^2) (same Generator numbers as the CPU), B = `lora_B.weight` [out, r] = 0,
    base parameters frozen while attached (their flags restored by detach()). The products run on cuBLAS.
!*/
template <Scalar T>
class LoRA<Linear<T, cuda>> {
 public:
  using base_type = Linear<T, cuda>;
  using scalar_type = T;
  using device_type = cuda;
  using D = cuda;
  using tensor = Tensor<T, cuda>;

  LoRA() = default;
  template <class... Args>
    requires(sizeof...(Args) > 0 && std::constructible_from<base_type, Args...>)
  explicit(sizeof...(Args) == 1) LoRA(Args&&... args) : base_(std::forward<Args>(args)...) {}

  void reset_parameters(Generator& gen) { base_.reset_parameters(gen); }

  /// Adds a rank-r adapter with scale alpha / r and freezes the base (A ~ N(0, 1/r^2), B = 0).
  void attach(std::int64_t rank, double alpha, Generator& gen) {
    SPO_CHECK(rank > 0, "LoRA::attach: rank " << rank << " must be positive");
    if (!attached()) {
      saved_trainable_.clear();
      base_.visit_parameters([&](std::string_view, auto& p) { saved_trainable_.push_back(p.trainable); }, {});
    }
    set_trainable(base_, false);
    rank_ = rank;
    scale_ = static_cast<T>(alpha / static_cast<double>(rank));
    lora_a_ = Parameter<T, D>(Shape{rank, in_features()});                     // [r, in]
    lora_b_ = Parameter<T, D>(Shape{out_features(), rank});                    // [out, r] = 0
    fill_normal(lora_a_.value.view(), gen, T(0), T(1) / static_cast<T>(rank));
  }

  bool attached() const { return rank_ > 0; }

  /// Removes the adapter and restores the trainable flags the base had before attach().
  void detach() {
    if (!attached()) return;
    std::size_t i = 0;
    base_.visit_parameters([&](std::string_view, auto& p) {
      if (i < saved_trainable_.size()) p.set_trainable(saved_trainable_[i++]);
    }, {});
    lora_a_ = Parameter<T, D>();
    lora_b_ = Parameter<T, D>();
    rank_ = 0;
    input_ = tensor();
    down_ = tensor();
  }

  /// Folds the adapter into the base weight, W += (alpha / r) B A, then detaches it.
  void merge() {
    if (!attached()) return;
    auto& w = base_.weight().value;                                            // [out, in]
    check_same_shape(w.shape(), Shape{out_features(), in_features()}, "LoRA::merge (base weight vs [out, in])");
    detail::device_gemm(false, false, out_features(), in_features(), rank_, scale_, lora_b_.value.data(), rank_,
                        lora_a_.value.data(), in_features(), T(1), w.data(), in_features());
    detach();
  }

  tensor forward(const tensor& x) {
    tensor y = base_.forward(x);                                               // [..., out]
    if (!attached()) return y;
    const std::int64_t in = in_features(), out = out_features(), rows = in ? x.numel() / in : 0;
    Shape us = x.shape();
    us[-1] = rank_;
    auto u = tensor::uninitialized(us);                                        // [..., r] = x A^T
    detail::device_gemm(false, true, rows, rank_, in, T(1), x.data(), in, lora_a_.value.data(), in, T(0), u.data(),
                        rank_);
    detail::device_gemm(false, true, rows, out, rank_, scale_, u.data(), rank_, lora_b_.value.data(), rank_, T(1),
                        y.data(), out);                                        // y += s u B^T  [..., out]
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
    tensor dx = base_.backward(dy);                                            // [..., in]
    if (!attached()) return dx;
    SPO_CHECK(!down_.empty() || input_.numel() == 0, "LoRA::backward without a forward in grad mode");
    const std::int64_t in = in_features(), out = out_features(), rows = in ? input_.numel() / in : 0;
    if (lora_b_.trainable)                                                     // dB += s dy^T u  [out, r]
      detail::device_gemm(true, false, out, rank_, rows, scale_, dy.data(), out, down_.data(), rank_, T(1),
                          lora_b_.grad.data(), rank_);
    auto du = tensor::uninitialized(down_.shape());                            // [..., r] = s dy B
    detail::device_gemm(false, false, rows, rank_, out, scale_, dy.data(), out, lora_b_.value.data(), rank_, T(0),
                        du.data(), rank_);
    if (lora_a_.trainable)                                                     // dA += du^T x  [r, in]
      detail::device_gemm(true, false, rank_, in, rows, T(1), du.data(), rank_, input_.data(), in, T(1),
                          lora_a_.grad.data(), in);
    detail::device_gemm(false, false, rows, in, rank_, T(1), du.data(), rank_, lora_a_.value.data(), in, T(1),
                        dx.data(), in);                                        // dx += du A  [..., in]
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
  T scale() const { return scale_; }
  base_type& base() { return base_; }
  const base_type& base() const { return base_; }
  Parameter<T, D>& lora_A() { return lora_a_; }
  Parameter<T, D>& lora_B() { return lora_b_; }
  /// Forwarded so that code written against Linear (e.g. weight loading) keeps working on LoRA<Linear>.
  auto& weight() { return base_.weight(); }
  auto& bias() { return base_.bias(); }

 private:
  base_type base_;
  std::int64_t rank_ = 0;
  T scale_ = T(1);
  Parameter<T, D> lora_a_, lora_b_;
  std::vector<bool> saved_trainable_;
  tensor input_;  // [..., in]
  tensor down_;   // [..., r] = x A^T
};

}  // namespace spo::nn
