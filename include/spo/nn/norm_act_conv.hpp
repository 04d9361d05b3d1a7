// SPDX-License-Identifier: MIT
/// @brief conv(f(GroupNorm(x))), the head of every ResNet block, for inference: one pass over x where the device has
/// a fused kernel (the CPU's, in float), the three layers one after another otherwise.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>

#include <Eigen/Core>

#include "spo/core/error.hpp"
#include "spo/core/parallel.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/tensor/cpu/conv2d.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

/// The fused kernel needs the flattened spatial size to be a multiple of this (whole SIMD packets: see below).
inline constexpr std::int64_t fused_norm_act_conv_alignment = 16;

/*!
  group_norm_act_conv2d_forward(f, s, x, gamma, beta, groups, eps, w, b, y), CPU, float:
  REQUIRES
    - x [B, C, H, W], C % groups == 0, H W a multiple of fused_norm_act_conv_alignment; gamma, beta: [C] or both
      null; s: the convolution's geometry on x (Conv2d::geometry), w [O, C, kh, kw], b [O] or null, y [B, O, Ho, Wo]
  ENSURES
    - y = conv(f(group_norm(x))) + b, bitwise what GroupNorm, Activation<F> and Conv2d give one after another: the
      group moments and each channel's scale and shift are group_norm_forward's (group_moments,
      group_norm_channel_affine), and the affine map and f run on the same whole SIMD packets as there (a plane of
      H W floats starts on a packet boundary because H W is a multiple of 16).
    - f(group_norm(x)) is never stored: each chunk of a channel plane is normalised, activated and written into
      the convolution's blocked source layout in one pass (cpu_kernels::conv2d_forward_transformed).
!*/
template <nn::ActivationFunction F>
void group_norm_act_conv2d_forward(F, const cpu_kernels::Conv2dShape& s, const Tensor<float, cpu>& x,
                                   const Tensor<float, cpu>* gamma, const Tensor<float, cpu>* beta, std::int64_t groups,
                                   double eps, const Tensor<float, cpu>& w, const Tensor<float, cpu>* b,
                                   Tensor<float, cpu>& y) {
  static_assert(cpu_kernels::conv2d_transform_chunk <= nn::activation_block);
  const std::int64_t batch = x.size(0), channels = x.size(1), hw = x.shape().numel_from(2);
  const std::int64_t cg = channels / groups, n = cg * hw;
  SPO_CHECK(hw % fused_norm_act_conv_alignment == 0,
            "group_norm_act_conv2d_forward: " << hw << " spatial positions are not a multiple of "
                                              << fused_norm_act_conv_alignment);
  const float* g = gamma ? gamma->data() : nullptr;
  const float* be = beta ? beta->data() : nullptr;
  auto coeff = Tensor<float, cpu>::uninitialized(Shape{batch, channels, 2});  // [B, C, (scale, shift)]
  parallel_for(
      0, batch * groups,
      [&](std::int64_t bg) {
        const auto m = cpu_kernels::group_moments(x.data() + bg * n, n, eps);
        for (std::int64_t ci = 0; ci < cg; ++ci) {
          const auto [scale, shift] = cpu_kernels::group_norm_channel_affine(m, g, be, bg % groups * cg + ci);
          coeff[(bg * cg + ci) * 2] = scale;
          coeff[(bg * cg + ci) * 2 + 1] = shift;
        }
      },
      std::max<std::int64_t>(1, cpu_kernels::norm_parallel_grain / std::max<std::int64_t>(n, 1)));
  using Array = Eigen::Array<float, Eigen::Dynamic, 1>;
  cpu_kernels::conv2d_forward_transformed(
      s,
      [&](std::int64_t i, std::int64_t c, std::int64_t p0, std::int64_t len, float* out) {
        const float scale = coeff[(i * channels + c) * 2], shift = coeff[(i * channels + c) * 2 + 1];
        nn::ActivationBlock<float> z = Eigen::Map<const Array>(x.data() + (i * channels + c) * hw + p0, len) * scale +
                                       shift;  // the chunk of group_norm(x): [len]
        F::value(z, Eigen::Map<Array>(out, len));
      },
      w.data(), b ? b->data() : nullptr, y.data());
}

}  // namespace spo::inline kernels

namespace spo::nn {

/// Device D has a fused GroupNorm + F + Conv2d inference kernel for scalar T.
template <class F, class T, class D>
concept FusedNormActConvKernel = requires(const cpu_kernels::Conv2dShape& s, const Tensor<T, D>& x,
                                          const Tensor<T, D>* p, Tensor<T, D>& y) {
  group_norm_act_conv2d_forward(F{}, s, x, p, p, std::int64_t{}, double{}, x, p, y);
};

/*!
  conv(act(norm(x))) for x [B, C, H, W]:
    - without grad mode, where the device has a FusedNormActConvKernel for T, the conv has no end padding and H W is a
      multiple of fused_norm_act_conv_alignment: the fused kernel (bitwise the same y; the three layers forget what
      an earlier grad-mode forward kept, as their own forward without grad mode does);
    - otherwise norm.forward, act.forward and conv.forward one after another.
  The convolution's flops are counted either way.
!*/
template <ActivationFunction F, StorageScalar T, Device D>
Tensor<T, D> norm_act_conv(GroupNorm<T, D>& norm, Activation<F, T, D>& act, Conv2d<T, D>& conv, const Tensor<T, D>& x) {
  if constexpr (FusedNormActConvKernel<F, T, D>) {
    const bool fits = x.rank() == 4 && x.shape().numel_from(2) % fused_norm_act_conv_alignment == 0 &&
                      conv.options().padding_end[0] == 0 && conv.options().padding_end[1] == 0;
    if (!grad_enabled() && fits) {
      SPO_CHECK(x.size(1) == norm.num_channels() && norm.num_channels() == conv.in_channels(),
                "norm_act_conv: input shape " << x.shape() << ", GroupNorm of " << norm.num_channels()
                                              << " channels, Conv2d of " << conv.in_channels() << " input channels");
      const auto s = conv.geometry(x.shape());
      auto y = Tensor<T, D>::uninitialized(Shape{s.batch, s.out_channels, s.out_h(), s.out_w()});  // [B, O, Ho, Wo]
      norm.drop_saved();
      act.drop_saved();
      conv.drop_saved();
      group_norm_act_conv2d_forward(F{}, s, x, norm.affine() ? &norm.weight().value : nullptr,
                                    norm.affine() ? &norm.bias().value : nullptr, norm.num_groups(), norm.eps(),
                                    conv.weight().value, conv.options().bias ? &conv.bias().value : nullptr, y);
      count_flops(Pass::forward, s.flops());
      return y;
    }
  }
  return conv.forward(act.forward(norm.forward(x)));
}

}  // namespace spo::nn
