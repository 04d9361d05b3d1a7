// SPDX-License-Identifier: MIT
// expect: satisfaction of 'Optimizer<Opt, M>' \[with Opt = FixedRateSgd; M = spo::nn::Linear<float
// requires: spo/io/checkpoint.hpp
/// @brief A checkpoint stores an optimizer that the round loop can drive (optim::Optimizer): one without set_lr
/// (a learning-rate schedule could not reach it) must be rejected naming the concept.
#include "spo/io/checkpoint.hpp"
#include "spo/nn/linear.hpp"

struct FixedRateSgd {
  using scalar_type = float;
  using device_type = spo::cpu;
  static constexpr std::string_view name = "sgd";
  template <class Model>
  void step(Model&) {}
#ifdef SPO_FAILTEST_CONTROL
  void set_lr(double) {}
#endif
  std::int64_t step_count() const { return 0; }
  spo::optim::OptimizerState<float> export_state() const { return {}; }
  template <class Model>
  void import_state(spo::optim::OptimizerState<float>, Model&) {}
};

int main() {
  spo::nn::Linear<float> layer(2, 2);
  FixedRateSgd sgd;
  const auto info = spo::io::load_checkpoint("missing.safetensors", layer, sgd);
  return static_cast<int>(info.step);
}
