// SPDX-License-Identifier: MIT
/// @brief Quickstart: a 1-32-1 SiLU MLP fitted to sin(x) on [-pi, pi] with full-batch AdamW.
///
/// Shows the pieces every experiment uses: a model composed by type (nn::Sequential), Philox-seeded
/// initialisation, forward, an explicit backward that accumulates parameter gradients, and an optimizer step over
/// the parameters the model visits. Usage: quickstart [steps] [learning_rate]
#include <cmath>
#include <cstdio>
#include <exception>
#include <numbers>

#include "spo/experiment/command_line.hpp"
#include "spo/spo.hpp"

namespace {

using Mlp = spo::nn::Sequential<spo::nn::Linear<float>, spo::nn::SiLU<float>, spo::nn::Linear<float>>;

/// Mean squared error (torch.nn.functional.mse_loss) and its gradient 2 (y - t) / N.
double mse_loss(const spo::Tensor<float>& y, const spo::Tensor<float>& target, spo::Tensor<float>& dy) {
  spo::check_same_shape(y.shape(), target.shape(), "mse_loss");
  dy = spo::Tensor<float>::uninitialized(y.shape());  // [N, 1]
  const auto n = static_cast<double>(y.numel());
  double sum = 0.0;
  for (std::int64_t i = 0; i < y.numel(); ++i) {
    const double d = static_cast<double>(y[i]) - target[i];
    sum += d * d;
    dy[i] = static_cast<float>(2.0 * d / n);
  }
  return sum / n;
}

}  // namespace

int main(int argc, char** argv) try {
  int steps = 1000;
  double learning_rate = 1e-2;
  spo::experiment::ArgumentParser args("quickstart",
                                       "Fits a 1-32-1 SiLU MLP to sin(x) on [-pi, pi] with full-batch AdamW; exits 0 "
                                       "when the loss fell.");
  args.positional("steps", "optimizer steps", steps, 1, 1000000)
      .optional()
      .positional("learning_rate", "the AdamW learning rate", learning_rate, 1e-9, 1.0)
      .optional();
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;
  constexpr std::int64_t samples = 256, hidden = 32;
  constexpr double pi = std::numbers::pi;

  spo::Generator gen{/*seed=*/42, /*offset=*/0};
  Mlp model(spo::nn::Linear<float>(1, hidden), spo::nn::SiLU<float>{}, spo::nn::Linear<float>(hidden, 1));
  model.get<0>().reset_parameters(gen);
  model.get<2>().reset_parameters(gen);

  spo::Tensor<float> x(spo::Shape{samples, 1});       // [N, 1] evenly spaced on [-pi, pi]
  spo::Tensor<float> target(spo::Shape{samples, 1});  // [N, 1] sin(x)
  for (std::int64_t i = 0; i < samples; ++i) {
    x[i] = static_cast<float>(-pi + 2.0 * pi * static_cast<double>(i) / (samples - 1));
    target[i] = std::sin(x[i]);
  }

  spo::optim::AdamW<float> optimizer({.lr = learning_rate, .weight_decay = 0.0});
  std::printf("quickstart: fitting sin(x) with %lld parameters, seed %llu, AdamW lr %g\n",
              static_cast<long long>(spo::nn::parameter_count(model)), static_cast<unsigned long long>(gen.seed),
              learning_rate);
  double first_loss = 0.0, loss = 0.0;
  spo::Tensor<float> dy;
  for (int step = 0; step <= steps; ++step) {
    const auto y = model.forward(x);  // [N, 1]
    loss = mse_loss(y, target, dy);
    if (step == 0) first_loss = loss;
    if (step % 100 == 0 || step == steps) std::printf("step %5d  mse %.6f\n", step, loss);
    if (step == steps) break;
    spo::nn::zero_grad(model);
    model.backward(dy);
    optimizer.step(model);
  }
  std::printf("quickstart: mse %.6f -> %.6f\n", first_loss, loss);
  return loss < first_loss ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "quickstart: error: %s\n", e.what());
  return 1;
}
