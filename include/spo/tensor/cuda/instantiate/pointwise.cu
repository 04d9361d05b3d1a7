// SPDX-License-Identifier: MIT
// Instantiates the pointwise launchers of tensor/cuda/pointwise.hpp for float, double, half and bfloat16.
#include "spo/tensor/cuda/pointwise.cuh"

namespace spo::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                                \
  template void pointwise_forward<T>(PointwiseFunction, const T*, T*, T*, std::int64_t);                  \
  template void pointwise_backward<T>(PointwiseFunction, const T*, const T*, T*, std::int64_t);           \
  template void gated_forward<T>(PointwiseFunction, const T*, T*, std::int64_t, std::int64_t);            \
  template void gated_backward<T>(PointwiseFunction, const T*, const T*, T*, std::int64_t, std::int64_t); \
  template void upsample_nearest2x_forward<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t);    \
  template void upsample_nearest2x_backward<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t);   \
  template void sinusoidal_embedding_forward<T>(const T*, T*, std::int64_t, const SinusoidParams&);       \
  template void sinusoidal_embedding_backward<T>(const T*, const T*, T*, std::int64_t, const SinusoidParams&);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
SPO_INSTANTIATE(half)
SPO_INSTANTIATE(bfloat16)
#undef SPO_INSTANTIATE
}  // namespace spo::cuda_kernels
