// SPDX-License-Identifier: MIT
/// @brief AdaLNBlock: a pre-LN CLIP transformer block, optionally modulated by a timestep embedding (adaLN-Zero).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "spo/core/parallel.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/attention.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/spm/time_policy.hpp"
#include "spo/tensor/layout.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::cpu_kernels {

/// A chunk of a modulation tensor mod [B, chunks * W]: rows of `stride` elements, chunk c starts at c * W.
struct ModulationLayout {
  std::int64_t batch = 0, tokens = 0, width = 0, stride = 0;

  /// Batch rows a thread should own before the adaLN kernels go parallel (a parallel region costs microseconds).
  std::int64_t grain() const {
    return std::max<std::int64_t>(1, (std::int64_t{1} << 14) / std::max<std::int64_t>(1, tokens * width));
  }
};

/*!
  ENSURES
    - y[b, n, :] = x[b, n, :] * (1 + mod[b, scale_chunk]) + mod[b, shift_chunk]   (DiT's modulate, unsqueeze(1))
!*/
template <Scalar T>
void adaln_modulate_forward(const ModulationLayout& s, const T* x, const T* mod, std::int64_t shift_chunk,
                            std::int64_t scale_chunk, T* y) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  using Rows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  parallel_for(
      0, s.batch,
      [&](std::int64_t b) {
        const T* m = mod + b * s.stride;
        Eigen::Map<const Row> shift(m + shift_chunk * s.width, s.width), scale(m + scale_chunk * s.width, s.width);
        const Row one_plus = scale + T(1);
        Eigen::Map<const Rows> xb(x + b * s.tokens * s.width, s.tokens, s.width);
        Eigen::Map<Rows> yb(y + b * s.tokens * s.width, s.tokens, s.width);
        yb = (xb.rowwise() * one_plus).rowwise() + shift;
      },
      s.grain());
}

/*!
  ENSURES
    - dx[b, n, :] = dy[b, n, :] * (1 + mod[b, scale_chunk])
    - dmod[b, shift_chunk] += sum_n dy[b, n, :];  dmod[b, scale_chunk] += sum_n dy[b, n, :] * x[b, n, :]
!*/
template <Scalar T>
void adaln_modulate_backward(const ModulationLayout& s, const T* dy, const T* x, const T* mod, std::int64_t shift_chunk,
                             std::int64_t scale_chunk, T* dx, T* dmod) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  using Rows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  parallel_for(
      0, s.batch,
      [&](std::int64_t b) {
        const T* m = mod + b * s.stride;
        T* dm = dmod + b * s.stride;
        const Row one_plus = Eigen::Map<const Row>(m + scale_chunk * s.width, s.width) + T(1);
        Eigen::Map<const Rows> dyb(dy + b * s.tokens * s.width, s.tokens, s.width);
        Eigen::Map<const Rows> xb(x + b * s.tokens * s.width, s.tokens, s.width);
        Eigen::Map<Row>(dm + shift_chunk * s.width, s.width) += dyb.colwise().sum();
        Eigen::Map<Row>(dm + scale_chunk * s.width, s.width) += (dyb * xb).colwise().sum();
        Eigen::Map<Rows>(dx + b * s.tokens * s.width, s.tokens, s.width) = dyb.rowwise() * one_plus;
      },
      s.grain());
}

/// h[b, n, :] += mod[b, gate_chunk] * a[b, n, :]   (the gated residual of adaLN-Zero).
template <Scalar T>
void adaln_gate_forward(const ModulationLayout& s, T* h, const T* a, const T* mod, std::int64_t gate_chunk) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  using Rows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  parallel_for(
      0, s.batch,
      [&](std::int64_t b) {
        Eigen::Map<const Row> gate(mod + b * s.stride + gate_chunk * s.width, s.width);
        Eigen::Map<Rows>(h + b * s.tokens * s.width, s.tokens, s.width) +=
            Eigen::Map<const Rows>(a + b * s.tokens * s.width, s.tokens, s.width).rowwise() * gate;
      },
      s.grain());
}

