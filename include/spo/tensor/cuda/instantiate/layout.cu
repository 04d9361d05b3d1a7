// SPDX-License-Identifier: MIT
// Instantiates the launchers of tensor/cuda/layout.hpp for float, double, half and bfloat16.
#include "spo/tensor/cuda/layout.cuh"

namespace spo::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                        \
  template void concat_rows<T>(const T*, const T*, T*, std::int64_t, std::int64_t, std::int64_t); \
  template void split_rows<T>(const T*, T*, T*, std::int64_t, std::int64_t, std::int64_t);        \
  template void batched_transpose<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t);     \
  template void add_plane_bias<T>(T*, const T*, std::int64_t, std::int64_t);                      \
  template void sum_planes<T>(const T*, T*, std::int64_t, std::int64_t, compute_type_t<T>);       \
  template void broadcast_planes<T>(const T*, T*, std::int64_t, std::int64_t, compute_type_t<T>);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
SPO_INSTANTIATE(half)
SPO_INSTANTIATE(bfloat16)
#undef SPO_INSTANTIATE
}  // namespace spo::cuda_kernels
