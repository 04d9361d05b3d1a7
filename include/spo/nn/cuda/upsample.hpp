// SPDX-License-Identifier: MIT
/// @brief Upsample2x<T, cuda>: nearest-neighbour 2x upsampling of [B, C, H, W] on the device (the twin of
/// nn/upsample.hpp; F.interpolate(scale_factor=2, mode="nearest")).
#pragma once

#include <string_view>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/upsample.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/// [B, C, H, W] -> [B, C, 2H, 2W]; backward sums each 2x2 block of the gradient. No parameters.
template <Scalar T>
class Upsample2x<T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() == 4, "Upsample2x: input shape " << x.shape() << " is not [B, C, H, W]");
    const Shape& s = x.shape();
    auto y = tensor::uninitialized(Shape{s[0], s[1], 2 * s[2], 2 * s[3]});  // [B, C, 2H, 2W]
    cuda_kernels::upsample_nearest2x_forward<T>(x.data(), y.data(), s[0] * s[1], s[2], s[3]);
    input_shape_ = grad_enabled() ? s : Shape{};
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(input_shape_.rank() == 4, "Upsample2x::backward without a forward in grad mode");
    const Shape& s = input_shape_;
    check_same_shape(dy.shape(), Shape{s[0], s[1], 2 * s[2], 2 * s[3]}, "Upsample2x::backward (gradient vs output)");
    auto dx = tensor::uninitialized(s);                                       // [B, C, H, W]
    cuda_kernels::upsample_nearest2x_backward<T>(dy.data(), dx.data(), s[0] * s[1], s[2], s[3]);
    input_shape_ = Shape{};
    return dx;
  }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

 private:
  Shape input_shape_;
};

}  // namespace spo::nn
