// SPDX-License-Identifier: MIT
/// @brief The spo::cuda device for host code: device tensors and transfers, the spo::cuda overloads of every device
/// kernel (layers, DDIM, optimizer and preference-network operations; cuBLAS, cuDNN and spo's kernels from the
/// spo_cuda_kernels library), and parameter transfer between devices. With these included, the device-generic
/// templates (nn/, model/, spm/, diffusion/, optim/, e.g. UNet2DCondition<float, cuda>) run on the GPU.
#pragma once

#include "spo/diffusion/cuda/ddim_kernels.hpp"
#include "spo/nn/cuda/activation.hpp"
#include "spo/nn/cuda/attention.hpp"
#include "spo/nn/cuda/conv2d.hpp"
#include "spo/nn/cuda/group_norm.hpp"
#include "spo/nn/cuda/layer_norm.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/cuda/pooling.hpp"
#include "spo/nn/cuda/timestep_embedding.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/cuda/upsample.hpp"
#include "spo/optim/cuda/optim_kernels.hpp"
#include "spo/optim/cuda/precision_modes.hpp"
#include "spo/spm/cuda/spm_kernels.hpp"
#include "spo/tensor/cuda/allocator.hpp"
#include "spo/tensor/cuda/cudnn.hpp"
#include "spo/tensor/cuda/gemm.hpp"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/cuda/runtime.hpp"
