// SPDX-License-Identifier: MIT
/// @brief Pointwise kernels on spo::cuda: GELU (erf and tanh forms) and QuickGELU device functors beside
/// elementwise.cuh's SiluOp, activation forward (saving its input) and backward, GEGLU's gated product, nearest 2x
/// upsampling and the sinusoidal timestep embedding; host declarations in pointwise.hpp. Every storage scalar: 16-bit
/// elements are read into float and each output is rounded once (scalar_access.cuh).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/layout.cuh"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/cuda/scalar_access.cuh"

namespace spo::cuda_kernels {

namespace pointwise_detail {

__device__ inline float erf_of(float x) { return erff(x); }
__device__ inline double erf_of(double x) { return erf(x); }
__device__ inline float tanh_of(float x) { return tanhf(x); }
__device__ inline double tanh_of(double x) { return tanh(x); }

}  // namespace pointwise_detail

/// GELU, exact form (nn::GELUFunction, torch.nn.GELU()): f(x) = x/2 (1 + erf(x / sqrt 2)),
/// f'(x) = (1 + erf(x / sqrt 2)) / 2 + x exp(-x^2 / 2) / sqrt(2 pi).
struct GeluOp {
  static constexpr std::string_view name = "GELU";
  static constexpr double inv_sqrt2 = 0.70710678118654752440;
  static constexpr double inv_sqrt_2pi = 0.39894228040143267794;
  template <Scalar T>
  __device__ static T value(T x) {
    return T(0.5) * x * (T(1) + pointwise_detail::erf_of(x * T(inv_sqrt2)));
  }
  template <Scalar T>
  __device__ static T gradient(T x, T dy) {
    return dy * (T(0.5) * (T(1) + pointwise_detail::erf_of(x * T(inv_sqrt2))) +
                 x * T(inv_sqrt_2pi) * detail::exp_of(x * x * T(-0.5)));
  }
};

/// GELU, tanh approximation (nn::GELUTanhFunction, torch.nn.GELU(approximate="tanh")): f(x) = x/2 (1 + tanh u),
/// u = sqrt(2/pi) (x + 0.044715 x^3); f'(x) = (1 + tanh u)/2 + 2 x / (e^u + e^-u)^2 sqrt(2/pi) (1 + 3 0.044715 x^2)
/// (1 - tanh^2 u written as 4 / (e^u + e^-u)^2, as on the CPU).
struct GeluTanhOp {
  static constexpr std::string_view name = "GELUTanh";
  static constexpr double sqrt_2_over_pi = 0.79788456080286535588;
  static constexpr double cubic = 0.044715;
  template <Scalar T>
  __device__ static T value(T x) {
    return T(0.5) * x * (T(1) + pointwise_detail::tanh_of(T(sqrt_2_over_pi) * (x + T(cubic) * (x * x * x))));
  }
  template <Scalar T>
  __device__ static T gradient(T x, T dy) {
    const T u = T(sqrt_2_over_pi) * (x + T(cubic) * (x * x * x));
    const T e = detail::exp_of(u) + detail::exp_of(-u);
    return dy * (T(0.5) * (T(1) + pointwise_detail::tanh_of(u)) +
                 T(2) * x / (e * e) * T(sqrt_2_over_pi) * (T(1) + T(3 * cubic) * (x * x)));
  }
};

/// Quick GELU (nn::QuickGELUFunction, OpenAI CLIP's `quick_gelu`): f(x) = x sigmoid(1.702 x),
/// f'(x) = s (1 + 1.702 x (1 - s)) with s = sigmoid(1.702 x) (sigmoid written as 1 / (1 + e^-u), as SiluOp does).
struct QuickGeluOp {
  static constexpr std::string_view name = "QuickGELU";
  static constexpr double slope = 1.702;
  template <Scalar T>
  __device__ static T value(T x) {
    return x / (T(1) + detail::exp_of(-T(slope) * x));
  }
  template <Scalar T>
  __device__ static T gradient(T x, T dy) {
    const T s = T(1) / (T(1) + detail::exp_of(-T(slope) * x));
    return dy * s * (T(1) + T(slope) * x * (T(1) - s));
  }
};

namespace pointwise_detail {

/// launch(Op{}) with the device functor of f.
template <class Launch>
void with_function(PointwiseFunction f, Launch&& launch) {
  switch (f) {
    case PointwiseFunction::silu:
      launch(SiluOp{});
      return;
    case PointwiseFunction::gelu:
      launch(GeluOp{});
      return;
    case PointwiseFunction::gelu_tanh:
      launch(GeluTanhOp{});
      return;
    case PointwiseFunction::quick_gelu:
      launch(QuickGeluOp{});
      return;
  }
  SPO_CHECK(false, "cuda_kernels: unknown PointwiseFunction " << static_cast<int>(f));
}

template <class F, StorageScalar T>
__global__ void forward_saving_kernel(std::int64_t n, const T* x, T* y, T* saved) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const T v = x[i];
    saved[i] = v;
    y[i] = detail::store<T>(F::value(detail::load(v)));
  }
}

