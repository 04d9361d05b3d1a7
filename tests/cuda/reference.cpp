// SPDX-License-Identifier: MIT
#include "reference.hpp"

#include <span>

#include "spo/diffusion/beta_schedule.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/nn/activation.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::cuda_test {

void cpu_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
              std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  cpu_kernels::gemm<float>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void cpu_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a,
              std::int64_t lda, const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc) {
  cpu_kernels::gemm<double>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cpu_silu_forward(const float* x, float* y, std::int64_t n) {
  cpu_kernels::activation_forward<nn::SiLUFunction, float>(x, y, n);
}
void cpu_silu_forward(const double* x, double* y, std::int64_t n) {
  cpu_kernels::activation_forward<nn::SiLUFunction, double>(x, y, n);
}
void cpu_silu_backward(const float* x, const float* dy, float* dx, std::int64_t n) {
  cpu_kernels::activation_backward<nn::SiLUFunction, float>(x, dy, dx, n);
}
void cpu_silu_backward(const double* x, const double* dy, double* dx, std::int64_t n) {
  cpu_kernels::activation_backward<nn::SiLUFunction, double>(x, dy, dx, n);
}

void cpu_axpy(float alpha, const Tensor<float, cpu>& x, Tensor<float, cpu>& y) {
  axpy<float>(alpha, x.view(), y.view());
}
void cpu_axpy(double alpha, const Tensor<double, cpu>& x, Tensor<double, cpu>& y) {
  axpy<double>(alpha, x.view(), y.view());
}
void cpu_scale(float alpha, Tensor<float, cpu>& y) { scale<float>(alpha, y.view()); }
void cpu_scale(double alpha, Tensor<double, cpu>& y) { scale<double>(alpha, y.view()); }
void cpu_fill_normal(Tensor<float, cpu>& t, Generator& gen, float mean, float stddev) {
  fill_normal<float>(t.view(), gen, mean, stddev);
}
void cpu_fill_normal(Tensor<double, cpu>& t, Generator& gen, double mean, double stddev) {
  fill_normal<double>(t.view(), gen, mean, stddev);
}
void cpu_fill_uniform(Tensor<float, cpu>& t, Generator& gen, float lo, float hi) {
  fill_uniform<float>(t.view(), gen, lo, hi);
}
void cpu_fill_uniform(Tensor<double, cpu>& t, Generator& gen, double lo, double hi) {
  fill_uniform<double>(t.view(), gen, lo, hi);
}

namespace {

template <class T>
DdimCase<T> ddim_case(const Shape& shape, double eta, std::uint64_t seed) {
  using namespace diffusion;
  Ddim<ScaledLinearBetas, EpsilonPrediction> ddim(ScaledLinearBetas{}, DdimConfig{1000, TimestepSpacing::leading, 1});
  ddim.set_timesteps(20);
  const std::int64_t batch = shape[0];
  std::vector<std::int64_t> t;
  const auto& steps = ddim.timesteps();
  for (std::int64_t b = 0; b < batch; ++b)
    t.push_back(steps[steps.size() - 1 - static_cast<std::size_t>(b) % steps.size()]);
  Generator g{seed, 0};
  const auto u = randn<T>(shape, g);    // shape
  const auto x_t = randn<T>(shape, g);  // shape
  auto pred = ddim.predict(u, x_t, t);
  const auto tr = ddim.transitions(t, eta);
  DdimCase<T> c;
  c.mu = ddim.mean(pred, tr);                                      // shape
  c.x_prev = ddim.sample_children(c.mu, tr, 1, g).reshape(shape);  // shape
  c.log_prob = ddim.log_prob(u, t, x_t, c.x_prev, eta);            // [B]
  c.x0 = std::move(pred.x0);
  c.eps = std::move(pred.eps);
  for (const auto& r : tr) c.transitions.push_back({r.alpha_prev, r.dir, r.std});
  return c;
}

}  // namespace

DdimCase<float> cpu_ddim_case_float(const Shape& shape, double eta, std::uint64_t seed) {
  return ddim_case<float>(shape, eta, seed);
}
DdimCase<double> cpu_ddim_case_double(const Shape& shape, double eta, std::uint64_t seed) {
  return ddim_case<double>(shape, eta, seed);
}

}  // namespace spo::cuda_test
