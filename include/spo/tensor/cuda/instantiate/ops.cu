// SPDX-License-Identifier: MIT
// Instantiates tensor/cuda/ops.hpp: the random fills for float and double, axpy, scale and fill for float, double,
// half and bfloat16, and the conversions.
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/rng.cuh"

namespace spo {
#define SPO_INSTANTIATE_RANDOM(T)                                      \
  template void fill_normal<T>(TensorView<T, cuda>, Generator&, T, T); \
  template void fill_uniform<T>(TensorView<T, cuda>, Generator&, T, T);
SPO_INSTANTIATE_RANDOM(float)
SPO_INSTANTIATE_RANDOM(double)
#undef SPO_INSTANTIATE_RANDOM
#define SPO_INSTANTIATE(T)                                                                  \
  template void axpy<T>(compute_type_t<T>, TensorView<const T, cuda>, TensorView<T, cuda>); \
  template void scale<T>(compute_type_t<T>, TensorView<T, cuda>);                           \
  template void fill<T>(TensorView<T, cuda>, T);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
SPO_INSTANTIATE(half)
SPO_INSTANTIATE(bfloat16)
#undef SPO_INSTANTIATE
#define SPO_INSTANTIATE_CONVERT(To, From) \
  template void convert<To, From>(TensorView<const From, cuda>, TensorView<To, cuda>);
SPO_INSTANTIATE_CONVERT(half, float)
SPO_INSTANTIATE_CONVERT(float, half)
SPO_INSTANTIATE_CONVERT(bfloat16, float)
SPO_INSTANTIATE_CONVERT(float, bfloat16)
SPO_INSTANTIATE_CONVERT(float, double)
SPO_INSTANTIATE_CONVERT(double, float)
#undef SPO_INSTANTIATE_CONVERT
}  // namespace spo
