// SPDX-License-Identifier: MIT
// Instantiates diffusion/cuda/ddim_kernels.hpp (transition mean and log-probability, per-sample affine, clamp,
// per-sample squared error and scaled difference) for float and double.
#include "spo/diffusion/cuda/ddim_kernels.cuh"

namespace spo {
#define SPO_INSTANTIATE(T)                                                                                            \
  template void per_sample_affine<T>(TensorView<const T, cuda>, TensorView<const T, cuda>,                            \
                                     std::span<const SampleWeights>, TensorView<T, cuda>);                            \
  template Tensor<T, cuda> gaussian_log_prob<T>(const Tensor<T, cuda>&, const Tensor<T, cuda>&,                       \
                                                std::span<const double>);                                             \
  template void clamp_inplace<T>(Tensor<T, cuda>&, T, T);                                                             \
  template std::vector<double> per_sample_mean_squared_error<T>(const Tensor<T, cuda>&, const Tensor<T, cuda>&);      \
  template Tensor<T, cuda> per_sample_scaled_difference<T>(const Tensor<T, cuda>&, const Tensor<T, cuda>&,            \
                                                           std::span<const double>);                                  \
  template Tensor<T, cuda> diffusion::transition_mean<T>(const Tensor<T, cuda>&, const Tensor<T, cuda>&,              \
                                                         std::span<const diffusion::cuda_kernels::DdimCoefficients>); \
  template Tensor<T, cuda> diffusion::transition_log_prob<T>(                                                         \
      const Tensor<T, cuda>&, const Tensor<T, cuda>&, std::span<const diffusion::cuda_kernels::DdimCoefficients>);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
#undef SPO_INSTANTIATE
}  // namespace spo
