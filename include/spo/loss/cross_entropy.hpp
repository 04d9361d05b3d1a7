// SPDX-License-Identifier: MIT
/// @brief Softmax cross-entropy over logits [B, K] with integer labels (torch.nn.functional.cross_entropy, mean).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "spo/tensor/tensor.hpp"

namespace spo::loss {

template <Scalar T>
struct CrossEntropy {
  double loss = 0;           ///< mean over the batch of -log softmax(logits)[label]
  Tensor<T, cpu> grad;       ///< d loss / d logits = (softmax - onehot) / B, [B, K]
  std::int64_t correct = 0;  ///< argmax(logits) == label count
};

template <Scalar T>
CrossEntropy<T> cross_entropy(const Tensor<T, cpu>& logits, std::span<const std::int64_t> labels) {
  SPO_CHECK(logits.rank() == 2 && logits.size(0) == static_cast<std::int64_t>(labels.size()),
            "cross_entropy: logits " << logits.shape() << " for " << labels.size() << " labels");
  const std::int64_t b = logits.size(0), k = logits.size(1);
  CrossEntropy<T> r{0.0, Tensor<T, cpu>::uninitialized(logits.shape()), 0};
  for (std::int64_t i = 0; i < b; ++i) {
    const T* z = logits.data() + i * k;
    T* g = r.grad.data() + i * k;
    const std::int64_t y = labels[static_cast<std::size_t>(i)];
    SPO_CHECK(y >= 0 && y < k, "cross_entropy: label " << y << " outside [0, " << k << ")");
    double m = z[0];
    std::int64_t arg = 0;
    for (std::int64_t j = 1; j < k; ++j)
      if (z[j] > m) {
        m = z[j];
        arg = j;
      }
    double s = 0;
    for (std::int64_t j = 0; j < k; ++j) s += std::exp(static_cast<double>(z[j]) - m);
    const double lse = m + std::log(s);
    r.loss += (lse - static_cast<double>(z[y])) / static_cast<double>(b);
    for (std::int64_t j = 0; j < k; ++j)
      g[j] =
          static_cast<T>((std::exp(static_cast<double>(z[j]) - lse) - (j == y ? 1.0 : 0.0)) / static_cast<double>(b));
    r.correct += arg == y;
  }
  return r;
}

}  // namespace spo::loss
