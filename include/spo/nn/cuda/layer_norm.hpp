// SPDX-License-Identifier: MIT
/// @brief LayerNorm<T, cuda>: torch.nn.LayerNorm(dim) over the last axis on the device (the twin of
/// nn/layer_norm.hpp; keys `weight`, `bias`).
#pragma once

#include <cstdint>
#include <string_view>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer_norm.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/norm.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    LayerNorm(dim, eps, elementwise_affine) on spo::cuda with the CPU layer's interface: each row of the last axis
    normalised by its mean and biased variance (one warp per row, statistics in double), then scaled and shifted.
    Keeps xhat [..., dim] and rstd [rows] for the closed-form backward.
!*/
template <Scalar T>
class LayerNorm<T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  LayerNorm() = default;
  explicit LayerNorm(std::int64_t dim, double eps = 1e-5, bool elementwise_affine = true)
      : dim_(dim), eps_(eps), affine_(elementwise_affine) {
    if (affine_) {
      weight_ = Parameter<T, cuda>(Shape{dim});                             // [dim] = 1
      bias_ = Parameter<T, cuda>(Shape{dim});                               // [dim] = 0
      spo::fill<T>(weight_.value.view(), T(1));
    }
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 1 && x.shape()[-1] == dim_,
              "LayerNorm(" << dim_ << "): input shape " << x.shape() << " does not end in " << dim_);
    const std::int64_t rows = dim_ ? x.numel() / dim_ : 0;
    auto y = tensor::uninitialized(x.shape());                              // [..., dim]
    const bool keep = grad_enabled();
    xhat_ = keep ? tensor::uninitialized(x.shape()) : tensor();             // [..., dim]
    rstd_ = tensor::uninitialized(Shape{rows});                             // [rows]
    cuda_kernels::layer_norm_forward<T>(x.data(), affine_ ? weight_.value.data() : nullptr,
                                        affine_ ? bias_.value.data() : nullptr, y.data(),
                                        keep ? xhat_.data() : nullptr, rstd_.data(), rows, dim_, eps_);
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!xhat_.empty(), "LayerNorm::backward without a forward in grad mode");
    check_same_shape(dy.shape(), xhat_.shape(), "LayerNorm::backward (gradient vs input)");
    const std::int64_t rows = dim_ ? dy.numel() / dim_ : 0;
    auto dx = tensor::uninitialized(dy.shape());                            // [..., dim]
    T* dgamma = affine_ && weight_.trainable ? weight_.grad.data() : nullptr;
    T* dbeta = affine_ && bias_.trainable ? bias_.grad.data() : nullptr;
    cuda_kernels::layer_norm_backward<T>(dy.data(), xhat_.data(), rstd_.data(),
                                         affine_ ? weight_.value.data() : nullptr, dx.data(), dgamma, dbeta, rows,
                                         dim_);
    xhat_ = tensor();
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    if (!affine_) return;
    f(join_name(prefix, "weight"), weight_);
    f(join_name(prefix, "bias"), bias_);
  }

  std::int64_t dim() const { return dim_; }
  double eps() const { return eps_; }
  bool elementwise_affine() const { return affine_; }
  Parameter<T, cuda>& weight() { return weight_; }
  Parameter<T, cuda>& bias() { return bias_; }

 private:
  std::int64_t dim_ = 0;
  double eps_ = 1e-5;
  bool affine_ = true;
  Parameter<T, cuda> weight_, bias_;
  tensor xhat_;  // [..., dim] normalised input, kept for backward
  tensor rstd_;  // [rows]
};

}  // namespace spo::nn