/// da[b, n, :] = mod[b, gate_chunk] * dy[b, n, :];  dmod[b, gate_chunk] += sum_n dy[b, n, :] * a[b, n, :].
template <Scalar T>
void adaln_gate_backward(const ModulationLayout& s, const T* dy, const T* a, const T* mod, std::int64_t gate_chunk,
                         T* da, T* dmod) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  using Rows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  parallel_for(
      0, s.batch,
      [&](std::int64_t b) {
        Eigen::Map<const Row> gate(mod + b * s.stride + gate_chunk * s.width, s.width);
        Eigen::Map<const Rows> dyb(dy + b * s.tokens * s.width, s.tokens, s.width);
        Eigen::Map<const Rows> ab(a + b * s.tokens * s.width, s.tokens, s.width);
        Eigen::Map<Row>(dmod + b * s.stride + gate_chunk * s.width, s.width) += (dyb * ab).colwise().sum();
        Eigen::Map<Rows>(da + b * s.tokens * s.width, s.tokens, s.width) = dyb.rowwise() * gate;
      },
      s.grain());
}

}  // namespace spo::cpu_kernels

namespace spo {

// The adaLN operations on whole tensors (the CPU forms; spm/cuda/spm_kernels.hpp has the spo::cuda twins, found by
// ADL): x [B, N, W] (or [B, W]) with a modulation mod [B, k W] read in chunks of W.

namespace spm_detail {

inline cpu_kernels::ModulationLayout modulation_layout(const Shape& x, const Shape& mod, std::int64_t chunks,
                                                       const char* what) {
  SPO_CHECK(x.rank() >= 2 && mod.rank() == 2 && mod[0] == x[0] && chunks * x[-1] <= mod[1],
            what << ": modulation shape " << mod << " does not fit input shape " << x);
  const std::int64_t batch = x[0], width = x[-1];
  return {batch, batch * width != 0 ? x.numel() / (batch * width) : 0, width, mod[1]};
}

}  // namespace spm_detail

/// x (1 + mod[scale_chunk]) + mod[shift_chunk] (DiT's modulate), broadcast over the tokens.
template <Scalar T>
Tensor<T, cpu> adaln_modulate(const Tensor<T, cpu>& x, const Tensor<T, cpu>& mod, std::int64_t shift_chunk,
                              std::int64_t scale_chunk) {
  const auto lay =
      spm_detail::modulation_layout(x.shape(), mod.shape(), std::max(shift_chunk, scale_chunk) + 1, "adaln_modulate");
  auto y = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
  cpu_kernels::adaln_modulate_forward(lay, x.data(), mod.data(), shift_chunk, scale_chunk, y.data());
  return y;
}

/// Backward of adaln_modulate: returns dx; accumulates the shift and scale chunks of dmod.
template <Scalar T>
Tensor<T, cpu> adaln_modulate_backward(const Tensor<T, cpu>& dy, const Tensor<T, cpu>& x, const Tensor<T, cpu>& mod,
                                       std::int64_t shift_chunk, std::int64_t scale_chunk, Tensor<T, cpu>& dmod) {
  check_same_shape(dy.shape(), x.shape(), "adaln_modulate_backward (gradient vs input)");
  check_same_shape(dmod.shape(), mod.shape(), "adaln_modulate_backward (dmod vs mod)");
  const auto lay = spm_detail::modulation_layout(x.shape(), mod.shape(), std::max(shift_chunk, scale_chunk) + 1,
                                                 "adaln_modulate_backward");
  auto dx = Tensor<T, cpu>::uninitialized(x.shape());  // x.shape
  cpu_kernels::adaln_modulate_backward(lay, dy.data(), x.data(), mod.data(), shift_chunk, scale_chunk, dx.data(),
                                       dmod.data());
  return dx;
}

/// h += mod[gate_chunk] a (adaLN-Zero's gated residual).
template <Scalar T>
void adaln_gate_add(Tensor<T, cpu>& h, const Tensor<T, cpu>& a, const Tensor<T, cpu>& mod, std::int64_t gate_chunk) {
  check_same_shape(a.shape(), h.shape(), "adaln_gate_add (branch vs residual)");
  const auto lay = spm_detail::modulation_layout(h.shape(), mod.shape(), gate_chunk + 1, "adaln_gate_add");
  cpu_kernels::adaln_gate_forward(lay, h.data(), a.data(), mod.data(), gate_chunk);
}

/// Backward of adaln_gate_add w.r.t. the branch: returns da = gate dy; accumulates the gate chunk of dmod.
template <Scalar T>
Tensor<T, cpu> adaln_gate_backward(const Tensor<T, cpu>& dy, const Tensor<T, cpu>& a, const Tensor<T, cpu>& mod,
                                   std::int64_t gate_chunk, Tensor<T, cpu>& dmod) {
  check_same_shape(dy.shape(), a.shape(), "adaln_gate_backward (gradient vs branch)");
  check_same_shape(dmod.shape(), mod.shape(), "adaln_gate_backward (dmod vs mod)");
  const auto lay = spm_detail::modulation_layout(a.shape(), mod.shape(), gate_chunk + 1, "adaln_gate_backward");
  auto da = Tensor<T, cpu>::uninitialized(a.shape());  // a.shape
  cpu_kernels::adaln_gate_backward(lay, dy.data(), a.data(), mod.data(), gate_chunk, da.data(), dmod.data());
  return da;
}

}  // namespace spo

