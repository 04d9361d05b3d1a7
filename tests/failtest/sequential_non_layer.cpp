// SPDX-License-Identifier: MIT
// expect: spo::nn::Layer
// requires: spo/nn/sequential.hpp
/// @brief nn::Sequential accepts only nn::Layer children: a child without backward() must be rejected by a
/// diagnostic that names the concept.
#include "spo/nn/linear.hpp"
#include "spo/nn/sequential.hpp"

/// Has everything a Layer needs except backward(); the control adds it.
struct ForwardOnly {
  using scalar_type = float;
  using device_type = spo::cpu;
  spo::Tensor<float> forward(const spo::Tensor<float>& x) { return x; }
#ifdef SPO_FAILTEST_CONTROL
  spo::Tensor<float> backward(const spo::Tensor<float>& dy) { return dy; }
#endif
  template <class F>
  void visit_parameters(F&&, std::string_view) {}
};

int main() {
  spo::nn::Sequential<spo::nn::Linear<float>, ForwardOnly> model;
  auto y = model.forward(spo::Tensor<float>(spo::Shape{2, 0}));
  return static_cast<int>(y.numel());
}
