// SPDX-License-Identifier: MIT
/// @brief Linear: y = x W^T + b over the last axis (torch.nn.Linear; keys `weight` [out, in], `bias` [out]), on any
/// device with kernels (the CPU ones here, the spo::cuda ones in nn/cuda/linear.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

/*!
  The bias kernels of Linear, with one overload per device.
  broadcast_rows(b, y): y[r, c] = b[c] for y read as [rows, cols], cols = b.numel().
  column_sum_accumulate(x, db): db[c] += sum_r x[r, c] for x read as [rows, cols], cols = db.numel().
!*/
template <Scalar T>
void broadcast_rows(const Tensor<T, cpu>& b, Tensor<T, cpu>& y) {
  const std::int64_t cols = b.numel(), rows = cols ? y.numel() / cols : 0;
  as_matrix(y.view(), rows, cols).rowwise() = as_matrix(b.view(), 1, cols).row(0);
}

template <Scalar T>
void column_sum_accumulate(const Tensor<T, cpu>& x, Tensor<T, cpu>& db) {
  const std::int64_t cols = db.numel(), rows = cols ? x.numel() / cols : 0;
  as_matrix(db.view(), 1, cols).row(0) += as_matrix(x.view(), rows, cols).colwise().sum();
}

}  // namespace spo::inline kernels

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    torch.nn.Linear(in, out, bias): y = x W^T + b for x [..., in], keys `weight` [out, in] and `bias` [out].
    The bias is broadcast into y first and the product accumulated onto it (beta = 1); db is a column sum of dy.
    The arithmetic runs in the device kernels gemm, broadcast_rows and column_sum_accumulate (spo::kernels).
!*/
template <StorageScalar T, Device D = cpu>
class Linear {
  static_assert(kernels_declared<D>,
                "spo::nn::Linear<T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::Linear<T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");
  using compute = compute_type_t<T>;  ///< alpha, beta and the accumulation

 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  Linear() = default;
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true)
      : in_(in_features), out_(out_features), has_bias_(bias), weight_(Shape{out_features, in_features}) {
    if (bias) bias_ = Parameter<T, D>(Shape{out_features});
  }

  /// torch's default init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias (the same numbers on every device).
  void reset_parameters(Generator& gen) {
    const compute bound = compute(1) / std::sqrt(static_cast<compute>(in_));
    fill_uniform(weight_.value.view(), gen, -bound, bound);
    if (has_bias_) fill_uniform(bias_.value.view(), gen, -bound, bound);
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 1 && x.shape()[-1] == in_,
              "Linear(" << in_ << " -> " << out_ << "): input shape " << x.shape() << " does not end in " << in_);
    const std::int64_t rows = in_ ? x.numel() / in_ : 0;
    Shape ys = x.shape();
    ys[-1] = out_;
    auto y = tensor::uninitialized(ys);  // [..., out]
    if (has_bias_) broadcast_rows(bias_.value, y);
    if (in_ == 0 && !has_bias_) y.fill_zero();
    gemm(false, true, rows, out_, in_, compute(1), x, weight_.value, compute(has_bias_ ? 1 : 0), y);  // y (+)= x W^T
    count_flops(Pass::forward, gemm_flops(rows, out_, in_));
    if (grad_enabled()) input_ = x;
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!input_.empty() || in_ == 0, "Linear::backward without a forward in grad mode");
    const std::int64_t rows = in_ ? input_.numel() / in_ : 0;
    SPO_CHECK(
        dy.numel() == rows * out_ && dy.rank() >= 1 && dy.shape()[-1] == out_,
        "Linear::backward: gradient shape " << dy.shape() << " does not match output of input " << input_.shape());
    if (weight_.trainable)  // dW += dy^T x   [out, in]
      gemm(true, false, out_, in_, rows, compute(1), dy, input_, compute(1), weight_.grad);
    if (has_bias_ && bias_.trainable) column_sum_accumulate(dy, bias_.grad);  // db += sum_rows dy  [out]
    auto dx = tensor::uninitialized(input_.shape());                          // [..., in] = dy W
    gemm(false, false, rows, in_, out_, compute(1), dy, weight_.value, compute(0), dx);
    count_flops(Pass::backward, gemm_flops(rows, in_, out_) * (weight_.trainable ? 2 : 1));  // dx (+ dW)
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