namespace spo::spm {

/// Every element of t set to value, on any device (spo::fill of tensor/cuda/ops.hpp on the GPU).
template <Scalar T, Device D>
void fill_constant(TensorView<T, D> t, T value) {
  if constexpr (D::host_accessible)
    std::fill_n(t.data(), t.numel(), value);
  else
    fill(t, value);
}

/// Gradients of a time-conditioned component: the input and the timestep embedding.
template <Scalar T, Device D = cpu>
struct TimeGradients {
  Tensor<T, D> dx;
  Tensor<T, D> dt_emb;
};

/// Standard deviations of CLIP's transformer init (open_clip Transformer / TextTransformer.init_parameters):
/// attn = W^-0.5 (q, k, v), proj = W^-0.5 (2 depth)^-0.5 (attention out and mlp.c_proj), fc = (2W)^-0.5 (mlp.c_fc).
struct ClipInitStd {
  double attn = 0, proj = 0, fc = 0;

  static ClipInitStd of(std::int64_t width, std::int64_t depth) {
    const double w = static_cast<double>(width);
    return {1.0 / std::sqrt(w), 1.0 / std::sqrt(w) / std::sqrt(2.0 * static_cast<double>(depth)),
            1.0 / std::sqrt(2.0 * w)};
  }
};

/// LayerNorm back to torch's init (weight 1, bias 0).
template <Scalar T, Device D>
void reset_layer_norm(nn::LayerNorm<T, D>& ln) {
  if (!ln.elementwise_affine()) return;
  fill_constant(ln.weight().value.view(), T(1));
  ln.bias().value.fill_zero();
}

/*!
  WHAT THIS REPRESENTS
    A pre-LN CLIP residual attention block on tokens x [B, N, W] (open_clip ResidualAttentionBlock, HF
    CLIPEncoderLayer), with SPO's adaLN-Zero time conditioning (docs/algorithm.md 4.1; DiT's DiTBlock):
      (sh1, sc1, g1, sh2, sc2, g2) = adaLN_modulation(SiLU(t_emb)).chunk(6)      t_emb [B, W], Linear(W -> 6W)
      h   = x + g1 * Attn(LN1(x) * (1 + sc1) + sh1)
      out = h + g2 * MLP(LN2(h) * (1 + sc2) + sh2)              MLP = c_proj(GELU(c_fc(.))), Linear(W -> 4W -> W)
    with the modulation vectors broadcast over the tokens. Policy::conditioned == false drops the modulation (no
    parameters; gates 1, shifts and scales 0): the plain CLIP block, which ignores t_emb.
    Attn is nn::Attention (W / heads per head, exact softmax, to_q / to_k / to_v without bias); GELU is exact (erf).
    Keys: ln_1.*, attn.to_q.weight, attn.to_k.weight, attn.to_v.weight, attn.to_out.0.*, ln_2.*, mlp.c_fc.*,
    mlp.c_proj.*, and adaLN_modulation.1.* (conditioned only; index 1 as in DiT's Sequential(SiLU, Linear)).
  CALL FORMS
    forward(x, t_emb) then backward(dy) -> {dx, dt_emb}; for Unconditioned, dt_emb is zero with t_emb's shape.
!*/
template <Scalar T, TimePolicy Policy, Device D = cpu>
class AdaLNBlock {
 public:
  using scalar_type = T;
  using device_type = D;
  using policy_type = Policy;
  using tensor = Tensor<T, D>;
  static constexpr bool conditioned = Policy::conditioned;
  /// shift 1, scale 1, gate 1, shift 2, scale 2, gate 2.
  static constexpr std::int64_t modulation_chunks = 6;

