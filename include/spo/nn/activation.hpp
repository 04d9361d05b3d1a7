// SPDX-License-Identifier: MIT
/// @brief Elementwise activations (SiLU, GELU erf and tanh forms, quick GELU) as stateless layers, and diffusers'
/// GEGLU, on any device with kernels (the CPU ones here, on Eigen blocks; the spo::cuda ones in
/// nn/cuda/activation.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <string_view>

#include <Eigen/Core>

#include "spo/core/parallel.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/tensor.hpp"

#include <unsupported/Eigen/SpecialFunctions>

namespace spo::nn {

/// Elements per block of the CPU activation kernels (a block's temporaries stay on the stack and in L1).
inline constexpr std::int64_t activation_block = 1024;

template <class T>
using ActivationBlock = Eigen::Array<T, Eigen::Dynamic, 1, Eigen::ColMajor, activation_block, 1>;

/*!
  WHAT THIS REPRESENTS
    An elementwise function f with its derivative, evaluated on Eigen array blocks of at most activation_block
    elements (CPU kernels; a CUDA kernel evaluates the same formulas per element).
  REQUIRES
    - F::name names the function
    - F::value(x, y) assigns y = f(x); F::gradient(x, dy, dx) assigns dx = dy * f'(x)
!*/
template <class F>
concept ActivationFunction = requires {
  { F::name } -> std::convertible_to<std::string_view>;
};

/// SiLU / swish: f(x) = x sigmoid(x), f'(x) = s (1 + x (1 - s)) with s = sigmoid(x)  (torch.nn.SiLU).
struct SiLUFunction {
  static constexpr std::string_view name = "SiLU";
  template <class X, class Y>
  static void value(const X& x, Y&& y) {
    y = x * x.logistic();
  }
  template <class X, class G, class Y>
  static void gradient(const X& x, const G& dy, Y&& dx) {
    using T = typename X::Scalar;
    ActivationBlock<T> s = x.logistic();
    dx = dy * s * (T(1) + x * (T(1) - s));
  }
};

/// GELU, exact form: f(x) = x Phi(x) = x/2 (1 + erf(x / sqrt 2)), f'(x) = Phi(x) + x phi(x)
/// (torch.nn.GELU(approximate="none"), F.gelu).
struct GELUFunction {
  static constexpr std::string_view name = "GELU";
  static constexpr double inv_sqrt2 = 0.70710678118654752440;
  static constexpr double inv_sqrt_2pi = 0.39894228040143267794;
  template <class X, class Y>
  static void value(const X& x, Y&& y) {
    using T = typename X::Scalar;
    y = T(0.5) * x * (T(1) + (x * T(inv_sqrt2)).erf());
  }
  template <class X, class G, class Y>
  static void gradient(const X& x, const G& dy, Y&& dx) {
    using T = typename X::Scalar;
    dx = dy * (T(0.5) * (T(1) + (x * T(inv_sqrt2)).erf()) + x * T(inv_sqrt_2pi) * (x.square() * T(-0.5)).exp());
  }
};

/// GELU, tanh approximation: f(x) = x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3)
/// (torch.nn.GELU(approximate="tanh")); f'(x) = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
struct GELUTanhFunction {
  static constexpr std::string_view name = "GELUTanh";
  static constexpr double sqrt_2_over_pi = 0.79788456080286535588;
  static constexpr double cubic = 0.044715;
  template <class X, class Y>
  static void value(const X& x, Y&& y) {
    using T = typename X::Scalar;
    y = T(0.5) * x * (T(1) + (T(sqrt_2_over_pi) * (x + T(cubic) * x.cube())).tanh());
  }
  template <class X, class G, class Y>
  static void gradient(const X& x, const G& dy, Y&& dx) {
    using T = typename X::Scalar;
    ActivationBlock<T> u = T(sqrt_2_over_pi) * (x + T(cubic) * x.cube());
    // 1 - tanh^2 u = 4 / (e^u + e^-u)^2, accurate where tanh u rounds to +-1
    dx = dy * (T(0.5) * (T(1) + u.tanh()) +
               T(2) * x / (u.exp() + (-u).exp()).square() * T(sqrt_2_over_pi) * (T(1) + T(3 * cubic) * x.square()));
  }
};

/// Quick GELU (OpenAI CLIP's `quick_gelu`): f(x) = x sigmoid(1.702 x), f'(x) = s (1 + 1.702 x (1 - s)) with
/// s = sigmoid(1.702 x) (transformers activations.py, QuickGELUActivation).
struct QuickGELUFunction {
  static constexpr std::string_view name = "QuickGELU";
  static constexpr double slope = 1.702;
  template <class X, class Y>
  static void value(const X& x, Y&& y) {
    using T = typename X::Scalar;
    y = x * (T(slope) * x).logistic();
  }
  template <class X, class G, class Y>
  static void gradient(const X& x, const G& dy, Y&& dx) {
    using T = typename X::Scalar;
    ActivationBlock<T> s = (T(slope) * x).logistic();
    dx = dy * s * (T(1) + T(slope) * x * (T(1) - s));
  }
};

}  // namespace spo::nn

