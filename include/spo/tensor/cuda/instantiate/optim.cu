// SPDX-License-Identifier: MIT
// Instantiates tensor/cuda/optim.hpp (AdamW update, sums of squares, in-place scale) for float and double.
#include "spo/tensor/cuda/optim.cuh"

namespace spo {
#define SPO_INSTANTIATE(T)                                                                                   \
  template void cuda_kernels::adamw_update<T>(TensorView<T, cuda>, TensorView<const T, cuda>, TensorView<T, cuda>, \
                                              TensorView<T, cuda>, const cuda_kernels::AdamWScalars<T>&);          \
  template double sum_of_squares<T>(std::span<const TensorView<const T, cuda>>);                            \
  template void scale_inplace<T>(TensorView<T, cuda>, T);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
#undef SPO_INSTANTIATE
}  // namespace spo
