// SPDX-License-Identifier: MIT
/// @brief Attention<T, cuda, Proj>: multi-head self- and cross-attention on the device (the twin of nn/attention.hpp).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/attention.hpp"
#include "spo/nn/context_layer.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/cuda/lora.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer.hpp"
#include "spo/tensor/cuda/attention.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    y = to_out.0(concat_h softmax(q_h k_h^T * dim_head^-0.5) v_h) on spo::cuda, with the CPU Attention's
    interface, keys and call forms (forward(x) / backward(dy) for self-attention, forward(x, context) /
    backward_context(dy) for cross-attention). Ref: diffusers 0.26 Attention + AttnProcessor.
    The core (cuda_kernels::attention_forward / attention_backward) reads the heads straight out of the
    projections' [B, tokens, H * dim_head] outputs; backward keeps q, k, v, the core output and the row
    logsumexp [B, H, N], never the probabilities.
!*/
template <Scalar T, class Proj>
class Attention<T, cuda, Proj> {
  static_assert(Layer<Proj>, "Attention<T, cuda, Proj>: Proj must model spo::nn::Layer");
  static_assert(std::constructible_from<Proj, std::int64_t, std::int64_t, bool>,
                "Attention<T, cuda, Proj>: Proj must be constructible as Proj(in_features, out_features, bias)");
  static_assert(std::same_as<typename Proj::scalar_type, T> && std::same_as<typename Proj::device_type, cuda>,
                "Attention<T, cuda, Proj>: Proj must have scalar_type T and device_type cuda");

 public:
  using scalar_type = T;
  using device_type = cuda;
  using projection_type = Proj;
  using tensor = Tensor<T, cuda>;

  Attention() = default;
  /// context_dim = 0 means query_dim (diffusers: cross_attention_dim=None).
  Attention(std::int64_t query_dim, std::int64_t heads, std::int64_t dim_head, std::int64_t context_dim = 0)
      : query_dim_(query_dim),
        context_dim_(context_dim == 0 ? query_dim : context_dim),
        heads_(heads),
        dim_head_(dim_head),
        to_q_(query_dim, heads * dim_head, false),
        to_k_(context_dim_, heads * dim_head, false),
        to_v_(context_dim_, heads * dim_head, false),
        to_out_(heads * dim_head, query_dim, true) {
    SPO_CHECK(query_dim > 0 && heads > 0 && dim_head > 0 && context_dim >= 0,
              "Attention: invalid query_dim " << query_dim << ", heads " << heads << ", dim_head " << dim_head
                                              << ", context_dim " << context_dim);
  }

  /// torch.nn.Linear's default init for every projection (the CPU layer's order and numbers).
  void reset_parameters(Generator& gen)
    requires requires(Proj& p) { p.reset_parameters(gen); }
  {
    to_q_.reset_parameters(gen);
    to_k_.reset_parameters(gen);
    to_v_.reset_parameters(gen);
    to_out_.reset_parameters(gen);
  }

  /// Self-attention: context = x.
  tensor forward(const tensor& x) {
    SPO_CHECK(context_dim_ == query_dim_, describe() << ": self-attention needs context_dim == query_dim; pass a context");
    check_input(x);
    return run_forward(x, x, Mode::self);
  }

  /// Cross-attention from x [B, N, query_dim] to context [B, M, context_dim].
  tensor forward(const tensor& x, const tensor& context) {
    check_input(x);
    SPO_CHECK(context.rank() == 3 && context.shape()[-1] == context_dim_ && context.shape()[0] == x.shape()[0],
              describe() << ": context shape " << context.shape() << " must be [" << x.shape()[0] << ", M, "
                         << context_dim_ << "] for input shape " << x.shape());
    return run_forward(x, context, Mode::cross);
  }

  /// dx of the self-attention form (after forward(x)): dx = dx_q + dx_k + dx_v.
  tensor backward(const tensor& dy) {
    SPO_CHECK(mode_ != Mode::cross, describe() << ": backward after forward(x, context); use backward_context");
    auto [dq, dk, dv] = core_backward(dy);
    tensor dx = to_q_.backward(dq);                                        // [B, N, query_dim]
    tensor dx_k = to_k_.backward(dk);                                      // [B, N, query_dim]
    axpy<T>(T(1), dx_k.view(), dx.view());
    dx_k = tensor();
    tensor dx_v = to_v_.backward(dv);                                      // [B, N, query_dim]
    axpy<T>(T(1), dx_v.view(), dx.view());
    return dx;
  }

