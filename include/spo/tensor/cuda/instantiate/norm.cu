// SPDX-License-Identifier: MIT
// Instantiates the GroupNorm / LayerNorm launchers of tensor/cuda/norm.hpp for float and double.
#include "spo/tensor/cuda/norm.cuh"

namespace spo::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                                             \
  template void group_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, std::int64_t, std::int64_t,            \
                                      std::int64_t, std::int64_t, double);                                             \
  template void group_norm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, T*, std::int64_t, std::int64_t, \
                                       std::int64_t, std::int64_t);                                                    \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, std::int64_t, std::int64_t, double);   \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, T*, std::int64_t, std::int64_t);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
#undef SPO_INSTANTIATE
}  // namespace spo::cuda_kernels
