// SPDX-License-Identifier: MIT
/// @brief Sinusoidal timestep embedding (diffusers get_timestep_embedding / Timesteps) and the TimestepEmbedding MLP,
/// on any device with kernels (the CPU ones here, the spo::cuda ones in nn/cuda/timestep_embedding.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "spo/core/rng.hpp"
#include "spo/nn/activation.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/linear.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    The settings of diffusers' get_timestep_embedding(timesteps, embedding_dim, flip_sin_to_cos,
    downscale_freq_shift, scale, max_period) (models/embeddings.py). With half = embedding_dim / 2:
      f_k   = exp(-ln(max_period) * k / (half - downscale_freq_shift)),  k = 0 .. half - 1
      arg_k = scale * t * f_k
      emb   = [sin(arg), cos(arg)], or [cos(arg), sin(arg)] when flip_sin_to_cos, zero-padded when the dim is odd.
    SD's UNet uses Timesteps(320, flip_sin_to_cos=true, downscale_freq_shift=0); the SPM's DiT-style embedding is
    cos-first with half = 128 and shift 0.
!*/
struct SinusoidalEmbeddingOptions {
  std::int64_t embedding_dim = 0;
  bool flip_sin_to_cos = false;
  double downscale_freq_shift = 1.0;
  double scale = 1.0;
  double max_period = 10000.0;

  /// cos first, shift 0 (SD UNet time_proj, the SPM's embedding).
  static SinusoidalEmbeddingOptions cos_first(std::int64_t dim, double shift = 0.0) { return {dim, true, shift}; }
  /// sin first, shift 1 (get_timestep_embedding's defaults).
  static SinusoidalEmbeddingOptions sin_first(std::int64_t dim, double shift = 1.0) { return {dim, false, shift}; }
};

}  // namespace spo::nn

namespace spo::cpu_kernels {

/// Frequency f_k of the sinusoidal embedding, computed in double on every device.
inline double sinusoid_frequency(const nn::SinusoidalEmbeddingOptions& o, std::int64_t k) {
  const std::int64_t half = o.embedding_dim / 2;
  return std::exp(-std::log(o.max_period) * static_cast<double>(k) /
                  (static_cast<double>(half) - o.downscale_freq_shift));
}

/// emb [n, dim] from t [n]; arguments and sin/cos in double, rounded once to T.
template <Scalar T>
void sinusoidal_embedding_forward(const T* t, T* emb, std::int64_t n, const nn::SinusoidalEmbeddingOptions& o) {
  const std::int64_t dim = o.embedding_dim, half = dim / 2;
  const std::int64_t sin_at = o.flip_sin_to_cos ? half : 0, cos_at = o.flip_sin_to_cos ? 0 : half;
  for (std::int64_t i = 0; i < n; ++i) {
    T* row = emb + i * dim;
    for (std::int64_t k = 0; k < half; ++k) {
      const double arg = o.scale * static_cast<double>(t[i]) * sinusoid_frequency(o, k);
      row[sin_at + k] = static_cast<T>(std::sin(arg));
      row[cos_at + k] = static_cast<T>(std::cos(arg));
    }
    if (dim % 2) row[dim - 1] = T(0);
  }
}

/// dt[i] = sum_k scale f_k (demb_sin[i, k] cos(arg_ik) - demb_cos[i, k] sin(arg_ik)).
template <Scalar T>
void sinusoidal_embedding_backward(const T* t, const T* demb, T* dt, std::int64_t n,
                                   const nn::SinusoidalEmbeddingOptions& o) {
  const std::int64_t dim = o.embedding_dim, half = dim / 2;
  const std::int64_t sin_at = o.flip_sin_to_cos ? half : 0, cos_at = o.flip_sin_to_cos ? 0 : half;
  for (std::int64_t i = 0; i < n; ++i) {
    const T* row = demb + i * dim;
    double acc = 0.0;
    for (std::int64_t k = 0; k < half; ++k) {
      const double w = o.scale * sinusoid_frequency(o, k);
      const double arg = w * static_cast<double>(t[i]);
      acc += w * (static_cast<double>(row[sin_at + k]) * std::cos(arg) -
                  static_cast<double>(row[cos_at + k]) * std::sin(arg));
    }
    dt[i] = static_cast<T>(acc);
  }
}

}  // namespace spo::cpu_kernels

namespace spo::inline kernels {

/*!
  The sinusoidal embedding kernels, with one overload per device (arguments and sin/cos in double, rounded once).
  sinusoidal_embedding_forward(t, emb, o): emb [N, dim] from t [N]
  sinusoidal_embedding_backward(t, demb, dt, o): dt[i] = sum_k scale f_k (demb_sin[i, k] cos(arg_ik) -
    demb_cos[i, k] sin(arg_ik))
!*/
template <Scalar T>
void sinusoidal_embedding_forward(const Tensor<T, cpu>& t, Tensor<T, cpu>& emb,
                                  const nn::SinusoidalEmbeddingOptions& o) {
  cpu_kernels::sinusoidal_embedding_forward(t.data(), emb.data(), t.numel(), o);
}

template <Scalar T>
void sinusoidal_embedding_backward(const Tensor<T, cpu>& t, const Tensor<T, cpu>& demb, Tensor<T, cpu>& dt,
                                   const nn::SinusoidalEmbeddingOptions& o) {
  cpu_kernels::sinusoidal_embedding_backward(t.data(), demb.data(), dt.data(), t.numel(), o);
}

}  // namespace spo::inline kernels

