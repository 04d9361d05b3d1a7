// SPDX-License-Identifier: MIT
/// @brief The spo::cuda kernels of nn::Attention (attention_forward, attention_backward, accumulate_sum; contracts in
/// nn/attention.hpp): cuBLAS strided-batched products and row-softmax kernels (tensor/cuda/attention.hpp) that read
/// the heads straight out of the projections' [B, tokens, H d] outputs and never keep the probabilities. Causal
/// shapes (AttentionShape::causal) mask the scores of later keys in the row kernels.
#pragma once

#include "spo/core/device.hpp"
#include "spo/nn/attention.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/tensor/cpu/attention_kernels.hpp"
#include "spo/tensor/cuda/attention.hpp"
#include "spo/tensor/cuda/kernels.hpp"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

template <StorageScalar T>
void attention_forward(const cpu_kernels::AttentionShape& s, const Tensor<T, cuda>& q, const Tensor<T, cuda>& k,
                       const Tensor<T, cuda>& v, Tensor<T, cuda>& o, Tensor<compute_type_t<T>, cuda>& lse,
                       compute_type_t<T> scale) {
  cuda_kernels::attention_forward<T>({s.batch, s.heads, s.n, s.m, s.d, s.causal}, q.data(), k.data(), v.data(),
                                     o.data(), lse.data(), scale);
}

template <StorageScalar T>
void attention_backward(const cpu_kernels::AttentionShape& s, const Tensor<T, cuda>& q, const Tensor<T, cuda>& k,
                        const Tensor<T, cuda>& v, const Tensor<T, cuda>& o, const Tensor<T, cuda>& dout,
                        const Tensor<compute_type_t<T>, cuda>& lse, Tensor<T, cuda>& dq, Tensor<T, cuda>& dk,
                        Tensor<T, cuda>& dv, compute_type_t<T> scale) {
  cuda_kernels::attention_backward<T>({s.batch, s.heads, s.n, s.m, s.d, s.causal}, q.data(), k.data(), v.data(),
                                      o.data(), dout.data(), lse.data(), dq.data(), dk.data(), dv.data(), scale);
}

template <StorageScalar T>
void accumulate_sum(Tensor<T, cuda>& acc, const Tensor<T, cuda>& a, const Tensor<T, cuda>& b) {
  axpy<T>(1, a.view(), acc.view());
  axpy<T>(1, b.view(), acc.view());
}

}  // namespace spo::inline kernels
