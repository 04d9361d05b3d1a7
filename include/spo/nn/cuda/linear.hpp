// SPDX-License-Identifier: MIT
/// @brief Linear<T, cuda>: y = x W^T + b over the last axis on the device (cuBLAS GEMMs; the twin of nn/linear.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cuda/bias.hpp"
#include "spo/tensor/cuda/gemm.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

namespace detail {

/// Row-major device GEMM C = alpha op(A) op(B) + beta C with the process-wide TF32 permission (float only).
template <Scalar T>
void device_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                 std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  cuda_kernels::Gemm<T>::run({trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                              std::is_same_v<T, float> && cuda_runtime::allow_tf32()});
}

}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    torch.nn.Linear on spo::cuda with the interface of the CPU Linear: keys `weight` [out, in], `bias` [out],
    y = x W^T + b for x [..., in]. The bias is broadcast into y first and the product accumulated onto it
    (beta = 1), as on the CPU; db is a deterministic column sum of dy.
!*/
template <Scalar T>
class Linear<T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  Linear() = default;
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true)
      : in_(in_features), out_(out_features), has_bias_(bias), weight_(Shape{out_features, in_features}) {
    if (bias) bias_ = Parameter<T, cuda>(Shape{out_features});
  }

  /// torch's default init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias (the CPU layer's numbers).
  void reset_parameters(Generator& gen) {
    const T bound = T(1) / std::sqrt(static_cast<T>(in_));
    fill_uniform(weight_.value.view(), gen, -bound, bound);
    if (has_bias_) fill_uniform(bias_.value.view(), gen, -bound, bound);
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 1 && x.shape()[-1] == in_,
              "Linear(" << in_ << " -> " << out_ << "): input shape " << x.shape() << " does not end in " << in_);
    const std::int64_t rows = in_ ? x.numel() / in_ : 0;
    Shape ys = x.shape();
    ys[-1] = out_;
    auto y = tensor::uninitialized(ys);                                    // [..., out]
    if (has_bias_) cuda_kernels::broadcast_rows(rows, out_, bias_.value.data(), y.data());
    if (in_ == 0 && !has_bias_) y.fill_zero();
    detail::device_gemm(false, true, rows, out_, in_, T(1), x.data(), in_, weight_.value.data(), in_,
                        has_bias_ ? T(1) : T(0), y.data(), out_);          // y (+)= x W^T
    if (grad_enabled()) input_ = x;
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!input_.empty() || in_ == 0, "Linear::backward without a forward in grad mode");
    const std::int64_t rows = in_ ? input_.numel() / in_ : 0;
    SPO_CHECK(dy.numel() == rows * out_ && dy.rank() >= 1 && dy.shape()[-1] == out_,
              "Linear::backward: gradient shape " << dy.shape() << " does not match output of input " << input_.shape());
    if (weight_.trainable)                                                  // dW += dy^T x   [out, in]
      detail::device_gemm(true, false, out_, in_, rows, T(1), dy.data(), out_, input_.data(), in_, T(1),
                          weight_.grad.data(), in_);
    if (has_bias_ && bias_.trainable)                                       // db += sum_rows dy  [out]
      cuda_kernels::column_sum_accumulate(rows, out_, dy.data(), bias_.grad.data());
    auto dx = tensor::uninitialized(input_.shape());                        // [..., in] = dy W
    detail::device_gemm(false, false, rows, in_, out_, T(1), dy.data(), out_, weight_.value.data(), in_, T(0),
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
  Parameter<T, cuda>& weight() { return weight_; }
  Parameter<T, cuda>& bias() { return bias_; }

 private:
  std::int64_t in_ = 0, out_ = 0;
  bool has_bias_ = true;
  Parameter<T, cuda> weight_, bias_;
  tensor input_;
};

}  // namespace spo::nn
