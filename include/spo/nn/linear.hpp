// SPDX-License-Identifier: MIT
/// @brief Linear: y = x W^T + b over the last axis (torch.nn.Linear; keys `weight` [out, in], `bias` [out]).
#pragma once

#include <cmath>
#include <string_view>

#include "spo/core/rng.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::nn {

template <Scalar T, Device D = cpu>
class Linear {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  Linear() = default;
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true)
      : in_(in_features), out_(out_features), has_bias_(bias), weight_(Shape{out_features, in_features}) {
    if (bias) bias_ = Parameter<T, D>(Shape{out_features});
  }

  /// torch's default init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  void reset_parameters(Generator& gen) {
    const T bound = T(1) / std::sqrt(static_cast<T>(in_));
    fill_uniform(weight_.value.view(), gen, -bound, bound);
    if (has_bias_) fill_uniform(bias_.value.view(), gen, -bound, bound);
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 1 && x.shape()[-1] == in_,
              "Linear(" << in_ << " -> " << out_ << "): input shape " << x.shape() << " does not end in " << in_);
    const std::int64_t rows = x.numel() / in_;
    Shape ys = x.shape();
    ys[-1] = out_;
    auto y = tensor::uninitialized(ys);                                    // [..., out]
    if (has_bias_) {
      auto ym = as_matrix(y.view(), rows, out_);
      ym.rowwise() = as_matrix(bias_.value.view(), 1, out_).row(0);
    }
    cpu_kernels::gemm(false, true, rows, out_, in_, T(1), x.data(), in_, weight_.value.data(), in_,
                      has_bias_ ? T(1) : T(0), y.data(), out_);
    if (grad_enabled()) input_ = x;
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!input_.empty() || in_ == 0, "Linear::backward without a forward in grad mode");
    const std::int64_t rows = input_.numel() / in_;
    SPO_CHECK(dy.numel() == rows * out_ && dy.shape()[-1] == out_,
              "Linear::backward: gradient shape " << dy.shape() << " does not match output of input " << input_.shape());
    if (weight_.trainable)                                                  // dW += dy^T x   [out, in]
      cpu_kernels::gemm(true, false, out_, in_, rows, T(1), dy.data(), out_, input_.data(), in_, T(1),
                        weight_.grad.data(), in_);
    if (has_bias_ && bias_.trainable)                                       // db += sum_rows dy  [out]
      as_matrix(bias_.grad.view(), 1, out_).row(0) += as_matrix(dy.view(), rows, out_).colwise().sum();
    auto dx = tensor::uninitialized(input_.shape());                        // [..., in]
    cpu_kernels::gemm(false, false, rows, in_, out_, T(1), dy.data(), out_, weight_.value.data(), in_, T(0),
                      dx.data(), in_);
    input_ = tensor();
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(join_name(prefix, "weight"), weight_);
    if (has_bias_) f(join_name(prefix, "bias"), bias_);
  }

  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  Parameter<T, D>& weight() { return weight_; }
  Parameter<T, D>& bias() { return bias_; }

 private:
  std::int64_t in_ = 0, out_ = 0;
  bool has_bias_ = true;
  Parameter<T, D> weight_, bias_;
  tensor input_;
};

}  // namespace spo::nn
