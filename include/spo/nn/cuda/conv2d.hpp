// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::Conv2d (conv2d_forward, conv2d_backward and Conv2dState<T, cuda>; contracts in
/// nn/conv2d.hpp) through cuDNN's legacy convolution API (tensor/cuda/cudnn.hpp).
#pragma once

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/tensor/cpu/conv2d.hpp"
#include "spo/tensor/cuda/cudnn.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// cuDNN's copy of a convolution geometry (the same fields as cpu_kernels::Conv2dShape).
inline Conv2dGeometry conv2d_geometry(const cpu_kernels::Conv2dShape& s) {
  return {s.batch,    s.in_channels, s.height,   s.width, s.out_channels, s.kernel_h,
          s.kernel_w, s.stride_h,    s.stride_w, s.pad_h, s.pad_w};
}

}  // namespace spo::cuda_kernels

namespace spo::inline kernels {

/// The device keeps a copy of the input only for the weight gradient.
template <StorageScalar T>
struct Conv2dState<T, cuda> {
  Tensor<T, cuda> x;  // [B, Cin, H, W], or empty when the weight gradient was not asked for

  void clear() { x = Tensor<T, cuda>(); }
};

/// FP32 convolutions use TF32 only under cuda_runtime::allow_tf32(); half and bfloat16 compute in FP32.
template <StorageScalar T>
void conv2d_forward(const cpu_kernels::Conv2dShape& s, const Tensor<T, cuda>& x, const Tensor<T, cuda>& w,
                    const Tensor<T, cuda>* b, Tensor<T, cuda>& y, Conv2dState<T, cuda>* state, bool weight_grad) {
  cuda_kernels::conv2d_forward<T>(cuda_kernels::conv2d_geometry(s), x.data(), w.data(), b ? b->data() : nullptr,
                                  y.data());
  if (state && weight_grad) state->x = x;  // [B, Cin, H, W]
}

template <StorageScalar T>
void conv2d_backward(const cpu_kernels::Conv2dShape& s, const Conv2dState<T, cuda>& state, const Tensor<T, cuda>& w,
                     const Tensor<T, cuda>& dy, Tensor<T, cuda>& dx, Tensor<T, cuda>* dw, Tensor<T, cuda>* db) {
  const auto g = cuda_kernels::conv2d_geometry(s);
  cuda_kernels::conv2d_backward_data<T>(g, w.data(), dy.data(), dx.data());
  if (dw) {
    SPO_CHECK(state.x.shape() == (Shape{s.batch, s.in_channels, s.height, s.width}),
              "Conv2d::backward: the weight was frozen during the forward pass, so its gradient cannot be formed");
    cuda_kernels::conv2d_backward_filter<T>(g, state.x.data(), dy.data(), dw->data(), 1);
  }
  if (db) cuda_kernels::conv2d_backward_bias<T>(g, dy.data(), db->data());
}

}  // namespace spo::inline kernels
