// SPDX-License-Identifier: MIT
/// @brief Residual<Block>: y = x + block(x), for a block whose output has the shape of its input.
#pragma once

#include <concepts>
#include <string_view>
#include <utility>

#include "spo/nn/layer.hpp"
#include "spo/nn/named.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    A skip connection around Block: y = x + block(x), dx = dy + block.backward(dy). The block's parameters keep
    their names (no extra key segment).
  REQUIRES
    - Block satisfies spo::nn::Layer (static_assert); block(x).shape() == x.shape() (checked at run time)
!*/
template <class Block>
class Residual {
  static_assert(Layer<Block>, "spo::nn::Residual: the block must satisfy the concept spo::nn::Layer");

 public:
  using block_type = Block;
  using scalar_type = typename detail::layer_types<Block>::scalar_type;
  using device_type = typename detail::layer_types<Block>::device_type;
  using tensor = Tensor<scalar_type, device_type>;

  Residual() = default;
  template <class... Args>
  requires(sizeof...(Args) > 0 && std::constructible_from<Block, Args...>) explicit(sizeof...(Args) == 1)
      Residual(Args&&... args)
      : block_(std::forward<Args>(args)...) {}

  tensor forward(const tensor& x) {
    tensor y = block_.forward(x);  // [*]
    check_same_shape(y.shape(), x.shape(), "Residual: block output vs input");
    as_array(y.view()) += as_array(x.view());  // x + block(x)
    return y;
  }

  tensor backward(const tensor& dy) {
    tensor dx = block_.backward(dy);  // [*]
    check_same_shape(dx.shape(), dy.shape(), "Residual::backward: block input gradient vs output gradient");
    as_array(dx.view()) += as_array(dy.view());
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    block_.visit_parameters(f, prefix);
  }

  Block& block() { return block_; }
  const Block& block() const { return block_; }

 private:
  Block block_;
};

}  // namespace spo::nn
