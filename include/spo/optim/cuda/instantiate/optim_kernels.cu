// SPDX-License-Identifier: MIT
// Instantiates optim/cuda/optim_kernels.hpp (AdamW update, sums of squares, in-place scale) for float and double.
#include "spo/optim/cuda/optim_kernels.cuh"

namespace spo {
#define SPO_INSTANTIATE(T)                                                                           \
  template void optim::cuda_kernels::adamw_update<T>(TensorView<T, cuda>, TensorView<const T, cuda>, \
                                                     TensorView<T, cuda>, TensorView<T, cuda>,       \
                                                     const optim::cuda_kernels::AdamWScalars<T>&);   \
  template double sum_of_squares<T>(std::span<const TensorView<const T, cuda>>);                     \
  template void scale_inplace<T>(TensorView<T, cuda>, T);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
#undef SPO_INSTANTIATE
}  // namespace spo
