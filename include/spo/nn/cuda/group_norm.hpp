// SPDX-License-Identifier: MIT
/// @brief GroupNorm<T, cuda>: torch.nn.GroupNorm on the device (the twin of nn/group_norm.hpp; keys `weight`, `bias`).
#pragma once

#include <cstdint>
#include <string_view>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/norm.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    GroupNorm(num_groups, num_channels, eps, affine) on spo::cuda with the CPU layer's interface: per (sample,
    group) mean and biased variance over the group's channels x spatial (two passes in double), y = gamma xhat +
    beta. Keeps xhat [B, C, *spatial] and rstd [B, G] for the closed-form backward (cuda_kernels::group_norm_*).
!*/
template <Scalar T>
class GroupNorm<T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  GroupNorm() = default;
  GroupNorm(std::int64_t num_groups, std::int64_t num_channels, double eps = 1e-5, bool affine = true)
      : groups_(num_groups), channels_(num_channels), eps_(eps), affine_(affine) {
    SPO_CHECK(num_groups > 0 && num_channels % num_groups == 0,
              "GroupNorm: num_channels " << num_channels << " is not divisible by num_groups " << num_groups);
    if (affine) {
      weight_ = Parameter<T, cuda>(Shape{num_channels});                    // [C] = 1
      bias_ = Parameter<T, cuda>(Shape{num_channels});                      // [C] = 0
      spo::fill<T>(weight_.value.view(), T(1));
    }
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 2 && x.shape()[1] == channels_,
              "GroupNorm(" << groups_ << ", " << channels_ << "): input shape " << x.shape()
                           << " is not [B, " << channels_ << ", ...]");
    const std::int64_t batch = x.shape()[0], spatial = x.shape().numel_from(2);
    auto y = tensor::uninitialized(x.shape());                              // [B, C, *spatial]
    const bool keep = grad_enabled();
    xhat_ = keep ? tensor::uninitialized(x.shape()) : tensor();             // [B, C, *spatial]
    rstd_ = tensor::uninitialized(Shape{batch, groups_});                   // [B, G]
    cuda_kernels::group_norm_forward<T>(x.data(), affine_ ? weight_.value.data() : nullptr,
                                        affine_ ? bias_.value.data() : nullptr, y.data(),
                                        keep ? xhat_.data() : nullptr, rstd_.data(), batch, channels_, spatial,
                                        groups_, eps_);
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!xhat_.empty(), "GroupNorm::backward without a forward in grad mode");
    check_same_shape(dy.shape(), xhat_.shape(), "GroupNorm::backward (gradient vs input)");
    const std::int64_t batch = dy.shape()[0], spatial = dy.shape().numel_from(2);
    auto dx = tensor::uninitialized(dy.shape());                            // [B, C, *spatial]
    T* dgamma = affine_ && weight_.trainable ? weight_.grad.data() : nullptr;
    T* dbeta = affine_ && bias_.trainable ? bias_.grad.data() : nullptr;
    cuda_kernels::group_norm_backward<T>(dy.data(), xhat_.data(), rstd_.data(),
                                         affine_ ? weight_.value.data() : nullptr, dx.data(), dgamma, dbeta, batch,
                                         channels_, spatial, groups_);
    xhat_ = tensor();
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    if (!affine_) return;
    f(join_name(prefix, "weight"), weight_);
    f(join_name(prefix, "bias"), bias_);
  }

  std::int64_t num_groups() const { return groups_; }
  std::int64_t num_channels() const { return channels_; }
  double eps() const { return eps_; }
  bool affine() const { return affine_; }
  Parameter<T, cuda>& weight() { return weight_; }
  Parameter<T, cuda>& bias() { return bias_; }

 private:
  std::int64_t groups_ = 1, channels_ = 0;
  double eps_ = 1e-5;
  bool affine_ = true;
  Parameter<T, cuda> weight_, bias_;
  tensor xhat_;  // [B, C, *spatial] normalised input, kept for backward
  tensor rstd_;  // [B, G] 1 / sqrt(var + eps)
};

}  // namespace spo::nn
