// SPDX-License-Identifier: MIT
/// @brief Small helpers of the CPU layer tests: random normal tensors and bitwise comparison.
#pragma once

#include <cstring>

#include "spo/core/rng.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::test_support {

/// A float tensor of `shape` drawn from N(mean, stddev^2) by gen.
inline Tensor<float, cpu> random_normal(const Shape& shape, Generator& gen, float mean = 0.f, float stddev = 1.f) {
  Tensor<float, cpu> x(shape);
  fill_normal(x.view(), gen, mean, stddev);
  return x;
}

/// a and b have the same shape and the same bits.
inline bool bitwise_equal(const Tensor<float, cpu>& a, const Tensor<float, cpu>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

}  // namespace spo::test_support
