// SPDX-License-Identifier: MIT
/// @brief Attention: multi-head self- and cross-attention (diffusers' Attention in SD's Transformer2DModel blocks), on
/// any device with kernels (the CPU ones here, fused and blocked; the spo::cuda ones in nn/cuda/attention.hpp).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "spo/core/rng.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/context_layer.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/linear.hpp"
#include "spo/tensor/cpu/attention_kernels.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/layout.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::inline kernels {

/*!
  The attention kernels, with one overload per device. q, o: [B, N, H d] and k, v: [B, M, H d] are the
  projections' outputs, head h in columns [h d, (h + 1) d) (read in place, no split copy); lse: [B, H, N].
  attention_forward(s, q, k, v, o, lse, scale)
    ENSURES o = softmax(scale q k^T) v per (batch, head), lse = the rows' log-sum-exp of scale q k^T
  attention_backward(s, q, k, v, o, dout, lse, dq, dk, dv, scale)
    REQUIRES q, k, v, o, lse from attention_forward; dout like o, dq like q, dk and dv like k
    ENSURES  dq, dk, dv are overwritten with the gradients of sum(o * dout)
  accumulate_sum(acc, a, b)
    ENSURES acc += a + b elementwise (same shapes); the CPU rounds a + b first, spo::cuda adds a, then b
!*/
template <Scalar T>
void attention_forward(const cpu_kernels::AttentionShape& s, const Tensor<T, cpu>& q, const Tensor<T, cpu>& k,
                       const Tensor<T, cpu>& v, Tensor<T, cpu>& o, Tensor<T, cpu>& lse, T scale) {
  using cpu_kernels::interleaved_heads;
  cpu_kernels::attention_forward<T>(s, interleaved_heads(q.data(), s.heads, s.n, s.d),
                                    interleaved_heads(k.data(), s.heads, s.m, s.d),
                                    interleaved_heads(v.data(), s.heads, s.m, s.d),
                                    interleaved_heads(o.data(), s.heads, s.n, s.d), lse.data(), scale);
}

template <Scalar T>
void attention_backward(const cpu_kernels::AttentionShape& s, const Tensor<T, cpu>& q, const Tensor<T, cpu>& k,
                        const Tensor<T, cpu>& v, const Tensor<T, cpu>& o, const Tensor<T, cpu>& dout,
                        const Tensor<T, cpu>& lse, Tensor<T, cpu>& dq, Tensor<T, cpu>& dk, Tensor<T, cpu>& dv,
                        T scale) {
  using cpu_kernels::interleaved_heads;
  cpu_kernels::attention_backward<T>(
      s, interleaved_heads(q.data(), s.heads, s.n, s.d), interleaved_heads(k.data(), s.heads, s.m, s.d),
      interleaved_heads(v.data(), s.heads, s.m, s.d), interleaved_heads(o.data(), s.heads, s.n, s.d),
      interleaved_heads(dout.data(), s.heads, s.n, s.d), lse.data(), interleaved_heads(dq.data(), s.heads, s.n, s.d),
      interleaved_heads(dk.data(), s.heads, s.m, s.d), interleaved_heads(dv.data(), s.heads, s.m, s.d), scale);
}

template <Scalar T>
void accumulate_sum(Tensor<T, cpu>& acc, const Tensor<T, cpu>& a, const Tensor<T, cpu>& b) {
  as_array(acc) += as_array(a) + as_array(b);
}

}  // namespace spo::inline kernels

