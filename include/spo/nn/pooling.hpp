// SPDX-License-Identifier: MIT
/// @brief GlobalAvgPool: [B, C, H, W] -> [B, C], the mean over spatial positions (torch: x.mean((2, 3))), on any device
/// with kernels (the CPU ones here, the spo::cuda ones in nn/cuda/pooling.hpp).
#pragma once

#include <cstdint>
#include <string_view>

#include "spo/core/half.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/layout.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

/*!
  The GlobalAvgPool kernels, with one overload per device, over P = B C planes of S = prod(spatial) elements.
  global_avg_pool_forward(x, y): y[p] = T(sum_s x[p, s]) * (1 / S) (the sum in double, rounded once; y [B, C])
  global_avg_pool_backward(dy, dx): dx[p, s] = dy[p] * (1 / S) (dx [B, C, *spatial])
!*/
template <Scalar T>
void global_avg_pool_forward(const Tensor<T, cpu>& x, Tensor<T, cpu>& y) {
  y = sum_spatial(x);  // [B, C]
  as_array(y.view()) *= T(1) / static_cast<T>(x.shape().numel_from(2));
}

template <Scalar T>
void global_avg_pool_backward(const Tensor<T, cpu>& dy, Tensor<T, cpu>& dx) {
  const std::int64_t planes = dy.numel(), spatial = dx.shape().numel_from(2);
  const T scale = T(1) / static_cast<T>(spatial);
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t i = 0; i < spatial; ++i) dx[p * spatial + i] = dy[p] * scale;
}

}  // namespace spo::inline kernels

namespace spo::nn {

/// y[b, c] = mean_s x[b, c, s]; dx[b, c, s] = dy[b, c] / S. No parameters; the device's global_avg_pool_* kernels.
template <StorageScalar T, Device D = cpu>
class GlobalAvgPool {
  static_assert(kernels_declared<D>,
                "spo::nn::GlobalAvgPool<T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::GlobalAvgPool<T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");

 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 3, "GlobalAvgPool expects [B, C, ...], got " << x.shape());
    input_shape_ = x.shape();
    auto y = tensor::uninitialized(Shape{x.size(0), x.size(1)});  // [B, C]
    global_avg_pool_forward(x, y);
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(input_shape_.rank() >= 3, "GlobalAvgPool::backward without a forward");
    check_same_shape(dy.shape(), Shape{input_shape_[0], input_shape_[1]}, "GlobalAvgPool::backward");
    auto dx = tensor::uninitialized(input_shape_);  // [B, C, H, W]
    global_avg_pool_backward(dy, dx);
    return dx;
  }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

 private:
  Shape input_shape_;
};

}  // namespace spo::nn
