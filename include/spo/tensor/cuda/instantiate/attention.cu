// SPDX-License-Identifier: MIT
// Instantiates tensor/cuda/attention.hpp (attention forward and backward) for float and double.
#include "spo/tensor/cuda/attention.cuh"

namespace spo::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                                          \
  template void attention_forward<T>(const AttentionShape&, const T*, const T*, const T*, T*, T*, T, cudaStream_t); \
  template void attention_backward<T>(const AttentionShape&, const T*, const T*, const T*, const T*, const T*,      \
                                      const T*, T*, T*, T*, T, cudaStream_t);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
#undef SPO_INSTANTIATE
}  // namespace spo::cuda_kernels