  AdaLNBlock() = default;
  AdaLNBlock(std::int64_t width, std::int64_t heads, double eps = 1e-5)
      : width_(width), ln_1_(width, eps), ln_2_(width, eps) {
    SPO_CHECK(width > 0 && heads > 0 && width % heads == 0,
              "AdaLNBlock: width " << width << " is not a positive multiple of " << heads << " heads");
    attn_ = nn::Attention<T, D>(width, heads, width / heads);
    c_fc_ = nn::Linear<T, D>(width, 4 * width);
    c_proj_ = nn::Linear<T, D>(4 * width, width);
    if constexpr (conditioned) {
      modulation_ = nn::Linear<T, D>(width, modulation_chunks * width);
      init_adaln_identity();
    }
  }

  /// CLIP's init for a block of a tower with `tower_depth` blocks (see ClipInitStd), biases 0, LayerNorms (1, 0),
  /// then the adaLN identity.
  void reset_parameters(Generator& gen, std::int64_t tower_depth = 1) {
    const auto s = ClipInitStd::of(width_, tower_depth);
    reset_layer_norm(ln_1_);
    reset_layer_norm(ln_2_);
    fill_normal(attn_.to_q().weight().value.view(), gen, T(0), static_cast<T>(s.attn));
    fill_normal(attn_.to_k().weight().value.view(), gen, T(0), static_cast<T>(s.attn));
    fill_normal(attn_.to_v().weight().value.view(), gen, T(0), static_cast<T>(s.attn));
    fill_normal(attn_.to_out().weight().value.view(), gen, T(0), static_cast<T>(s.proj));
    attn_.to_out().bias().value.fill_zero();
    fill_normal(c_fc_.weight().value.view(), gen, T(0), static_cast<T>(s.fc));
    c_fc_.bias().value.fill_zero();
    fill_normal(c_proj_.weight().value.view(), gen, T(0), static_cast<T>(s.proj));
    c_proj_.bias().value.fill_zero();
    if constexpr (conditioned) init_adaln_identity();
  }

  /// SPO's init_adaln_paras: modulation weight 0, bias 0 except the gate chunks g1, g2 = 1, so the block equals the
  /// unconditioned block with the same shared weights for every t_emb.
  void init_adaln_identity() requires conditioned {
    modulation_.weight().value.fill_zero();
    auto& bias = modulation_.bias().value;  // [6W]
    bias.fill_zero();
    fill_constant(TensorView<T, D>(bias.data() + 2 * width_, Shape{width_}), T(1));
    fill_constant(TensorView<T, D>(bias.data() + 5 * width_, Shape{width_}), T(1));
  }

  /// x [B, N, W], t_emb [B, W] (conditioned; ignored otherwise) -> [B, N, W].
  tensor forward(const tensor& x, const tensor& t_emb) {
    SPO_CHECK(x.rank() == 3 && x.size(2) == width_,
              describe() << ": input shape " << x.shape() << " is not [B, N, " << width_ << "]");
    const bool keep = nn::grad_enabled();
    if constexpr (conditioned) {
      SPO_CHECK(t_emb.shape() == (Shape{x.size(0), width_}), describe() << ": t_emb shape " << t_emb.shape()
                                                                        << " is not [" << x.size(0) << ", " << width_
                                                                        << "] for input shape " << x.shape());
      tensor mod = modulation_.forward(modulation_act_.forward(t_emb));  // [B, 6W]
      tensor n1 = ln_1_.forward(x);                                      // [B, N, W]
      tensor a1 = attn_.forward(adaln_modulate(n1, mod, 0, 1));          // [B, N, W]
      tensor h = x;                                                      // [B, N, W]
      adaln_gate_add(h, a1, mod, 2);
      tensor n2 = ln_2_.forward(h);                           // [B, N, W]
      tensor f = mlp_forward(adaln_modulate(n2, mod, 3, 4));  // [B, N, W]
      adaln_gate_add(h, f, mod, 5);
      if (keep) {
        mod_ = std::move(mod);
        n1_ = std::move(n1);
        a1_ = std::move(a1);
        n2_ = std::move(n2);
        f_ = std::move(f);
      }
      x_shape_ = x.shape();
      return h;
    } else {
      tensor h = attn_.forward(ln_1_.forward(x));  // [B, N, W]
      add_inplace(h, x);
      tensor y = mlp_forward(ln_2_.forward(h));  // [B, N, W]
      add_inplace(y, h);
      x_shape_ = x.shape();
      t_shape_ = t_emb.shape();
      return y;
    }
  }

