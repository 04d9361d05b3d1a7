// SPDX-License-Identifier: MIT
/// @brief Upsample2x: nearest-neighbour 2x upsampling of [B, C, H, W] (F.interpolate(scale_factor=2, mode="nearest")),
/// on any device with kernels (the CPU ones here, the spo::cuda ones in nn/cuda/upsample.hpp).
#pragma once

#include <cstdint>
#include <string_view>

#include "spo/core/half.hpp"
#include "spo/core/parallel.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cpu_kernels {

/// y[p, 2h + i, 2w + j] = x[p, h, w] for i, j in {0, 1}, over `planes` planes of [h, w].
template <Scalar T>
void upsample_nearest2x_forward(const T* x, T* y, std::int64_t planes, std::int64_t h, std::int64_t w) {
  parallel_for(
      0, planes * h,
      [&](std::int64_t ph) {
        const T* xr = x + ph * w;
        T* y0 = y + ph * 4 * w;  // output rows 2h and 2h + 1 of the plane are contiguous
        T* y1 = y0 + 2 * w;
        for (std::int64_t j = 0; j < w; ++j) y0[2 * j] = y0[2 * j + 1] = xr[j];
        for (std::int64_t j = 0; j < 2 * w; ++j) y1[j] = y0[j];
      },
      16);
}

/// dx[p, h, w] = sum_{i, j in {0, 1}} dy[p, 2h + i, 2w + j].
template <Scalar T>
void upsample_nearest2x_backward(const T* dy, T* dx, std::int64_t planes, std::int64_t h, std::int64_t w) {
  parallel_for(
      0, planes * h,
      [&](std::int64_t ph) {
        const T* d0 = dy + ph * 4 * w;
        const T* d1 = d0 + 2 * w;
        T* xr = dx + ph * w;
        for (std::int64_t j = 0; j < w; ++j) xr[j] = (d0[2 * j] + d0[2 * j + 1]) + (d1[2 * j] + d1[2 * j + 1]);
      },
      16);
}

}  // namespace spo::cpu_kernels

namespace spo::inline kernels {

/*!
  The Upsample2x kernels, with one overload per device, on x [B, C, H, W] and y [B, C, 2H, 2W].
  upsample_nearest2x_forward(x, y): y[b, c, 2h + i, 2w + j] = x[b, c, h, w] for i, j in {0, 1}
  upsample_nearest2x_backward(dy, dx): dx[b, c, h, w] = sum_{i, j in {0, 1}} dy[b, c, 2h + i, 2w + j]
!*/
template <Scalar T>
void upsample_nearest2x_forward(const Tensor<T, cpu>& x, Tensor<T, cpu>& y) {
  const Shape& s = x.shape();
  cpu_kernels::upsample_nearest2x_forward(x.data(), y.data(), s[0] * s[1], s[2], s[3]);
}

template <Scalar T>
void upsample_nearest2x_backward(const Tensor<T, cpu>& dy, Tensor<T, cpu>& dx) {
  const Shape& s = dx.shape();
  cpu_kernels::upsample_nearest2x_backward(dy.data(), dx.data(), s[0] * s[1], s[2], s[3]);
}

}  // namespace spo::inline kernels

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    Nearest-neighbour upsampling by 2 in H and W, [B, C, H, W] -> [B, C, 2H, 2W]; no parameters.
    diffusers' Upsample2D is this followed by a 3x3 convolution (composed elsewhere). The device's
    upsample_nearest2x_* kernels do the copies and the 2x2 sums of the backward.
!*/
template <StorageScalar T, Device D = cpu>
class Upsample2x {
  static_assert(kernels_declared<D>,
                "spo::nn::Upsample2x<T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::Upsample2x<T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");

 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() == 4, "Upsample2x: input shape " << x.shape() << " is not [B, C, H, W]");
    const Shape& s = x.shape();
    auto y = tensor::uninitialized(Shape{s[0], s[1], 2 * s[2], 2 * s[3]});  // [B, C, 2H, 2W]
    upsample_nearest2x_forward(x, y);
    input_shape_ = grad_enabled() ? s : Shape{};
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(input_shape_.rank() == 4, "Upsample2x::backward without a forward in grad mode");
    const Shape& s = input_shape_;
    check_same_shape(dy.shape(), Shape{s[0], s[1], 2 * s[2], 2 * s[3]}, "Upsample2x::backward (gradient vs output)");
    auto dx = tensor::uninitialized(s);  // [B, C, H, W]
    upsample_nearest2x_backward(dy, dx);
    input_shape_ = Shape{};
    return dx;
  }

  /// Forgets what a grad-mode forward kept (a later backward is then an error).
  void drop_saved() { input_shape_ = Shape{}; }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

 private:
  Shape input_shape_;
};

}  // namespace spo::nn
