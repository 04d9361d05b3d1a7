// SPDX-License-Identifier: MIT
/// @brief Quickstart: a 1-32-1 SiLU MLP fitted to sin(x) on [-pi, pi] by full-batch gradient descent.
///
/// Shows the pieces every experiment uses: a model composed by type (nn::Sequential), Philox-seeded
/// initialisation, forward, an explicit backward that accumulates parameter gradients, and an update that walks the
/// parameters through visit_parameters. Usage: quickstart [steps] [learning_rate]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numbers>
#include <string_view>
#include <utility>

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

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 3000;
  const float learning_rate = argc > 2 ? static_cast<float>(std::atof(argv[2])) : 0.1f;
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

  std::printf("quickstart: fitting sin(x) with %lld parameters, seed %llu, lr %g\n",
              static_cast<long long>(spo::nn::parameter_count(model)), static_cast<unsigned long long>(gen.seed),
              static_cast<double>(learning_rate));
  double first_loss = 0.0, loss = 0.0;
  spo::Tensor<float> dy;
  for (int step = 0; step <= steps; ++step) {
    const auto y = model.forward(x);  // [N, 1]
    loss = mse_loss(y, target, dy);
    if (step == 0) first_loss = loss;
    if (step % 250 == 0 || step == steps) std::printf("step %5d  mse %.6f\n", step, loss);
    if (step == steps) break;
    spo::nn::zero_grad(model);
    model.backward(dy);
    // Plain gradient descent: p <- p - lr * dL/dp.
    model.visit_parameters([&](std::string_view, spo::nn::Parameter<float>& p) {
      spo::axpy(-learning_rate, std::as_const(p.grad).view(), p.value.view());
    }, {});
  }
  std::printf("quickstart: mse %.6f -> %.6f\n", first_loss, loss);
  return loss < first_loss ? 0 : 1;
}
