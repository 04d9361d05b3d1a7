// SPDX-License-Identifier: MIT
// Instantiates tensor/cuda/ops.hpp (fill, random fills, axpy, scale) for float and double, and the conversions.
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/rng.cuh"

namespace spo {
#define SPO_INSTANTIATE(T)                                                  \
  template void fill_normal<T>(TensorView<T, cuda>, Generator&, T, T);      \
  template void fill_uniform<T>(TensorView<T, cuda>, Generator&, T, T);     \
  template void axpy<T>(T, TensorView<const T, cuda>, TensorView<T, cuda>); \
  template void scale<T>(T, TensorView<T, cuda>);                           \
  template void fill<T>(TensorView<T, cuda>, T);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
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