namespace spo::nn {

/// The parameter keys of an attention's four projections: diffusers' (to_q, to_k, to_v, to_out.0) or
/// transformers' CLIP (q_proj, k_proj, v_proj, out_proj).
struct AttentionKeys {
  std::string_view q = "to_q", k = "to_k", v = "to_v", out = "to_out.0";
};
inline constexpr AttentionKeys clip_attention_keys{"q_proj", "k_proj", "v_proj", "out_proj"};

/// What varies between the attentions of the models spo reads: biases of q/k/v (CLIP, the SD VAE), a causal mask
/// (CLIP's text transformer: query i sees keys j <= i) and the key names.
struct AttentionOptions {
  bool qkv_bias = false;
  bool causal = false;
  AttentionKeys keys{};
};

/*!
  WHAT THIS REPRESENTS
    y = to_out.0(concat_h softmax(q_h k_h^T * dim_head^-0.5) v_h), q = to_q(x), k = to_k(context), v = to_v(context),
    with heads h of width dim_head; context = x for self-attention.
    Ref: diffusers 0.26 models/attention_processor.py, Attention + AttnProcessor (to_out.1 is dropout: no
    parameters, identity here). Keys: to_q.weight, to_k.weight, to_v.weight [inner, in], to_out.0.weight
    [query_dim, inner], to_out.0.bias, inner = heads * dim_head.
    AttentionOptions add biases to q/k/v, the causal mask and other key names (CLIP's q_proj ... out_proj).
    Proj is the projection layer type, constructed as Proj(in, out, bias), e.g. Linear<T, D> or LoRA<Linear<T, D>>.
    The core runs in the device's attention kernels (spo::kernels): no [B, H, N, M] tensor is kept; backward keeps
    q, k, v, the core output and the row logsumexp [B, H, N].
  CALL FORMS
    - Layer (self-attention): forward(x [B, N, query_dim]) then backward(dy) -> dx; needs context_dim == query_dim.
    - ContextLayer: forward(x [B, N, query_dim], context [B, M, context_dim]) then backward_context(dy) ->
      {dx, dcontext}.
!*/
template <StorageScalar T, Device D = cpu, class Proj = Linear<T, D>>
class Attention {
  static_assert(kernels_declared<D>,
                "spo::nn::Attention<T, D, Proj>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::Attention<T, D, Proj>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");
  static_assert(Layer<Proj>, "Attention<T, D, Proj>: Proj must model spo::nn::Layer");
  static_assert(std::constructible_from<Proj, std::int64_t, std::int64_t, bool>,
                "Attention<T, D, Proj>: Proj must be constructible as Proj(in_features, out_features, bias)");
  static_assert(std::same_as<typename Proj::scalar_type, T> && std::same_as<typename Proj::device_type, D>,
                "Attention<T, D, Proj>: Proj must have scalar_type T and device_type D");

 public:
  using scalar_type = T;
  using device_type = D;
  using projection_type = Proj;
  using tensor = Tensor<T, D>;

  Attention() = default;
  /// context_dim = 0 means query_dim (diffusers: cross_attention_dim=None).
  Attention(std::int64_t query_dim, std::int64_t heads, std::int64_t dim_head, std::int64_t context_dim = 0,
            AttentionOptions options = {})
      : query_dim_(query_dim),
        context_dim_(context_dim == 0 ? query_dim : context_dim),
        heads_(heads),
        dim_head_(dim_head),
        options_(options),
        to_q_(query_dim, heads * dim_head, options.qkv_bias),
        to_k_(context_dim_, heads * dim_head, options.qkv_bias),
        to_v_(context_dim_, heads * dim_head, options.qkv_bias),
        to_out_(heads * dim_head, query_dim, true) {
    SPO_CHECK(query_dim > 0 && heads > 0 && dim_head > 0 && context_dim >= 0,
              "Attention: invalid query_dim " << query_dim << ", heads " << heads << ", dim_head " << dim_head
                                              << ", context_dim " << context_dim);
  }

  /// torch.nn.Linear's default init for every projection.
  void reset_parameters(Generator& gen) requires requires(Proj& p) { p.reset_parameters(gen); }
  {
    to_q_.reset_parameters(gen);
    to_k_.reset_parameters(gen);
    to_v_.reset_parameters(gen);
    to_out_.reset_parameters(gen);
  }