  /// {dx, dcontext} of the cross-attention form (after forward(x, context)).
  ContextGradients<T, cuda> backward_context(const tensor& dy) {
    SPO_CHECK(mode_ != Mode::self, describe() << ": backward_context after forward(x) without a context; use backward");
    auto [dq, dk, dv] = core_backward(dy);
    ContextGradients<T, cuda> g{to_q_.backward(dq), to_k_.backward(dk)};  // [B, N, query_dim], [B, M, context_dim]
    tensor dc_v = to_v_.backward(dv);                                      // [B, M, context_dim]
    axpy<T>(T(1), dc_v.view(), g.dcontext.view());
    return g;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    to_q_.visit_parameters(f, join_name(prefix, "to_q"));
    to_k_.visit_parameters(f, join_name(prefix, "to_k"));
    to_v_.visit_parameters(f, join_name(prefix, "to_v"));
    to_out_.visit_parameters(f, join_name(prefix, "to_out.0"));
  }

  Proj& to_q() { return to_q_; }
  Proj& to_k() { return to_k_; }
  Proj& to_v() { return to_v_; }
  /// to_out.0 (to_out.1 is dropout).
  Proj& to_out() { return to_out_; }
  std::int64_t query_dim() const { return query_dim_; }
  std::int64_t context_dim() const { return context_dim_; }
  std::int64_t heads() const { return heads_; }
  std::int64_t dim_head() const { return dim_head_; }
  std::int64_t inner_dim() const { return heads_ * dim_head_; }
  /// dim_head^-0.5 (diffusers: scale_qk with scale=None).
  T scale() const { return T(1) / std::sqrt(static_cast<T>(dim_head_)); }

 private:
  enum class Mode { none, self, cross };
  struct CoreGradients {
    tensor dq, dk, dv;
  };

  std::string describe() const {
    std::ostringstream os;
    os << "Attention(query_dim=" << query_dim_ << ", context_dim=" << context_dim_ << ", heads=" << heads_
       << ", dim_head=" << dim_head_ << ")";
    return os.str();
  }
  void check_input(const tensor& x) const {
    SPO_CHECK(x.rank() == 3 && x.shape()[-1] == query_dim_,
              describe() << ": input shape " << x.shape() << " must be [B, N, " << query_dim_ << "]");
  }

  tensor run_forward(const tensor& x, const tensor& context, Mode mode) {
    const std::int64_t batch = x.shape()[0], n = x.shape()[1], m = context.shape()[1], inner = inner_dim();
    SPO_CHECK(m > 0 || n == 0, describe() << ": context shape " << context.shape() << " has no tokens");
    tensor q = to_q_.forward(x);                                            // [B, N, inner]
    tensor k = to_k_.forward(context);                                      // [B, M, inner]
    tensor v = to_v_.forward(context);                                      // [B, M, inner]
    auto o = tensor::uninitialized(Shape{batch, n, inner});                 // [B, N, inner]
    auto lse = tensor::uninitialized(Shape{batch, heads_, n});              // [B, H, N]
    const cuda_kernels::AttentionShape s{batch, heads_, n, m, dim_head_};
    cuda_kernels::attention_forward<T>(s, q.data(), k.data(), v.data(), o.data(), lse.data(), scale());
    tensor y = to_out_.forward(o);                                          // [B, N, query_dim]
    if (grad_enabled()) {
      shape_ = s;
      mode_ = mode;
      q_ = std::move(q);
      k_ = std::move(k);
      v_ = std::move(v);
      o_ = std::move(o);
      lse_ = std::move(lse);
    } else {
      release();
    }
    return y;
  }

  CoreGradients core_backward(const tensor& dy) {
    SPO_CHECK(mode_ != Mode::none, describe() << ": backward without a forward in grad mode");
    const Shape y_shape{shape_.batch, shape_.n, query_dim_};
    SPO_CHECK(dy.shape() == y_shape, describe() << ": gradient shape " << dy.shape() << " does not match output shape "
                                                << y_shape);
    tensor d_o = to_out_.backward(dy);                                      // [B, N, inner]
    CoreGradients g{tensor::uninitialized(q_.shape()), tensor::uninitialized(k_.shape()),
                    tensor::uninitialized(v_.shape())};                     // [B, N, inner], [B, M, inner] x2
    cuda_kernels::attention_backward<T>(shape_, q_.data(), k_.data(), v_.data(), o_.data(), d_o.data(), lse_.data(),
                                        g.dq.data(), g.dk.data(), g.dv.data(), scale());
    release();
    return g;
  }

  void release() {
    mode_ = Mode::none;
    q_ = tensor();
    k_ = tensor();
    v_ = tensor();
    o_ = tensor();
    lse_ = tensor();
  }

  std::int64_t query_dim_ = 0, context_dim_ = 0, heads_ = 1, dim_head_ = 1;
  Proj to_q_, to_k_, to_v_, to_out_;
  Mode mode_ = Mode::none;
  cuda_kernels::AttentionShape shape_;
  tensor q_, k_, v_, o_, lse_;
};

}  // namespace spo::nn
