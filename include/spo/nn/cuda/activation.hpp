// SPDX-License-Identifier: MIT
/// @brief Activation<F, T, cuda> (SiLU, GELU, GELU-tanh) and GEGLU<T, cuda, F> on the device: the twins of
/// nn/activation.hpp, with the per-element formulas of the CPU functions (cuda_kernels::SiluOp, GeluOp, GeluTanhOp).
#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>
#include <utility>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/// The device form of an ActivationFunction (SiLUFunction, GELUFunction, GELUTanhFunction).
template <ActivationFunction F>
constexpr cuda_kernels::PointwiseFunction device_pointwise_function() {
  if constexpr (std::same_as<F, SiLUFunction>) return cuda_kernels::PointwiseFunction::silu;
  else if constexpr (std::same_as<F, GELUFunction>) return cuda_kernels::PointwiseFunction::gelu;
  else if constexpr (std::same_as<F, GELUTanhFunction>) return cuda_kernels::PointwiseFunction::gelu_tanh;
  else static_assert(std::same_as<F, void>, "ActivationFunction F has no spo::cuda kernel (SiLU, GELU, GELUTanh)");
}

/*!
  WHAT THIS REPRESENTS
    y = f(x) elementwise on spo::cuda (the CPU Activation's interface); the input is copied aside by the forward
    kernel itself in grad mode, for backward.
!*/
template <ActivationFunction F, Scalar T>
class Activation<F, T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using function_type = F;
  using tensor = Tensor<T, cuda>;

  tensor forward(const tensor& x) {
    auto y = tensor::uninitialized(x.shape());                              // [*]
    if (grad_enabled()) {
      if (!(input_.shape() == x.shape())) input_ = tensor::uninitialized(x.shape());
      cuda_kernels::pointwise_forward<T>(function_, x.data(), y.data(), input_.data(), x.numel());
    } else {
      cuda_kernels::pointwise_forward<T>(function_, x.data(), y.data(), nullptr, x.numel());
      input_ = tensor();
    }
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(input_.numel() > 0 || dy.numel() == 0, F::name << "::backward without a forward in grad mode");
    check_same_shape(dy.shape(), input_.shape(), "Activation::backward (gradient vs input)");
    auto dx = tensor::uninitialized(dy.shape());                            // [*]
    cuda_kernels::pointwise_backward<T>(function_, input_.data(), dy.data(), dx.data(), dy.numel());
    input_ = tensor();
    return dx;
  }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

 private:
  static constexpr cuda_kernels::PointwiseFunction function_ = device_pointwise_function<F>();
  tensor input_;
};

/*!
  WHAT THIS REPRESENTS
    diffusers' GEGLU(dim_in, dim_out) on spo::cuda (the CPU GEGLU's interface and keys `proj.weight`,
    `proj.bias`): h = proj(x), (a, g) = h.chunk(2, -1) (hidden first, then gate), y = a * f(g).
!*/
template <Scalar T, ActivationFunction F>
class GEGLU<T, cuda, F> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  GEGLU() = default;
  GEGLU(std::int64_t dim_in, std::int64_t dim_out, bool bias = true)
      : out_(dim_out), proj_(dim_in, 2 * dim_out, bias) {}

  void reset_parameters(Generator& gen) { proj_.reset_parameters(gen); }

  tensor forward(const tensor& x) {
    tensor h = proj_.forward(x);                                            // [..., 2 dim_out]
    Shape ys = h.shape();
    ys[-1] = out_;
    auto y = tensor::uninitialized(ys);                                     // [..., dim_out]
    const std::int64_t rows = out_ ? y.numel() / out_ : 0;
    cuda_kernels::gated_forward<T>(function_, h.data(), y.data(), rows, out_);
    h_ = grad_enabled() ? std::move(h) : tensor();
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!h_.empty(), "GEGLU::backward without a forward in grad mode");
    Shape expected = h_.shape();
    expected[-1] = out_;
    check_same_shape(dy.shape(), expected, "GEGLU::backward (gradient vs output)");
    auto dh = tensor::uninitialized(h_.shape());                            // [..., 2 dim_out]
    const std::int64_t rows = out_ ? dy.numel() / out_ : 0;
    cuda_kernels::gated_backward<T>(function_, h_.data(), dy.data(), dh.data(), rows, out_);
    h_ = tensor();
    return proj_.backward(dh);                                              // [..., dim_in]
  }

  template <class V>
  void visit_parameters(V&& f, std::string_view prefix) {
    proj_.visit_parameters(f, join_name(prefix, "proj"));
  }

  Linear<T, cuda>& proj() { return proj_; }
  std::int64_t dim_out() const { return out_; }

 private:
  static constexpr cuda_kernels::PointwiseFunction function_ = device_pointwise_function<F>();
  std::int64_t out_ = 0;
  Linear<T, cuda> proj_;
  tensor h_;  // [..., 2 dim_out] projection output, kept for backward
};

}  // namespace spo::nn