/// Under layout_detail::rows_grid(rows, dim_out).
template <class F, StorageScalar T>
__global__ void gated_forward_kernel(const T* h, T* y, std::int64_t rows, std::int64_t dim_out) {
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* hr = h + r * 2 * dim_out;
    T* yr = y + r * dim_out;
    for (std::int64_t j = detail::grid_first(); j < dim_out; j += detail::grid_stride())
      yr[j] = detail::store<T>(F::value(detail::load(hr[dim_out + j])) * detail::load(hr[j]));
  }
}

template <class F, StorageScalar T>
__global__ void gated_backward_kernel(const T* h, const T* dy, T* dh, std::int64_t rows, std::int64_t dim_out) {
  using C = compute_type_t<T>;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* hr = h + r * 2 * dim_out;
    const T* dr = dy + r * dim_out;
    T* out = dh + r * 2 * dim_out;
    for (std::int64_t j = detail::grid_first(); j < dim_out; j += detail::grid_stride()) {
      const C a = detail::load(hr[j]), g = detail::load(hr[dim_out + j]), d = detail::load(dr[j]);
      out[j] = detail::store<T>(F::value(g) * d);
      out[dim_out + j] = detail::store<T>(F::gradient(g, d * a));
    }
  }
}

/// One thread per input element (row ph = idx / w of the planes * h input rows, column j).
template <StorageScalar T>
__global__ void upsample_forward_kernel(const T* x, T* y, std::int64_t n, std::int64_t w) {
  for (std::int64_t idx = detail::grid_first(); idx < n; idx += detail::grid_stride()) {
    const std::int64_t ph = idx / w, j = idx - ph * w;
    const T v = x[idx];
    T* y0 = y + ph * 4 * w + 2 * j;  // output rows 2i and 2i + 1 of the plane are contiguous
    y0[0] = v;
    y0[1] = v;
    y0[2 * w] = v;
    y0[2 * w + 1] = v;
  }
}

template <StorageScalar T>
__global__ void upsample_backward_kernel(const T* dy, T* dx, std::int64_t n, std::int64_t w) {
  using detail::load;
  for (std::int64_t idx = detail::grid_first(); idx < n; idx += detail::grid_stride()) {
    const std::int64_t ph = idx / w, j = idx - ph * w;
    const T* d0 = dy + ph * 4 * w + 2 * j;
    const T* d1 = d0 + 2 * w;
    dx[idx] = detail::store<T>((load(d0[0]) + load(d0[1])) + (load(d1[0]) + load(d1[1])));
  }
}

__device__ inline double sinusoid_frequency(const SinusoidParams& p, std::int64_t k) {
  const std::int64_t half = p.embedding_dim / 2;
  return exp(-log(p.max_period) * static_cast<double>(k) / (static_cast<double>(half) - p.downscale_freq_shift));
}

/// v in T: directly for float and double, through float for the 16-bit scalars (as convert_scalar).
template <StorageScalar T>
__device__ inline T from_double(double v) {
  return detail::store<T>(static_cast<compute_type_t<T>>(v));
}

/// One thread per (i, k), k < half.
template <StorageScalar T>
__global__ void sinusoid_forward_kernel(const T* t, T* emb, std::int64_t n, SinusoidParams p) {
  const std::int64_t dim = p.embedding_dim, half = dim / 2;
  const std::int64_t sin_at = p.flip_sin_to_cos ? half : 0, cos_at = p.flip_sin_to_cos ? 0 : half;
  for (std::int64_t idx = detail::grid_first(); idx < n * half; idx += detail::grid_stride()) {
    const std::int64_t i = idx / half, k = idx - i * half;
    const double arg = p.scale * static_cast<double>(detail::load(t[i])) * sinusoid_frequency(p, k);
    T* row = emb + i * dim;
    row[sin_at + k] = from_double<T>(sin(arg));
    row[cos_at + k] = from_double<T>(cos(arg));
    if (k == 0 && dim % 2) row[dim - 1] = from_double<T>(0.0);
  }
}

