// SPDX-License-Identifier: MIT
/// @brief Host declarations of the DDIM device operations (transition mean, step log-probability, per-sample affine
/// combinations, clamping, the per-sample squared error and scaled difference of the denoising loss) for code that the
/// C++ compiler builds; definitions in ddim_kernels.cuh, instantiated for float and double by
/// diffusion/cuda/instantiate/ddim_kernels.cu.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <ranges>
#include <span>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/per_sample.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::diffusion::cuda_kernels {

/// The per-batch-element numbers of one DDIM transition x_prev ~ N(sqrt(abar_prev) x0 + dir * eps, stddev^2).
struct DdimCoefficients {
  double sqrt_alpha_prev = 0;
  double dir = 0;     ///< sqrt(1 - abar_prev - stddev^2)
  double stddev = 0;  ///< eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
};

/// Anything shaped like diffusion::Transition (alpha_prev, dir, std), so this header needs no CPU diffusion code.
template <class Tr>
concept TransitionLike = requires(const Tr& tr) {
  { tr.alpha_prev } -> std::convertible_to<double>;
  { tr.dir } -> std::convertible_to<double>;
  { tr.std } -> std::convertible_to<double>;
};

/// Coefficients of transitions computed on the host by diffusion::Ddim::transition / transitions.
template <std::ranges::input_range R>
requires TransitionLike<std::ranges::range_value_t<R>> std::vector<DdimCoefficients> ddim_coefficients(
    const R& transitions) {
  std::vector<DdimCoefficients> c;
  for (const auto& tr : transitions)
    c.push_back(
        {std::sqrt(static_cast<double>(tr.alpha_prev)), static_cast<double>(tr.dir), static_cast<double>(tr.std)});
  return c;
}

}  // namespace spo::diffusion::cuda_kernels

// The device forms of the per-sample arithmetic of diffusion::Ddim, in namespace spo: Ddim calls them unqualified
// with spo::Tensor and spo::SampleWeights arguments, so argument-dependent lookup finds them there.
namespace spo {

/// out[b, i] = w_b.a * a[b, i] + w_b.b * b[b, i], in double, rounded to T once; a, b, out: [B, ...] with one weight
/// pair per batch element. out may alias a or b (element i reads its inputs before writing).
template <Scalar T>
void per_sample_affine(TensorView<const T, cuda> a, TensorView<const T, cuda> b, std::span<const SampleWeights> w,
                       TensorView<T, cuda> out);

/// log N(x_b | mu_b, stddev_b^2 I) averaged over the non-batch axes, per batch element [B] (the DDPO/SPO step
/// log-prob convention: mean_CHW[-(x - mu)^2 / (2 stddev^2) - log stddev - log sqrt(2 pi)]); x, mu: [B, ...].
template <Scalar T>
Tensor<T, cuda> gaussian_log_prob(const Tensor<T, cuda>& x, const Tensor<T, cuda>& mu, std::span<const double> stddev);

/// x <- min(max(x, lo), hi) elementwise.
template <Scalar T>
void clamp_inplace(Tensor<T, cuda>& x, T lo, T hi);

/// mean over the non-batch axes of (x - y)^2 per batch element, summed in double on the device in a fixed order
/// (the reduction of gaussian_log_prob) and returned to the host as B doubles; x, y: [B, ...].
template <Scalar T>
std::vector<double> per_sample_mean_squared_error(const Tensor<T, cuda>& x, const Tensor<T, cuda>& y);

/// out[b, i] = g_b (x[b, i] - y[b, i]) as the affine combination g_b x - g_b y (per_sample_affine: double, rounded
/// to T once); x, y: [B, ...], g: B weights.
template <Scalar T>
Tensor<T, cuda> per_sample_scaled_difference(const Tensor<T, cuda>& x, const Tensor<T, cuda>& y,
                                             std::span<const double> g);

}  // namespace spo

namespace spo::diffusion {

/// mu = sqrt(abar_prev) x0 + dir * eps per batch element on the device; x0, eps: [B, ...].
template <Scalar T>
Tensor<T, cuda> transition_mean(const Tensor<T, cuda>& x0, const Tensor<T, cuda>& eps,
                                std::span<const cuda_kernels::DdimCoefficients> coefficients);

/// log p(x_prev | x_t) [B] given the transition mean mu on the device; x_prev, mu: [B, ...].
template <Scalar T>
Tensor<T, cuda> transition_log_prob(const Tensor<T, cuda>& x_prev, const Tensor<T, cuda>& mu,
                                    std::span<const cuda_kernels::DdimCoefficients> coefficients);

}  // namespace spo::diffusion
