// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::Linear and nn::LoRA: the bias kernels (broadcast_rows, column_sum_accumulate)
/// here, gemm in tensor/cuda/gemm.hpp (cuBLAS) and the random fills in tensor/cuda/ops.hpp.
#pragma once

#include <cstdint>

#include "spo/core/device.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/lora.hpp"
#include "spo/tensor/cuda/bias.hpp"
#include "spo/tensor/cuda/gemm.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

/// broadcast_rows on spo::cuda (contract in nn/linear.hpp): one grid-stride pass over y.
template <StorageScalar T>
void broadcast_rows(const Tensor<T, cuda>& b, Tensor<T, cuda>& y) {
  const std::int64_t cols = b.numel(), rows = cols ? y.numel() / cols : 0;
  cuda_kernels::broadcast_rows<T>(rows, cols, b.data(), y.data());
}

/// column_sum_accumulate on spo::cuda (contract in nn/linear.hpp): partial sums over fixed row ranges, added in a
/// fixed order (no atomics), so the result does not depend on scheduling.
template <StorageScalar T>
void column_sum_accumulate(const Tensor<T, cuda>& x, Tensor<T, cuda>& db) {
  const std::int64_t cols = db.numel(), rows = cols ? x.numel() / cols : 0;
  cuda_kernels::column_sum_accumulate<T>(rows, cols, x.data(), db.data());
}

}  // namespace spo::inline kernels
