// SPDX-License-Identifier: MIT
/// @brief Precision policies of training, chosen by type in an experiment: fp32, tf32, bf16, fp16.
#pragma once

#include <concepts>
#include <string_view>

#include "spo/core/half.hpp"

namespace spo::precision {

/*!
  WHAT THIS REPRESENTS
    How a training run uses number formats. storage: the scalar of the model's weights and activations (frozen
    weights and the network's passes); trainable 16-bit weights get FP32 master copies and FP32 optimizer state
    (optim::MasterWeights), and the DDIM log-probs, their means, the ratios and the loss are computed in
    compute_type_t<storage>. allow_tf32: FP32 products may run on TF32 tensor cores (spo::cuda). loss_scaling:
    dynamic loss scaling (optim::DynamicLossScaler) guards the backward, as torch.cuda.amp.GradScaler does for fp16;
    bf16 has FP32's exponent range and needs none.
!*/
template <class P>
concept Policy = StorageScalar<typename P::storage> && requires {
  { P::allow_tf32 } -> std::convertible_to<bool>;
  { P::loss_scaling } -> std::convertible_to<bool>;
  { P::name } -> std::convertible_to<std::string_view>;
};

/// A policy's three choices; each policy below adds its name.
template <StorageScalar Storage, bool AllowTf32, bool LossScaling>
struct basic_policy {
  using storage = Storage;
  static constexpr bool allow_tf32 = AllowTf32;
  static constexpr bool loss_scaling = LossScaling;
};

/// Strict FP32 (the default; results within FP32 rounding of the CPU).
struct fp32 : basic_policy<float, false, false> {
  static constexpr std::string_view name = "fp32";
};

/// FP32 storage, products on TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32).
struct tf32 : basic_policy<float, true, false> {
  static constexpr std::string_view name = "tf32";
};

/// bfloat16 weights and activations, FP32 masters, no loss scaling.
struct bf16 : basic_policy<bfloat16, false, false> {
  static constexpr std::string_view name = "bf16";
};

/// IEEE half weights and activations, FP32 masters, dynamic loss scaling (the official SPO recipe's fp16).
struct fp16 : basic_policy<half, false, true> {
  static constexpr std::string_view name = "fp16";
};

static_assert(Policy<fp32> && Policy<tf32> && Policy<bf16> && Policy<fp16>);

}  // namespace spo::precision

namespace spo {

/// Sets the process-wide modes policy P asks of device D before a run: the CPU has none (TF32 is a mode of
/// spo::cuda's tensor cores); spo::cuda's overload (optim/cuda/precision_modes.hpp) sets TF32 on or off.
template <precision::Policy P>
void set_precision_modes(cpu) {
  static_assert(!P::allow_tf32, "precision::tf32 runs on spo::cuda only (TF32 tensor cores)");
}

}  // namespace spo
