// SPDX-License-Identifier: MIT
/// @brief conv(nearest2x(x)), diffusers' Upsample2D, for inference: the upsampled tensor (4x the input) is never
/// stored where the device has a fused kernel (the CPU's, in float); the two layers one after another otherwise.
#pragma once

#include <cstdint>

#include "spo/core/error.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/upsample.hpp"
#include "spo/tensor/cpu/conv2d.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

/*!
  upsample_nearest2x_conv2d_forward(s, x, w, b, y), CPU, float:
  REQUIRES
    - x [B, C, H, W]; s: the convolution's geometry on the upsampled [B, C, 2H, 2W] (Conv2d::geometry); w, b, y as
      conv2d_forward
  ENSURES
    - y = conv(nearest2x(x)) + b, bitwise Upsample2x then Conv2d: each chunk of an upsampled plane is copied from x
      straight into the convolution's blocked source layout (cpu_kernels::conv2d_forward_transformed).
!*/
inline void upsample_nearest2x_conv2d_forward(const cpu_kernels::Conv2dShape& s, const Tensor<float, cpu>& x,
                                              const Tensor<float, cpu>& w, const Tensor<float, cpu>* b,
                                              Tensor<float, cpu>& y) {
  const std::int64_t channels = x.size(1), h = x.size(2), wd = x.size(3), w2 = 2 * wd;
  SPO_CHECK(s.height == 2 * h && s.width == w2 && s.in_channels == channels && s.batch == x.size(0),
            "upsample_nearest2x_conv2d_forward: input " << x.shape() << " does not fit the convolution " << s);
  cpu_kernels::conv2d_forward_transformed(
      s,
      [&](std::int64_t n, std::int64_t c, std::int64_t p0, std::int64_t len, float* out) {
        const float* plane = x.data() + (n * channels + c) * h * wd;  // [H, W]
        for (std::int64_t p = p0; p < p0 + len; ++p) out[p - p0] = plane[p / w2 / 2 * wd + p % w2 / 2];
      },
      w.data(), b ? b->data() : nullptr, y.data());
}

}  // namespace spo::inline kernels

namespace spo::nn {

/// Device D has a fused nearest-2x + Conv2d inference kernel for scalar T.
template <class T, class D>
concept FusedUpsampleConvKernel = requires(const cpu_kernels::Conv2dShape& s, const Tensor<T, D>& x,
                                           const Tensor<T, D>* p, Tensor<T, D>& y) {
  upsample_nearest2x_conv2d_forward(s, x, x, p, y);
};

/*!
  conv(up(x)) for x [B, C, H, W]: without grad mode, where the device has a FusedUpsampleConvKernel for T and the conv
  has no end padding, the fused kernel (bitwise the same y; both layers forget what an earlier grad-mode forward
  kept); otherwise up.forward then conv.forward. The convolution's flops are counted either way.
!*/
template <StorageScalar T, Device D>
Tensor<T, D> upsample_conv(Upsample2x<T, D>& up, Conv2d<T, D>& conv, const Tensor<T, D>& x) {
  if constexpr (FusedUpsampleConvKernel<T, D>) {
    if (!grad_enabled() && x.rank() == 4 && conv.options().padding_end[0] == 0 && conv.options().padding_end[1] == 0) {
      const auto s = conv.geometry(Shape{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)});
      auto y = Tensor<T, D>::uninitialized(Shape{s.batch, s.out_channels, s.out_h(), s.out_w()});  // [B, O, Ho, Wo]
      up.drop_saved();
      conv.drop_saved();
      upsample_nearest2x_conv2d_forward(s, x, conv.weight().value, conv.options().bias ? &conv.bias().value : nullptr,
                                        y);
      count_flops(Pass::forward, s.flops());
      return y;
    }
  }
  return conv.forward(up.forward(x));
}

}  // namespace spo::nn
