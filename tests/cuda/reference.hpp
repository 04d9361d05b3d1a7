// SPDX-License-Identifier: MIT
/// @brief The CPU implementations that the CUDA parity tests compare against, behind a host-only interface.
///
/// They are compiled by the C++ compiler in reference.cpp: nvcc 13 in C++20 mode stops with an internal error on
/// oneDNN's dnnl.hpp (reached through tensor/cpu/gemm.hpp and nn/activation.hpp), and Eigen need not enter .cu files.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "spo/core/rng.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_test {

/// spo::cpu_kernels::gemm (oneDNN for float, Eigen for double).
void cpu_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
              std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);
void cpu_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a,
              std::int64_t lda, const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc);

/// cpu_kernels::activation_forward / activation_backward with nn::SiLUFunction.
void cpu_silu_forward(const float* x, float* y, std::int64_t n);
void cpu_silu_forward(const double* x, double* y, std::int64_t n);
void cpu_silu_backward(const float* x, const float* dy, float* dx, std::int64_t n);
void cpu_silu_backward(const double* x, const double* dy, double* dx, std::int64_t n);

/// spo::axpy, spo::fill_normal, spo::fill_uniform of tensor/ops.hpp.
void cpu_axpy(float alpha, const Tensor<float, cpu>& x, Tensor<float, cpu>& y);
void cpu_axpy(double alpha, const Tensor<double, cpu>& x, Tensor<double, cpu>& y);
void cpu_scale(float alpha, Tensor<float, cpu>& y);
void cpu_scale(double alpha, Tensor<double, cpu>& y);
void cpu_fill_normal(Tensor<float, cpu>& t, Generator& gen, float mean, float stddev);
void cpu_fill_normal(Tensor<double, cpu>& t, Generator& gen, double mean, double stddev);
void cpu_fill_uniform(Tensor<float, cpu>& t, Generator& gen, float lo, float hi);
void cpu_fill_uniform(Tensor<double, cpu>& t, Generator& gen, double lo, double hi);

/// The fields of diffusion::Transition that the device kernels take.
struct TransitionValues {
  double alpha_prev = 0, dir = 0, std = 0;
};

/// One DDIM log-prob case computed on the CPU by diffusion::Ddim<ScaledLinearBetas, EpsilonPrediction> (20 steps,
/// eta, clamped previous timestep): random model output u and x_t, per-batch timesteps cycling through the
/// schedule (the last one clamps t_prev to 0), x0 and eps = predict(u, x_t, t), mu = mean(x0, eps),
/// x_prev = one child of mu, log_prob = Ddim::log_prob(u, t, x_t, x_prev, eta).
template <class T>
struct DdimCase {
  Tensor<T, cpu> x0, eps, mu, x_prev, log_prob;
  std::vector<TransitionValues> transitions;
};
DdimCase<float> cpu_ddim_case_float(const Shape& shape, double eta, std::uint64_t seed);
DdimCase<double> cpu_ddim_case_double(const Shape& shape, double eta, std::uint64_t seed);

/// Largest |a_i - b_i| / (abs_tol + rel_tol * |b_i|) over the elements: <= 1 means every element is within
/// abs_tol + rel_tol |b_i| of b_i. NaN anywhere gives +inf.
template <class T>
double worst_ratio(const Tensor<T, cpu>& a, const Tensor<T, cpu>& b, double abs_tol, double rel_tol) {
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    const double r = d / (abs_tol + rel_tol * std::abs(static_cast<double>(b[i])));
    if (!(r == r)) return INFINITY;
    worst = std::max(worst, r);
  }
  return worst;
}

/// max |a - b| / (tol max |b|) over the elements: <= 1 means every element is within tol of the tensor's largest
/// CPU magnitude (the bound of whole-model comparisons, where rounding scales with the tensor, not the element).
/// Shapes must match; NaN anywhere gives +inf.
template <class T>
double scaled_error(const Tensor<T, cpu>& a, const Tensor<T, cpu>& b, double tol) {
  if (!(a.shape() == b.shape())) return INFINITY;
  double scale = 1e-30, worst = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  for (std::int64_t i = 0; i < b.numel(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(d == d)) return INFINITY;
    worst = std::max(worst, d / (scale * tol));
  }
  return worst;
}

/// The whole-model bound of scaled_error: 1e-10 in double, 2e-3 in float (chains of re-associated reductions).
template <class T>
double model_tolerance() {
  return std::is_same_v<T, double> ? 1e-10 : 2e-3;
}

}  // namespace spo::cuda_test
