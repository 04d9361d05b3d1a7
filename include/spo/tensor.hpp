// SPDX-License-Identifier: MIT
/// @brief Tensors: shapes, the caching allocator, Tensor/TensorView, Eigen maps, host ops and CPU kernels.
#pragma once

#include "spo/tensor/allocator.hpp"
#include "spo/tensor/cpu/attention_kernels.hpp"
#include "spo/tensor/cpu/conv2d.hpp"
#include "spo/tensor/cpu/dnnl_context.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/layout.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/per_sample.hpp"
#include "spo/tensor/shape.hpp"
#include "spo/tensor/tensor.hpp"
#include "spo/tensor/transfer.hpp"
