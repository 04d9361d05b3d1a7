// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::timestep_embedding and nn::Timesteps (sinusoidal_embedding_forward,
/// sinusoidal_embedding_backward; contracts in nn/timestep_embedding.hpp), and, through the Linear and SiLU kernels,
/// of nn::TimestepEmbedding.
#pragma once

#include "spo/core/device.hpp"
#include "spo/nn/cuda/activation.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/timestep_embedding.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

template <StorageScalar T>
void sinusoidal_embedding_forward(const Tensor<T, cuda>& t, Tensor<T, cuda>& emb,
                                  const nn::SinusoidalEmbeddingOptions& o) {
  cuda_kernels::sinusoidal_embedding_forward<T>(
      t.data(), emb.data(), t.numel(),
      {o.embedding_dim, o.flip_sin_to_cos, o.downscale_freq_shift, o.scale, o.max_period});
}

template <StorageScalar T>
void sinusoidal_embedding_backward(const Tensor<T, cuda>& t, const Tensor<T, cuda>& demb, Tensor<T, cuda>& dt,
                                   const nn::SinusoidalEmbeddingOptions& o) {
  cuda_kernels::sinusoidal_embedding_backward<T>(
      t.data(), demb.data(), dt.data(), t.numel(),
      {o.embedding_dim, o.flip_sin_to_cos, o.downscale_freq_shift, o.scale, o.max_period});
}

}  // namespace spo::inline kernels
