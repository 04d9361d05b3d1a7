// SPDX-License-Identifier: MIT
/// @brief Per-sample weights of batched affine combinations (out_b = a_w a_b + b_w b_b), the building block of the
/// DDIM arithmetic on devices whose kernels take one weight pair per batch element.
#pragma once

namespace spo {

/// The weights of out_b = a * in_a_b + b * in_b_b for one batch element.
struct SampleWeights {
  double a = 0, b = 0;
};

}  // namespace spo
