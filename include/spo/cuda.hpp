// SPDX-License-Identifier: MIT
/// @brief The spo::cuda device for host code: device tensors and transfers, the layer specialisations on cuda
/// (cuBLAS, cuDNN and spo's kernels from the spo_cuda_kernels library), and parameter transfer between devices.
/// With these included, the model templates (model/, e.g. UNet2DCondition<float, cuda>) run on the GPU.
#pragma once

#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/cuda/allocator.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/cuda/ddim.hpp"
#include "spo/tensor/cuda/optim.hpp"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/cudnn.hpp"
#include "spo/nn/cuda/activation.hpp"
#include "spo/nn/cuda/attention.hpp"
#include "spo/nn/cuda/conv2d.hpp"
#include "spo/nn/cuda/group_norm.hpp"
#include "spo/nn/cuda/layer_norm.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/cuda/lora.hpp"
#include "spo/nn/cuda/pooling.hpp"
#include "spo/nn/cuda/timestep_embedding.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/cuda/upsample.hpp"
#include "spo/spm/cuda/preference_network.hpp"
