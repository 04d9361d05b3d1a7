// SPDX-License-Identifier: MIT
/// @brief GlobalAvgPool: [B, C, H, W] -> [B, C], the mean over spatial positions (torch: x.mean((2, 3))).
#pragma once

#include <string_view>

#include "spo/nn/grad_mode.hpp"
#include "spo/tensor/layout.hpp"

namespace spo::nn {

template <Scalar T, Device D = cpu>
class GlobalAvgPool {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 3, "GlobalAvgPool expects [B, C, ...], got " << x.shape());
    input_shape_ = x.shape();
    auto y = sum_spatial(x);                                                 // [B, C]
    as_array(y.view()) *= T(1) / static_cast<T>(x.shape().numel_from(2));
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(input_shape_.rank() >= 3, "GlobalAvgPool::backward without a forward");
    check_same_shape(dy.shape(), Shape{input_shape_[0], input_shape_[1]}, "GlobalAvgPool::backward");
    const std::int64_t planes = input_shape_[0] * input_shape_[1], spatial = input_shape_.numel_from(2);
    auto dx = tensor::uninitialized(input_shape_);                            // [B, C, H, W]
    const T scale = T(1) / static_cast<T>(spatial);
    for (std::int64_t p = 0; p < planes; ++p)
      for (std::int64_t i = 0; i < spatial; ++i) dx[p * spatial + i] = dy[p] * scale;
    return dx;
  }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

 private:
  Shape input_shape_;
};

}  // namespace spo::nn
