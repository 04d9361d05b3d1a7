// SPDX-License-Identifier: MIT
// Instantiates tensor/cuda/bias.hpp (row broadcast, column sum, channel bias and its sum) for float, double, half and
// bfloat16.
#include "spo/tensor/cuda/bias.cuh"

namespace spo::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                                 \
  template void broadcast_rows<T>(std::int64_t, std::int64_t, const T*, T*, cudaStream_t);                 \
  template void column_sum_accumulate<T>(std::int64_t, std::int64_t, const T*, T*, cudaStream_t);          \
  template void add_channel_bias<T>(std::int64_t, std::int64_t, std::int64_t, const T*, T*, cudaStream_t); \
  template void channel_sum_accumulate<T>(std::int64_t, std::int64_t, std::int64_t, const T*, T*, cudaStream_t);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
SPO_INSTANTIATE(half)
SPO_INSTANTIATE(bfloat16)
#undef SPO_INSTANTIATE
}  // namespace spo::cuda_kernels
