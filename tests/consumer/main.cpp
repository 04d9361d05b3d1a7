// SPDX-License-Identifier: MIT
/// @brief Downstream use of the installed package: one Linear layer, one forward pass, one printed number.
#include <iostream>

#include <spo/spo.hpp>

int main() {
  spo::nn::Linear<double> linear(3, 2);
  linear.weight().value = spo::Tensor<double>(spo::Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  linear.bias().value = spo::Tensor<double>(spo::Shape{2}, {0.5, -1});
  const spo::Tensor<double> x(spo::Shape{1, 3}, {1, 0, -1});
  const auto y = linear.forward(x);  // [1, 2]
  std::cout << "sum(y) = " << y[0] + y[1] << "\n";
  return 0;
}
