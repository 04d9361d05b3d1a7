// SPDX-License-Identifier: MIT
/// @brief GlobalAvgPool<T, cuda>: [B, C, ...] -> [B, C], the mean over spatial positions on the device (the twin of
/// nn/pooling.hpp; torch: x.mean((2, 3))).
#pragma once

#include <cstdint>
#include <string_view>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/pooling.hpp"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/// y[b, c] = T(sum_s x[b, c, s]) / S (sum in double, as sum_spatial); dx[b, c, s] = dy[b, c] / S.
template <Scalar T>
class GlobalAvgPool<T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 3, "GlobalAvgPool expects [B, C, ...], got " << x.shape());
    input_shape_ = x.shape();
    const std::int64_t spatial = x.shape().numel_from(2);
    auto y = tensor::uninitialized(Shape{x.size(0), x.size(1)});             // [B, C]
    cuda_kernels::sum_planes<T>(x.data(), y.data(), x.size(0) * x.size(1), spatial,
                                T(1) / static_cast<T>(spatial));
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(input_shape_.rank() >= 3, "GlobalAvgPool::backward without a forward");
    check_same_shape(dy.shape(), Shape{input_shape_[0], input_shape_[1]}, "GlobalAvgPool::backward");
    const std::int64_t planes = input_shape_[0] * input_shape_[1], spatial = input_shape_.numel_from(2);
    auto dx = tensor::uninitialized(input_shape_);                            // [B, C, H, W]
    cuda_kernels::broadcast_planes<T>(dy.data(), dx.data(), planes, spatial, T(1) / static_cast<T>(spatial));
    return dx;
  }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

 private:
  Shape input_shape_;
};

}  // namespace spo::nn