namespace spo::cpu_kernels {

/// y = f(x) over n elements, in parallel blocks.
template <nn::ActivationFunction F, Scalar T>
void activation_forward(const T* x, T* y, std::int64_t n) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const std::int64_t blocks = (n + nn::activation_block - 1) / nn::activation_block;
  parallel_for(
      0, blocks,
      [&](std::int64_t blk) {
        const std::int64_t first = blk * nn::activation_block;
        const std::int64_t len = std::min(nn::activation_block, n - first);
        F::value(Eigen::Map<const Array>(x + first, len), Eigen::Map<Array>(y + first, len));
      },
      4);
}

/// y = f(x) and saved = x in one parallel pass (the input kept for backward is copied while it is in cache).
template <nn::ActivationFunction F, Scalar T>
void activation_forward_saving(const T* x, T* y, T* saved, std::int64_t n) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const std::int64_t blocks = (n + nn::activation_block - 1) / nn::activation_block;
  parallel_for(
      0, blocks,
      [&](std::int64_t blk) {
        const std::int64_t first = blk * nn::activation_block;
        const std::int64_t len = std::min(nn::activation_block, n - first);
        Eigen::Map<const Array> xb(x + first, len);
        Eigen::Map<Array>(saved + first, len) = xb;
        F::value(xb, Eigen::Map<Array>(y + first, len));
      },
      4);
}

/// dx = dy * f'(x) over n elements, in parallel blocks.
template <nn::ActivationFunction F, Scalar T>
void activation_backward(const T* x, const T* dy, T* dx, std::int64_t n) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const std::int64_t blocks = (n + nn::activation_block - 1) / nn::activation_block;
  parallel_for(
      0, blocks,
      [&](std::int64_t blk) {
        const std::int64_t first = blk * nn::activation_block;
        const std::int64_t len = std::min(nn::activation_block, n - first);
        F::gradient(Eigen::Map<const Array>(x + first, len), Eigen::Map<const Array>(dy + first, len),
                    Eigen::Map<Array>(dx + first, len));
      },
      4);
}

/// f(r, j, len) for every row r < rows of a gated output [rows, out] and its column blocks [j, j + len) of at most
/// nn::activation_block columns, rows in parallel.
template <class F>
void for_each_gate_block(std::int64_t rows, std::int64_t out, F&& f) {
  parallel_for(
      0, rows,
      [&](std::int64_t r) {
        for (std::int64_t j = 0; j < out; j += nn::activation_block) f(r, j, std::min(nn::activation_block, out - j));
      },
      16);
}

}  // namespace spo::cpu_kernels

namespace spo::inline kernels {

/*!
  The activation kernels, with one overload per device; f is an empty nn::ActivationFunction value that selects
  the function (on spo::cuda: SiLU, GELU or GELU-tanh).
  activation_forward(f, x, y, saved)
    ENSURES y = f(x) elementwise; saved = x as well when saved is not null (the same shape as x)
  activation_backward(f, x, dy, dx)
    ENSURES dx = dy f'(x) elementwise
  gated_forward(f, h, y)
    REQUIRES h [rows, 2 n] = (a, g) along the last axis (hidden first, then gate), y [rows, n]
    ENSURES  y = a f(g)
  gated_backward(f, h, dy, dh)
    ENSURES dh = (dy f(g), dy a f'(g)) [rows, 2 n]
!*/
template <nn::ActivationFunction F, Scalar T>
void activation_forward(F, const Tensor<T, cpu>& x, Tensor<T, cpu>& y, Tensor<T, cpu>* saved) {
  if (saved)
    cpu_kernels::activation_forward_saving<F>(x.data(), y.data(), saved->data(), x.numel());
  else
    cpu_kernels::activation_forward<F>(x.data(), y.data(), x.numel());
}

template <nn::ActivationFunction F, Scalar T>
void activation_backward(F, const Tensor<T, cpu>& x, const Tensor<T, cpu>& dy, Tensor<T, cpu>& dx) {
  cpu_kernels::activation_backward<F>(x.data(), dy.data(), dx.data(), dy.numel());
}

template <nn::ActivationFunction F, Scalar T>
void gated_forward(F, const Tensor<T, cpu>& h, Tensor<T, cpu>& y) {
  const std::int64_t out = y.size(-1), rows = out ? y.numel() / out : 0;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  cpu_kernels::for_each_gate_block(rows, out, [&](std::int64_t r, std::int64_t j, std::int64_t len) {
    const T* hr = h.data() + r * 2 * out + j;
    Eigen::Map<Array> yr(y.data() + r * out + j, len);
    F::value(Eigen::Map<const Array>(hr + out, len), yr);  // gelu(g)
    yr *= Eigen::Map<const Array>(hr, len);                // a * gelu(g)
  });
}

template <nn::ActivationFunction F, Scalar T>
void gated_backward(F, const Tensor<T, cpu>& h, const Tensor<T, cpu>& dy, Tensor<T, cpu>& dh) {
  const std::int64_t out = dy.size(-1), rows = out ? dy.numel() / out : 0;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  cpu_kernels::for_each_gate_block(rows, out, [&](std::int64_t r, std::int64_t j, std::int64_t len) {
    const T* hr = h.data() + r * 2 * out + j;
    T* dhr = dh.data() + r * 2 * out + j;
    Eigen::Map<const Array> a(hr, len), g(hr + out, len), dyr(dy.data() + r * out + j, len);
    Eigen::Map<Array> da(dhr, len), dg(dhr + out, len);
    F::value(g, da);  // da = dy * gelu(g)
    da *= dyr;
    F::gradient(g, dyr * a, dg);  // dg = dy * a * gelu'(g)
  });
}

}  // namespace spo::inline kernels

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    y = f(x) elementwise for an ActivationFunction f; no parameters, any input shape. Keeps x for backward
    (copied aside by the forward kernel itself). The arithmetic is the device's activation_* kernels.