  TimeGradients<T, D> backward(const tensor& dy) {
    SPO_CHECK(dy.shape() == x_shape_,
              describe() << ": gradient shape " << dy.shape() << " does not match output shape " << x_shape_);
    if constexpr (conditioned) {
      SPO_CHECK(!mod_.empty(), describe() << ": backward without a forward in grad mode");
      tensor dmod(mod_.shape());                                                        // [B, 6W]
      tensor dm2 = mlp_backward(adaln_gate_backward(dy, f_, mod_, 5, dmod));            // [B, N, W]
      tensor dh = ln_2_.backward(adaln_modulate_backward(dm2, n2_, mod_, 3, 4, dmod));  // [B, N, W]
      add_inplace(dh, dy);
      tensor dm1 = attn_.backward(adaln_gate_backward(dh, a1_, mod_, 2, dmod));         // [B, N, W]
      tensor dx = ln_1_.backward(adaln_modulate_backward(dm1, n1_, mod_, 0, 1, dmod));  // [B, N, W]
      add_inplace(dx, dh);
      tensor dt = modulation_act_.backward(modulation_.backward(dmod));  // [B, W]
      release();
      return {std::move(dx), std::move(dt)};
    } else {
      tensor dh = ln_2_.backward(mlp_backward(dy));  // [B, N, W]
      add_inplace(dh, dy);
      tensor dx = ln_1_.backward(attn_.backward(dh));  // [B, N, W]
      add_inplace(dx, dh);
      return {std::move(dx), tensor(t_shape_)};  // [B, N, W], zeros like t_emb
    }
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    ln_1_.visit_parameters(f, nn::join_name(prefix, "ln_1"));
    attn_.visit_parameters(f, nn::join_name(prefix, "attn"));
    ln_2_.visit_parameters(f, nn::join_name(prefix, "ln_2"));
    c_fc_.visit_parameters(f, nn::join_name(prefix, "mlp.c_fc"));
    c_proj_.visit_parameters(f, nn::join_name(prefix, "mlp.c_proj"));
    if constexpr (conditioned) modulation_.visit_parameters(f, nn::join_name(prefix, "adaLN_modulation.1"));
  }

  std::int64_t width() const { return width_; }
  nn::LayerNorm<T, D>& ln_1() { return ln_1_; }
  nn::LayerNorm<T, D>& ln_2() { return ln_2_; }
  nn::Attention<T, D>& attn() { return attn_; }
  nn::Linear<T, D>& c_fc() { return c_fc_; }
  nn::Linear<T, D>& c_proj() { return c_proj_; }
  /// Linear(W -> 6W) of the modulation (the `1` of adaLN_modulation).
  nn::Linear<T, D>& adaln_modulation() requires conditioned { return modulation_; }

 private:
  std::string describe() const {
    std::ostringstream os;
    os << "AdaLNBlock<" << Policy::name << ">(width=" << width_ << ", heads=" << attn_.heads() << ")";
    return os.str();
  }

  tensor mlp_forward(const tensor& x) {
    return c_proj_.forward(gelu_.forward(c_fc_.forward(x)));  // [B, N, W]
  }
  tensor mlp_backward(const tensor& dy) {
    return c_fc_.backward(gelu_.backward(c_proj_.backward(dy)));  // [B, N, W]
  }

  void release() {
    mod_ = tensor();
    n1_ = tensor();
    a1_ = tensor();
    n2_ = tensor();
    f_ = tensor();
  }

  struct Empty {};
  using ModulationLinear = std::conditional_t<conditioned, nn::Linear<T, D>, Empty>;
  using ModulationAct = std::conditional_t<conditioned, nn::SiLU<T, D>, Empty>;

  std::int64_t width_ = 0;
  nn::LayerNorm<T, D> ln_1_;
  nn::Attention<T, D> attn_;
  nn::LayerNorm<T, D> ln_2_;
  nn::Linear<T, D> c_fc_;
  nn::GELU<T, D> gelu_;
  nn::Linear<T, D> c_proj_;
  [[no_unique_address]] ModulationAct modulation_act_;
  [[no_unique_address]] ModulationLinear modulation_;
  Shape x_shape_{0}, t_shape_{0};
  tensor mod_;  // [B, 6W] modulation, kept for backward (conditioned)
  tensor n1_;   // [B, N, W] LN1(x)
  tensor a1_;   // [B, N, W] attention output
  tensor n2_;   // [B, N, W] LN2(h)
  tensor f_;    // [B, N, W] MLP output
};

}  // namespace spo::spm