/// One thread per timestep.
template <StorageScalar T>
__global__ void sinusoid_backward_kernel(const T* t, const T* demb, T* dt, std::int64_t n, SinusoidParams p) {
  const std::int64_t dim = p.embedding_dim, half = dim / 2;
  const std::int64_t sin_at = p.flip_sin_to_cos ? half : 0, cos_at = p.flip_sin_to_cos ? 0 : half;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const T* row = demb + i * dim;
    double acc = 0.0;
    for (std::int64_t k = 0; k < half; ++k) {
      const double w = p.scale * sinusoid_frequency(p, k);
      const double arg = w * static_cast<double>(detail::load(t[i]));
      acc += w * (static_cast<double>(detail::load(row[sin_at + k])) * cos(arg) -
                  static_cast<double>(detail::load(row[cos_at + k])) * sin(arg));
    }
    dt[i] = from_double<T>(acc);
  }
}

}  // namespace pointwise_detail

template <StorageScalar T>
void pointwise_forward(PointwiseFunction f, const T* x, T* y, T* saved, std::int64_t n) {
  if (n == 0) return;
  pointwise_detail::with_function(f, [&](auto op) {
    using Op = decltype(op);
    if (saved) {
      pointwise_detail::forward_saving_kernel<Op, T>
          <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(n, x, y, saved);
      SPO_CUDA_CHECK_LAUNCH("forward_saving_kernel");
    } else {
      activation_forward<Op, T>(x, y, n);
    }
  });
}

template <StorageScalar T>
void pointwise_backward(PointwiseFunction f, const T* x, const T* dy, T* dx, std::int64_t n) {
  if (n == 0) return;
  pointwise_detail::with_function(f, [&](auto op) { activation_backward<decltype(op), T>(x, dy, dx, n); });
}

template <StorageScalar T>
void gated_forward(PointwiseFunction f, const T* h, T* y, std::int64_t rows, std::int64_t dim_out) {
  if (rows * dim_out == 0) return;
  pointwise_detail::with_function(f, [&](auto op) {
    pointwise_detail::gated_forward_kernel<decltype(op), T>
        <<<layout_detail::rows_grid(rows, dim_out), cuda_runtime::block_1d>>>(h, y, rows, dim_out);
    SPO_CUDA_CHECK_LAUNCH("gated_forward_kernel");
  });
}

template <StorageScalar T>
void gated_backward(PointwiseFunction f, const T* h, const T* dy, T* dh, std::int64_t rows, std::int64_t dim_out) {
  if (rows * dim_out == 0) return;
  pointwise_detail::with_function(f, [&](auto op) {
    pointwise_detail::gated_backward_kernel<decltype(op), T>
        <<<layout_detail::rows_grid(rows, dim_out), cuda_runtime::block_1d>>>(h, dy, dh, rows, dim_out);
    SPO_CUDA_CHECK_LAUNCH("gated_backward_kernel");
  });
}

template <StorageScalar T>
void upsample_nearest2x_forward(const T* x, T* y, std::int64_t planes, std::int64_t h, std::int64_t w) {
  const std::int64_t n = planes * h * w;
  if (n == 0) return;
  pointwise_detail::upsample_forward_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(x, y, n, w);
  SPO_CUDA_CHECK_LAUNCH("upsample_forward_kernel");
}

template <StorageScalar T>
void upsample_nearest2x_backward(const T* dy, T* dx, std::int64_t planes, std::int64_t h, std::int64_t w) {
  const std::int64_t n = planes * h * w;
  if (n == 0) return;
  pointwise_detail::upsample_backward_kernel<T><<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(dy, dx, n, w);
  SPO_CUDA_CHECK_LAUNCH("upsample_backward_kernel");
}

template <StorageScalar T>
void sinusoidal_embedding_forward(const T* t, T* emb, std::int64_t n, const SinusoidParams& p) {
  const std::int64_t half = p.embedding_dim / 2;
  if (n == 0 || p.embedding_dim == 0) return;
  if (half == 0) {  // dim 1: the zero pad alone
    Fill<T>::run({n, T{}, emb});
    return;
  }
  pointwise_detail::sinusoid_forward_kernel<T>
      <<<cuda_runtime::grid_1d(n * half), cuda_runtime::block_1d>>>(t, emb, n, p);
  SPO_CUDA_CHECK_LAUNCH("sinusoid_forward_kernel");
}

template <StorageScalar T>
void sinusoidal_embedding_backward(const T* t, const T* demb, T* dt, std::int64_t n, const SinusoidParams& p) {
  if (n == 0) return;
  pointwise_detail::sinusoid_backward_kernel<T>
      <<<cuda_runtime::grid_1d(n), cuda_runtime::block_1d>>>(t, demb, dt, n, p);
  SPO_CUDA_CHECK_LAUNCH("sinusoid_backward_kernel");
}

}  // namespace spo::cuda_kernels