!*/
template <ActivationFunction F, StorageScalar T, Device D = cpu>
class Activation {
  static_assert(kernels_declared<D>,
                "spo::nn::Activation<F, T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::Activation<F, T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");

 public:
  using scalar_type = T;
  using device_type = D;
  using function_type = F;
  using tensor = Tensor<T, D>;

  tensor forward(const tensor& x) {
    auto y = tensor::uninitialized(x.shape());  // [*]
    if (grad_enabled()) {
      if (!(input_.shape() == x.shape())) input_ = tensor::uninitialized(x.shape());
      activation_forward(F{}, x, y, &input_);
    } else {
      activation_forward(F{}, x, y, static_cast<tensor*>(nullptr));
      input_ = tensor();
    }
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(input_.numel() > 0 || dy.numel() == 0, F::name << "::backward without a forward in grad mode");
    check_same_shape(dy.shape(), input_.shape(), "Activation::backward (gradient vs input)");
    auto dx = tensor::uninitialized(dy.shape());  // [*]
    activation_backward(F{}, input_, dy, dx);
    input_ = tensor();
    return dx;
  }

  /// Forgets what a grad-mode forward kept (a later backward is then an error).
  void drop_saved() { input_ = tensor(); }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

 private:
  tensor input_;
};

template <StorageScalar T, Device D = cpu>
using SiLU = Activation<SiLUFunction, T, D>;
template <StorageScalar T, Device D = cpu>
using GELU = Activation<GELUFunction, T, D>;
template <StorageScalar T, Device D = cpu>
using GELUTanh = Activation<GELUTanhFunction, T, D>;
template <StorageScalar T, Device D = cpu>
using QuickGELU = Activation<QuickGELUFunction, T, D>;

/*!
  WHAT THIS REPRESENTS
    diffusers' GEGLU(dim_in, dim_out) (models/activations.py): h = proj(x) with proj = Linear(dim_in, 2 dim_out),
    (a, g) = h.chunk(2, -1) (hidden first, then gate), y = a * gelu(g) with the exact (erf) GELU (the device's
    gated_* kernels).
    Keys `proj.weight` [2 dim_out, dim_in], `proj.bias` [2 dim_out]. Input [..., dim_in], output [..., dim_out].
!*/
template <StorageScalar T, Device D = cpu, ActivationFunction F = GELUFunction>
class GEGLU {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  GEGLU() = default;
  GEGLU(std::int64_t dim_in, std::int64_t dim_out, bool bias = true)
      : out_(dim_out), proj_(dim_in, 2 * dim_out, bias) {}

  void reset_parameters(Generator& gen) { proj_.reset_parameters(gen); }

  tensor forward(const tensor& x) {
    tensor h = proj_.forward(x);  // [..., 2 dim_out]
    Shape ys = h.shape();
    ys[-1] = out_;
    auto y = tensor::uninitialized(ys);  // [..., dim_out]
    gated_forward(F{}, h, y);
    h_ = grad_enabled() ? std::move(h) : tensor();
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!h_.empty(), "GEGLU::backward without a forward in grad mode");
    Shape expected = h_.shape();
    expected[-1] = out_;
    check_same_shape(dy.shape(), expected, "GEGLU::backward (gradient vs output)");
    auto dh = tensor::uninitialized(h_.shape());  // [..., 2 dim_out]
    gated_backward(F{}, h_, dy, dh);
    h_ = tensor();
    return proj_.backward(dh);  // [..., dim_in]
  }

  template <class V>
  void visit_parameters(V&& f, std::string_view prefix) {
    proj_.visit_parameters(f, join_name(prefix, "proj"));
  }

  Linear<T, D>& proj() { return proj_; }
  std::int64_t dim_out() const { return out_; }

 private:
  std::int64_t out_ = 0;
  Linear<T, D> proj_;
  tensor h_;  // [..., 2 dim_out] projection output, kept for backward
};

}  // namespace spo::nn
