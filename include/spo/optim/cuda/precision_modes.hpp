// SPDX-License-Identifier: MIT
/// @brief spo::cuda's precision modes: what a precision policy switches on the device before a run.
#pragma once

#include "spo/optim/precision.hpp"
#include "spo/tensor/cuda/runtime.hpp"

namespace spo {

/// TF32 tensor cores for FP32 products exactly when P allows them (precision::tf32); every other policy runs FP32
/// products in full FP32, and its 16-bit products accumulate in FP32 regardless.
template <precision::Policy P>
void set_precision_modes(cuda) {
  cuda_runtime::set_allow_tf32(P::allow_tf32);
}

}  // namespace spo
