// SPDX-License-Identifier: MIT
// Instantiates tensor/cuda/attention.hpp (attention forward and backward) for float, double, half and bfloat16.
#include "spo/tensor/cuda/attention.cuh"

namespace spo::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                                        \
  template void attention_forward<T>(const AttentionShape&, const T*, const T*, const T*, T*, compute_type_t<T>*, \
                                     compute_type_t<T>, cudaStream_t);                                            \
  template void attention_backward<T>(const AttentionShape&, const T*, const T*, const T*, const T*, const T*,    \
                                      const compute_type_t<T>*, T*, T*, T*, compute_type_t<T>, cudaStream_t);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
SPO_INSTANTIATE(half)
SPO_INSTANTIATE(bfloat16)
#undef SPO_INSTANTIATE
}  // namespace spo::cuda_kernels