namespace spo::nn {

/// get_timestep_embedding as a function: timesteps [N] -> [N, embedding_dim], on the device of the timesteps.
template <StorageScalar T, Device D>
Tensor<T, D> timestep_embedding(const Tensor<T, D>& timesteps, const SinusoidalEmbeddingOptions& o) {
  static_assert(kernels_declared<D>,
                "spo::nn::timestep_embedding: no kernels of device D are declared; include spo/cuda.hpp");
  SPO_CHECK(timesteps.rank() == 1, "timestep_embedding: timesteps shape " << timesteps.shape() << " is not [N]");
  SPO_CHECK(o.embedding_dim >= 2 && static_cast<double>(o.embedding_dim / 2) != o.downscale_freq_shift,
            "timestep_embedding: embedding_dim " << o.embedding_dim << " with downscale_freq_shift "
                                                 << o.downscale_freq_shift << " gives no finite frequencies");
  auto emb = Tensor<T, D>::uninitialized(Shape{timesteps.shape()[0], o.embedding_dim});  // [N, dim]
  sinusoidal_embedding_forward(timesteps, emb, o);
  return emb;
}

/*!
  WHAT THIS REPRESENTS
    diffusers' Timesteps module: the sinusoidal embedding as a layer, [N] -> [N, embedding_dim]; no parameters.
    It is differentiable in t: d sin(w t)/dt = w cos(w t), d cos(w t)/dt = -w sin(w t).
!*/
template <StorageScalar T, Device D = cpu>
class Timesteps {
  static_assert(kernels_declared<D>,
                "spo::nn::Timesteps<T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::Timesteps<T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");

 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  Timesteps() = default;
  explicit Timesteps(const SinusoidalEmbeddingOptions& options) : options_(options) {}
  Timesteps(std::int64_t embedding_dim, bool flip_sin_to_cos, double downscale_freq_shift, double scale = 1.0,
            double max_period = 10000.0)
      : options_{embedding_dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period} {}

  tensor forward(const tensor& t) {
    tensor emb = timestep_embedding(t, options_);  // [N, dim]
    input_ = grad_enabled() ? t : tensor();
    return emb;
  }

  tensor backward(const tensor& demb) {
    SPO_CHECK(input_.rank() == 1 && (input_.numel() > 0 || demb.numel() == 0),
              "Timesteps::backward without a forward in grad mode");
    check_same_shape(demb.shape(), Shape{input_.shape()[0], options_.embedding_dim},
                     "Timesteps::backward (gradient vs output)");
    auto dt = tensor::uninitialized(input_.shape());  // [N]
    sinusoidal_embedding_backward(input_, demb, dt, options_);
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

/*!
  WHAT THIS REPRESENTS
    diffusers' TimestepEmbedding(in_channels, time_embed_dim, act_fn="silu", out_dim):
    y = linear_2(silu(linear_1(x))). Keys `linear_1.weight` [time_embed_dim, in], `linear_1.bias`,
    `linear_2.weight` [out_dim, time_embed_dim], `linear_2.bias`. out_dim <= 0 means time_embed_dim.
!*/
template <StorageScalar T, Device D = cpu>
class TimestepEmbedding {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  TimestepEmbedding() = default;
  TimestepEmbedding(std::int64_t in_channels, std::int64_t time_embed_dim, std::int64_t out_dim = 0)
      : linear_1_(in_channels, time_embed_dim), linear_2_(time_embed_dim, out_dim > 0 ? out_dim : time_embed_dim) {}

  void reset_parameters(Generator& gen) {
    linear_1_.reset_parameters(gen);
    linear_2_.reset_parameters(gen);
  }

  tensor forward(const tensor& x) {
    return linear_2_.forward(act_.forward(linear_1_.forward(x)));  // [..., out_dim]
  }

  tensor backward(const tensor& dy) {
    return linear_1_.backward(act_.backward(linear_2_.backward(dy)));  // [..., in_channels]
  }

  template <class V>
  void visit_parameters(V&& f, std::string_view prefix) {
    linear_1_.visit_parameters(f, join_name(prefix, "linear_1"));
    linear_2_.visit_parameters(f, join_name(prefix, "linear_2"));
  }

  Linear<T, D>& linear_1() { return linear_1_; }
  Linear<T, D>& linear_2() { return linear_2_; }

 private:
  Linear<T, D> linear_1_;
  SiLU<T, D> act_;
  Linear<T, D> linear_2_;
};

}  // namespace spo::nn
