// SPDX-License-Identifier: MIT
// expect: satisfaction of 'SamplingScheduler<S, T, D>' \[with S = NoSigma; T = float; D = spo::cpu\]
// requires: spo/diffusion/sampling_loop.hpp
/// @brief The pipelines' sampling loop takes any inference scheduler: one without init_noise_sigma must be rejected
/// naming the concept.
#include <vector>

#include "spo/diffusion/sampling_loop.hpp"

struct NoSigma {
  void set_timesteps(int) {}
  std::vector<double> timesteps() const { return {999.0}; }
#ifdef SPO_FAILTEST_CONTROL
  double init_noise_sigma() const { return 1.0; }
#endif
  spo::Tensor<float> scale_model_input(const spo::Tensor<float>& x, double) const { return x; }
  spo::Tensor<float> step(const spo::Tensor<float>&, double, const spo::Tensor<float>& x,
                          const spo::diffusion::StepNoise<float>&) {
    return x;
  }
};

int main() {
  NoSigma s;
  const auto x = spo::diffusion::sample<float, spo::cpu>(s, 1, spo::Tensor<float>(spo::Shape{1, 4, 2, 2}),
                                                         [](const spo::Tensor<float>& y, double) { return y; }, {});
  return static_cast<int>(x.numel()) - 16;
}
