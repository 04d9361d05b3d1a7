// SPDX-License-Identifier: MIT
// expect: satisfaction of 'Layer<L>' \[with L = ForwardOnly\]|'ForwardOnly' does not satisfy 'Layer'
/// @brief testing::gradcheck accepts only nn::Layer models: a type without backward() must be rejected.
#include "spo/nn/linear.hpp"
#include "spo/testing/gradcheck.hpp"

/// Has everything a Layer needs except backward(); the control adds it.
struct ForwardOnly {
  using scalar_type = double;
  using device_type = spo::cpu;
  spo::Tensor<double> forward(const spo::Tensor<double>& x) { return x; }
#ifdef SPO_FAILTEST_CONTROL
  spo::Tensor<double> backward(const spo::Tensor<double>& dy) { return dy; }
#endif
  template <class F>
  void visit_parameters(F&&, std::string_view) {}
};

int main() {
  ForwardOnly model;
  auto result = spo::testing::gradcheck(model, spo::Tensor<double>(spo::Shape{2, 3}));
  return result.ok ? 0 : 1;
}
