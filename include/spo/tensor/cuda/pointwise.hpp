// SPDX-License-Identifier: MIT
/// @brief Host declarations of spo::cuda's pointwise kernels: activations (SiLU, GELU, GELU-tanh, QuickGELU) with a
/// saved input, the gated product of GEGLU, nearest 2x upsampling and the sinusoidal timestep embedding (device
/// pointers; definitions in pointwise.cuh, instantiated for float, double, half and bfloat16 in
/// instantiate/pointwise.cu). For the 16-bit scalars the functions are evaluated in float (the embedding in double)
/// and each output is rounded once.
#pragma once

#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/core/half.hpp"

namespace spo::cuda_kernels {

/// The elementwise functions with a device form: nn::SiLUFunction, nn::GELUFunction, nn::GELUTanhFunction,
/// nn::QuickGELUFunction.
enum class PointwiseFunction { silu, gelu, gelu_tanh, quick_gelu };

/// y = f(x) over n elements; saved = x as well when saved is not null (the input kept for backward).
template <StorageScalar T>
void pointwise_forward(PointwiseFunction f, const T* x, T* y, T* saved, std::int64_t n);

/// dx = dy f'(x) over n elements.
template <StorageScalar T>
void pointwise_backward(PointwiseFunction f, const T* x, const T* dy, T* dx, std::int64_t n);

/// GEGLU's gate: h [rows, 2 dim_out] = (a, g) along the last axis (hidden first, then gate), y [rows, dim_out] =
/// a f(g).
template <StorageScalar T>
void gated_forward(PointwiseFunction f, const T* h, T* y, std::int64_t rows, std::int64_t dim_out);

/// The gate's backward: dh = (dy f(g), dy a f'(g)) [rows, 2 dim_out].
template <StorageScalar T>
void gated_backward(PointwiseFunction f, const T* h, const T* dy, T* dh, std::int64_t rows, std::int64_t dim_out);

/// y[p, 2i + a, 2j + b] = x[p, i, j] for a, b in {0, 1}: x [planes, h, w] -> y [planes, 2h, 2w].
template <StorageScalar T>
void upsample_nearest2x_forward(const T* x, T* y, std::int64_t planes, std::int64_t h, std::int64_t w);

/// dx[p, i, j] = sum_{a, b in {0, 1}} dy[p, 2i + a, 2j + b].
template <StorageScalar T>
void upsample_nearest2x_backward(const T* dy, T* dx, std::int64_t planes, std::int64_t h, std::int64_t w);

/// The fields of nn::SinusoidalEmbeddingOptions (nn/timestep_embedding.hpp), which the device code cannot include.
struct SinusoidParams {
  std::int64_t embedding_dim = 0;
  bool flip_sin_to_cos = false;
  double downscale_freq_shift = 1.0;
  double scale = 1.0;
  double max_period = 10000.0;
};

/// emb [n, dim] from t [n]: f_k = exp(-ln(max_period) k / (half - shift)), arg = scale t f_k, emb = [sin, cos]
/// ([cos, sin] when flip_sin_to_cos), the last column 0 when dim is odd; in double, rounded once to T.
template <StorageScalar T>
void sinusoidal_embedding_forward(const T* t, T* emb, std::int64_t n, const SinusoidParams& p);

/// dt[i] = sum_k scale f_k (demb_sin[i, k] cos(arg_ik) - demb_cos[i, k] sin(arg_ik)), in double.
template <StorageScalar T>
void sinusoidal_embedding_backward(const T* t, const T* demb, T* dt, std::int64_t n, const SinusoidParams& p);

}  // namespace spo::cuda_kernels
