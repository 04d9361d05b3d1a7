// SPDX-License-Identifier: MIT
/// @brief LayerNorm over the last axis (torch.nn.LayerNorm(dim); keys `weight`, `bias` [dim], biased variance), on any
/// device with kernels (the CPU ones here, the spo::cuda ones in nn/cuda/layer_norm.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include <Eigen/Core>

#include "spo/core/parallel.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cpu_kernels {

/// Elements a thread should own before the layer-norm kernels go parallel (a parallel region costs microseconds).
inline constexpr std::int64_t layer_norm_parallel_grain = 1 << 15;

/*!
  REQUIRES
    - x, y: [rows, dim]; gamma, beta: [dim] or both null; xhat: [rows, dim] or null; rstd: [rows]
  ENSURES
    - per row: mu = mean(x), var = mean((x - mu)^2), rstd = 1 / sqrt(var + eps), xhat = (x - mu) rstd,
      y = gamma * xhat + beta (statistics in double)
!*/
template <Scalar T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* xhat, T* rstd, std::int64_t rows,
                        std::int64_t dim, double eps) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  parallel_for(
      0, rows,
      [&](std::int64_t r) {
        Eigen::Map<const Array> xr(x + r * dim, dim);
        const double mean = dim ? xr.template cast<double>().sum() / static_cast<double>(dim) : 0.0;
        const double var = dim ? (xr.template cast<double>() - mean).square().sum() / static_cast<double>(dim) : 0.0;
        const double inv = 1.0 / std::sqrt(var + eps);
        rstd[r] = static_cast<T>(inv);
        Eigen::Map<Array> yr(y + r * dim, dim);
        if (xhat) {
          Eigen::Map<Array> hr(xhat + r * dim, dim);
          hr = xr * static_cast<T>(inv) - static_cast<T>(mean * inv);
          if (gamma)
            yr = hr * Eigen::Map<const Array>(gamma, dim) + Eigen::Map<const Array>(beta, dim);
          else
            yr = hr;
        } else {
          if (gamma)
            yr = (xr * static_cast<T>(inv) - static_cast<T>(mean * inv)) * Eigen::Map<const Array>(gamma, dim) +
                 Eigen::Map<const Array>(beta, dim);
          else
            yr = xr * static_cast<T>(inv) - static_cast<T>(mean * inv);
        }
      },
      std::max<std::int64_t>(1, layer_norm_parallel_grain / std::max<std::int64_t>(dim, 1)));
}

/*!
  ENSURES
    - dx = rstd * (gamma dy - mean(gamma dy) - xhat * mean(gamma dy xhat)) per row (closed form)
!*/
template <Scalar T>
void layer_norm_backward(const T* dy, const T* xhat, const T* rstd, const T* gamma, T* dx, std::int64_t rows,
                         std::int64_t dim) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  parallel_for(
      0, rows,
      [&](std::int64_t r) {
        Eigen::Map<const Array> dyr(dy + r * dim, dim), hr(xhat + r * dim, dim);
        double s1, s2;  // sum gamma dy, sum gamma dy xhat
        if (gamma) {
          Eigen::Map<const Array> gm(gamma, dim);
          s1 = (dyr * gm).template cast<double>().sum();
          s2 = ((dyr * gm).template cast<double>() * hr.template cast<double>()).sum();
        } else {
          s1 = dyr.template cast<double>().sum();
          s2 = (dyr.template cast<double>() * hr.template cast<double>()).sum();
        }
        const double inv = static_cast<double>(rstd[r]);
        const double inv_n = dim ? 1.0 / static_cast<double>(dim) : 0.0;
        const T shift = static_cast<T>(-inv * s1 * inv_n), slope = static_cast<T>(-inv * s2 * inv_n);
        Eigen::Map<Array> dxr(dx + r * dim, dim);
        if (gamma)
          dxr = dyr * Eigen::Map<const Array>(gamma, dim) * static_cast<T>(inv) + hr * slope + shift;
        else
          dxr = dyr * static_cast<T>(inv) + hr * slope + shift;
      },
      std::max<std::int64_t>(1, layer_norm_parallel_grain / std::max<std::int64_t>(dim, 1)));
}

}  // namespace spo::cpu_kernels