  /// Self-attention: context = x.
  tensor forward(const tensor& x) {
    SPO_CHECK(context_dim_ == query_dim_, describe()
                                              << ": self-attention needs context_dim == query_dim; pass a context");
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
    tensor dx = to_q_.backward(dq);    // [B, N, query_dim]
    tensor dx_k = to_k_.backward(dk);  // [B, N, query_dim]
    tensor dx_v = to_v_.backward(dv);  // [B, N, query_dim]
    accumulate_sum(dx, dx_k, dx_v);
    return dx;
  }

  /// {dx, dcontext} of the cross-attention form (after forward(x, context)).
  ContextGradients<T, D> backward_context(const tensor& dy) {
    SPO_CHECK(mode_ != Mode::self, describe() << ": backward_context after forward(x) without a context; use backward");
    auto [dq, dk, dv] = core_backward(dy);
    ContextGradients<T, D> g{to_q_.backward(dq), to_k_.backward(dk)};  // [B, N, query_dim], [B, M, context_dim]
    tensor dc_v = to_v_.backward(dv);                                  // [B, M, context_dim]
    add_inplace(g.dcontext, dc_v);
    return g;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    to_q_.visit_parameters(f, join_name(prefix, options_.keys.q));
    to_k_.visit_parameters(f, join_name(prefix, options_.keys.k));
    to_v_.visit_parameters(f, join_name(prefix, options_.keys.v));
    to_out_.visit_parameters(f, join_name(prefix, options_.keys.out));
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
  const AttentionOptions& options() const { return options_; }
  /// dim_head^-0.5 (diffusers: scale_qk with scale=None), in T's compute type.
  compute_type_t<T> scale() const {
    using compute = compute_type_t<T>;
    return compute(1) / std::sqrt(static_cast<compute>(dim_head_));
  }

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
    tensor q = to_q_.forward(x);                                                      // [B, N, inner]
    tensor k = to_k_.forward(context);                                                // [B, M, inner]
    tensor v = to_v_.forward(context);                                                // [B, M, inner]
    auto o = tensor::uninitialized(Shape{batch, n, inner});                           // [B, N, inner]
    auto lse = Tensor<compute_type_t<T>, D>::uninitialized(Shape{batch, heads_, n});  // [B, H, N]
    const cpu_kernels::AttentionShape s{batch, heads_, n, m, dim_head_, options_.causal};
    attention_forward(s, q, k, v, o, lse, scale());
    count_flops(Pass::forward, 2 * gemm_flops(s.batch_heads() * n, m, dim_head_));  // q k^T, p v
    tensor y = to_out_.forward(o);                                                  // [B, N, query_dim]
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
    SPO_CHECK(dy.shape() == y_shape,
              describe() << ": gradient shape " << dy.shape() << " does not match output shape " << y_shape);
    tensor d_o = to_out_.backward(dy);  // [B, N, inner]
    CoreGradients g{tensor::uninitialized(q_.shape()), tensor::uninitialized(k_.shape()),
                    tensor::uninitialized(v_.shape())};  // [B, N, inner], [B, M, inner] x2
    attention_backward(shape_, q_, k_, v_, o_, d_o, lse_, g.dq, g.dk, g.dv, scale());
    // p recomputed from q k^T and lse, then dv = p^T do, dp = do v^T, dq = ds k, dk = ds^T q
    count_flops(Pass::backward, 5 * gemm_flops(shape_.batch_heads() * shape_.n, shape_.m, dim_head_));
    release();
    return g;
  }

  void release() {
    mode_ = Mode::none;
    q_ = tensor();
    k_ = tensor();
    v_ = tensor();
    o_ = tensor();
    lse_ = Tensor<compute_type_t<T>, D>();
  }

  std::int64_t query_dim_ = 0, context_dim_ = 0, heads_ = 1, dim_head_ = 1;
  AttentionOptions options_;
  Proj to_q_, to_k_, to_v_, to_out_;
  Mode mode_ = Mode::none;
  cpu_kernels::AttentionShape shape_;
  tensor q_, k_, v_, o_;
  Tensor<compute_type_t<T>, D> lse_;  // [B, H, N] in the compute type
};

}  // namespace spo::nn
