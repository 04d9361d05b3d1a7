// SPDX-License-Identifier: MIT
/// @brief The sinusoidal timestep embedding on spo::cuda: nn::timestep_embedding for device tensors and
/// Timesteps<T, cuda> (the twins of nn/timestep_embedding.hpp). TimestepEmbedding<T, D> needs no specialisation: it
/// composes Linear<T, cuda> and SiLU<T, cuda>, whose device forms this header brings in.
#pragma once

#include <string_view>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/nn/cuda/activation.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/timestep_embedding.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/// The device kernels' copy of the embedding settings.
inline cuda_kernels::SinusoidParams sinusoid_params(const SinusoidalEmbeddingOptions& o) {
  return {o.embedding_dim, o.flip_sin_to_cos, o.downscale_freq_shift, o.scale, o.max_period};
}

/// get_timestep_embedding as a function on the device: timesteps [N] -> [N, embedding_dim].
template <Scalar T>
Tensor<T, cuda> timestep_embedding(const Tensor<T, cuda>& timesteps, const SinusoidalEmbeddingOptions& o) {
  SPO_CHECK(timesteps.rank() == 1, "timestep_embedding: timesteps shape " << timesteps.shape() << " is not [N]");
  SPO_CHECK(o.embedding_dim >= 2 && static_cast<double>(o.embedding_dim / 2) != o.downscale_freq_shift,
            "timestep_embedding: embedding_dim " << o.embedding_dim << " with downscale_freq_shift "
                                                 << o.downscale_freq_shift << " gives no finite frequencies");
  auto emb = Tensor<T, cuda>::uninitialized(Shape{timesteps.shape()[0], o.embedding_dim});  // [N, dim]
  cuda_kernels::sinusoidal_embedding_forward<T>(timesteps.data(), emb.data(), timesteps.shape()[0],
                                                sinusoid_params(o));
  return emb;
}

/// diffusers' Timesteps module on spo::cuda: [N] -> [N, embedding_dim], differentiable in t; no parameters.
template <Scalar T>
class Timesteps<T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  Timesteps() = default;
  explicit Timesteps(const SinusoidalEmbeddingOptions& options) : options_(options) {}
  Timesteps(std::int64_t embedding_dim, bool flip_sin_to_cos, double downscale_freq_shift, double scale = 1.0,
            double max_period = 10000.0)
      : options_{embedding_dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period} {}

  tensor forward(const tensor& t) {
    tensor emb = timestep_embedding(t, options_);                             // [N, dim]
    input_ = grad_enabled() ? t : tensor();
    return emb;
  }

  tensor backward(const tensor& demb) {
    SPO_CHECK(input_.rank() == 1 && (input_.numel() > 0 || demb.numel() == 0),
              "Timesteps::backward without a forward in grad mode");
    check_same_shape(demb.shape(), Shape{input_.shape()[0], options_.embedding_dim},
                     "Timesteps::backward (gradient vs output)");
    auto dt = tensor::uninitialized(input_.shape());                          // [N]
    cuda_kernels::sinusoidal_embedding_backward<T>(input_.data(), demb.data(), dt.data(), input_.shape()[0],
                                                   sinusoid_params(options_));
    input_ = tensor();
    return dt;
  }

  template <class V>
  void visit_parameters(V&&, std::string_view) {}

  const SinusoidalEmbeddingOptions& options() const { return options_; }

 private:
  SinusoidalEmbeddingOptions options_;
  tensor input_;  // [N]
};

}  // namespace spo::nn