namespace spo::inline kernels {

/*!
  The LayerNorm kernels, with one overload per device, over x [..., dim] read as [rows, dim] (rows = rstd.numel()).
  layer_norm_forward(x, gamma, beta, y, xhat, rstd, eps)
    REQUIRES gamma, beta: [dim] or both null; xhat: like x, or null
    ENSURES  rstd, y (and xhat when not null) as cpu_kernels::layer_norm_forward
  layer_norm_backward(dy, xhat, rstd, gamma, dx, dgamma, dbeta)
    REQUIRES xhat and rstd from layer_norm_forward; gamma [dim] or null; dgamma, dbeta: [dim] or null
    ENSURES  dx as cpu_kernels::layer_norm_backward; dgamma += sum_rows dy xhat and dbeta += sum_rows dy, each when
             not null
!*/
template <Scalar T>
void layer_norm_forward(const Tensor<T, cpu>& x, const Tensor<T, cpu>* gamma, const Tensor<T, cpu>* beta,
                        Tensor<T, cpu>& y, Tensor<T, cpu>* xhat, Tensor<T, cpu>& rstd, double eps) {
  cpu_kernels::layer_norm_forward(x.data(), gamma ? gamma->data() : nullptr, beta ? beta->data() : nullptr, y.data(),
                                  xhat ? xhat->data() : nullptr, rstd.data(), rstd.numel(), x.size(-1), eps);
}

template <Scalar T>
void layer_norm_backward(const Tensor<T, cpu>& dy, const Tensor<T, cpu>& xhat, const Tensor<T, cpu>& rstd,
                         const Tensor<T, cpu>* gamma, Tensor<T, cpu>& dx, Tensor<T, cpu>* dgamma,
                         Tensor<T, cpu>* dbeta) {
  const std::int64_t rows = rstd.numel(), dim = dy.size(-1);
  cpu_kernels::layer_norm_backward(dy.data(), xhat.data(), rstd.data(), gamma ? gamma->data() : nullptr, dx.data(),
                                   rows, dim);
  if (!dgamma && !dbeta) return;
  auto dym = as_matrix(dy.view(), rows, dim);
  auto hm = as_matrix(xhat.view(), rows, dim);
  if (dgamma) as_matrix(dgamma->view(), 1, dim).row(0) += dym.cwiseProduct(hm).colwise().sum();  // [dim]
  if (dbeta) as_matrix(dbeta->view(), 1, dim).row(0) += dym.colwise().sum();                     // [dim]
}

}  // namespace spo::inline kernels

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    torch.nn.LayerNorm(dim, eps=1e-5, elementwise_affine): each row of the last axis is normalised by its mean
    and biased variance, then scaled and shifted elementwise. Input [..., dim]. Keeps xhat [..., dim] and
    rstd [rows] for the closed-form backward; the arithmetic is the device's layer_norm_* kernels (spo::kernels).
!*/
template <StorageScalar T, Device D = cpu>
class LayerNorm {
  static_assert(kernels_declared<D>,
                "spo::nn::LayerNorm<T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::LayerNorm<T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");

 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  LayerNorm() = default;
  explicit LayerNorm(std::int64_t dim, double eps = 1e-5, bool elementwise_affine = true)
      : dim_(dim), eps_(eps), affine_(elementwise_affine) {
    if (affine_) {
      weight_ = Parameter<T, D>(Shape{dim});  // [dim] = 1
      bias_ = Parameter<T, D>(Shape{dim});    // [dim] = 0
      fill(weight_.value.view(), T(1));
    }
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 1 && x.shape()[-1] == dim_,
              "LayerNorm(" << dim_ << "): input shape " << x.shape() << " does not end in " << dim_);
    const std::int64_t rows = dim_ ? x.numel() / dim_ : 0;
    auto y = tensor::uninitialized(x.shape());  // [..., dim]
    const bool keep = grad_enabled();
    xhat_ = keep ? tensor::uninitialized(x.shape()) : tensor();        // [..., dim]
    rstd_ = Tensor<compute_type_t<T>, D>::uninitialized(Shape{rows});  // [rows]
    layer_norm_forward(x, affine_ ? &weight_.value : nullptr, affine_ ? &bias_.value : nullptr, y,
                       keep ? &xhat_ : nullptr, rstd_, eps_);
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!xhat_.empty(), "LayerNorm::backward without a forward in grad mode");
    check_same_shape(dy.shape(), xhat_.shape(), "LayerNorm::backward (gradient vs input)");
    auto dx = tensor::uninitialized(dy.shape());  // [..., dim]
    layer_norm_backward(dy, xhat_, rstd_, affine_ ? &weight_.value : nullptr, dx,
                        affine_ && weight_.trainable ? &weight_.grad : nullptr,
                        affine_ && bias_.trainable ? &bias_.grad : nullptr);
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
  Parameter<T, D>& weight() { return weight_; }
  Parameter<T, D>& bias() { return bias_; }

 private:
  std::int64_t dim_ = 0;
  double eps_ = 1e-5;
  bool affine_ = true;
  Parameter<T, D> weight_, bias_;
  tensor xhat_;                        // [..., dim] normalised input, kept for backward
  Tensor<compute_type_t<T>, D> rstd_;  // [rows], in the compute type
};

}  // namespace spo::nn
