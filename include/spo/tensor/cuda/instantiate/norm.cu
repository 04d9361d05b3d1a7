// SPDX-License-Identifier: MIT
// Instantiates the GroupNorm / LayerNorm launchers of tensor/cuda/norm.hpp for float, double, half and bfloat16.
#include "spo/tensor/cuda/norm.cuh"

namespace spo::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                                    \
  template void group_norm_forward<T>(const T*, const T*, const T*, T*, T*, compute_type_t<T>*, std::int64_t, \
                                      std::int64_t, std::int64_t, std::int64_t, double);                      \
  template void group_norm_backward<T>(const T*, const T*, const compute_type_t<T>*, const T*, T*, T*, T*,    \
                                       std::int64_t, std::int64_t, std::int64_t, std::int64_t);               \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, compute_type_t<T>*, std::int64_t, \
                                      std::int64_t, double);                                                  \
  template void layer_norm_backward<T>(const T*, const T*, const compute_type_t<T>*, const T*, T*, T*, T*,    \
                                       std::int64_t, std::int64_t);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
SPO_INSTANTIATE(half)
SPO_INSTANTIATE(bfloat16)
#undef SPO_INSTANTIATE
}  // namespace spo::cuda_kernels
