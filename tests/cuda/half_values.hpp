// SPDX-License-Identifier: MIT
/// @brief Inputs of the 16-bit parity tests: values exactly representable in half or bfloat16, and their unit
/// roundoff.
#pragma once

#include <concepts>

#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_test {

/// u16: half's 2^-11, bfloat16's 2^-8 (one rounding to nearest is within u16 |x|).
template <class H>
constexpr double unit_roundoff() {
  return std::same_as<H, spo::half> ? 0x1p-11 : 0x1p-8;
}

/// N(mean, stddev^2) draws rounded through H, as To (exactly representable in H, so both sides of a test start from
/// the same values).
template <class H, class To = double>
Tensor<To, cpu> representable(const Shape& s, Generator& gen, float stddev = 1.f, float mean = 0.f) {
  auto t = Tensor<float, cpu>::uninitialized(s);
  fill_normal(t.view(), gen, mean, stddev);
  return cast<To>(cast<H>(t));
}

}  // namespace spo::cuda_test
