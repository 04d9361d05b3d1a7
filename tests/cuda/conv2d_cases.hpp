// SPDX-License-Identifier: MIT
/// @brief The convolution geometries of the device parity tests (float, double and 16-bit).
#pragma once

#include <cstdint>
#include <vector>

#include "spo/nn/conv2d.hpp"

namespace spo::cuda_test {

struct Conv2dCase {
  const char* name;
  std::int64_t batch, in, out, height, width;
  nn::Conv2dOptions opt;
};

/// Strides 1 and 2, odd sizes, 1x1, non-square kernels with asymmetric strides and padding, with and without bias.
inline const std::vector<Conv2dCase>& conv2d_cases() {
  static const std::vector<Conv2dCase> cases = {
      {"3x3 pad 1 stride 1", 1, 3, 5, 9, 7, {{3, 3}, {1, 1}, {1, 1}, true}},
      {"3x3 pad 1 stride 1, batch 3, no bias", 3, 4, 6, 8, 8, {{3, 3}, {1, 1}, {1, 1}, false}},
      {"3x3 pad 1 stride 2 (downsampler), odd size", 3, 6, 6, 9, 11, {{3, 3}, {2, 2}, {1, 1}, true}},
      {"3x3 pad 1 stride 2, batch 1, no bias", 1, 5, 4, 8, 8, {{3, 3}, {2, 2}, {1, 1}, false}},
      {"1x1", 3, 7, 5, 6, 5, {{1, 1}, {1, 1}, {0, 0}, true}},
      {"1x1, batch 1, no bias", 1, 8, 3, 4, 4, {{1, 1}, {1, 1}, {0, 0}, false}},
      {"2x5 kernel, stride (2, 1), padding (1, 2)", 3, 3, 4, 11, 7, {{2, 5}, {2, 1}, {1, 2}, true}},
      {"5x3 kernel, stride (1, 2), padding (0, 1), no bias", 1, 2, 3, 7, 9, {{5, 3}, {1, 2}, {0, 1}, false}},
      {"3x3 pad 1, 32 -> 32 channels", 2, 32, 32, 16, 16, {{3, 3}, {1, 1}, {1, 1}, true}},
  };
  return cases;
}

}  // namespace spo::cuda_test
