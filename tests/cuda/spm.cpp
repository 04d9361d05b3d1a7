// SPDX-License-Identifier: MIT
// The step-aware preference network on spo::cuda against the same network on the CPU, for both time policies
// (StepConditioned, Unconditioned), float and double: scores of a batch of 3 images with different timesteps and
// prompts (one all-padding), then backward of a random upstream gradient: the image gradient and every parameter
// gradient (both towers, the adaLN modulations moved off their identity init, the embeddings and logit_scale).
// Bounds, per element, |gpu - cpu| <= tol * max |cpu| over the tensor (as tests/cuda/unet.cpp):
//   double: 1e-10 (two towers of <= 2 blocks; every reduction exact to ~1e-15 but re-associated on the GPU);
//   float:  2e-3 (LayerNorm / softmax / GEMM / token-sum re-association over ~10 chained layers).
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/spm/preference_network.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"

using namespace spo;

namespace {

using Rows = std::vector<std::vector<std::int32_t>>;

spm::PreferenceNetworkConfig tiny_config() {
  // image 8x8, 1 channel, patch 4 (4 patches + class token), width 16, depth 2, 2 heads, embed 12;
  // text width 16, 2 heads, 4 tokens; logit scale ln(1 / 0.07)
  return {{8, 1, 4, 16, 2, 2, 12}, 16, 2, 4, 2.6592600369327779};
}
constexpr std::int64_t vocab = 9;

template <class T, class Policy>
void check_network() {
  using HostNet = spm::PreferenceNetwork<T, Policy, cpu>;
  using DeviceNet = spm::PreferenceNetwork<T, Policy, cuda>;
  HostNet host(tiny_config(), vocab);
  DeviceNet device(tiny_config(), vocab);
  Generator g{21, 0};
  host.reset_parameters(g);
  // Move the adaLN modulations off their identity init (weights 0) so the timestep path contributes.
  Generator gp{22, 0};
  host.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cpu>& p) {
        if (name.find("adaLN_modulation") != std::string_view::npos) fill_normal(p.value.view(), gp, T(0), T(0.3));
      },
      {});
  nn::copy_parameters(host, device);

  Generator gi{23, 0};
  auto x = randn<T>(Shape{3, 1, 8, 8}, gi);                     // [B, C, R, R]
  Tensor<T, cpu> t(Shape{3}, {T(0), T(417), T(999)});           // [B]
  const Rows ids = {{3, 1, 0, 0}, {0, 0, 0, 0}, {5, 8, 5, 2}};  // one all-pad row, one repeated id
  auto ds = randn<T>(Shape{3}, gi);                             // [B]

  nn::zero_grad(host);
  nn::zero_grad(device);
  auto s_host = host.forward(x, t, ids);
  auto dx_host = host.backward(ds);
  auto s_dev = device.forward(to_device(x), to_device(t), ids);
  auto dx_dev = device.backward(to_device(ds));

  const double tol = cuda_test::model_tolerance<T>();
  CHECK(cuda_test::scaled_error(to_host(s_dev), s_host, tol) <= 1.0);
  CHECK(cuda_test::scaled_error(to_host(dx_dev), dx_host, tol) <= 1.0);

  HostNet grads(tiny_config(), vocab);
  nn::copy_parameters(host, grads);
  nn::copy_gradients(device, grads);
  std::map<std::string, Tensor<T, cpu>> device_grads;
  grads.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cpu>& p) {
        if (p.trainable) device_grads.emplace(std::string(name), p.grad);
      },
      {});
  int checked = 0;
  host.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cpu>& p) {
        if (!p.trainable) return;
        INFO("parameter " << name);
        const auto it = device_grads.find(std::string(name));
        REQUIRE(it != device_grads.end());
        CHECK(cuda_test::scaled_error(it->second, p.grad, tol) <= 1.0);
        ++checked;
      },
      {});
  CHECK(checked == static_cast<int>(device_grads.size()));
  CHECK(checked > 40);
}

}  // namespace

TEST_CASE_TEMPLATE("PreferenceNetwork<StepConditioned> on cuda == cpu: scores, dimages, every gradient", T, float,
                   double) {
  check_network<T, spm::StepConditioned>();
}

TEST_CASE_TEMPLATE("PreferenceNetwork<Unconditioned> on cuda == cpu: scores, dimages, every gradient", T, float,
                   double) {
  check_network<T, spm::Unconditioned>();
}

TEST_CASE("PreferenceNetwork on cuda: an image of the wrong channel count is an error naming the shape") {
  spm::PreferenceNetwork<float, spm::StepConditioned, cuda> net(tiny_config(), vocab);
  Tensor<float, cuda> x(Shape{3, 2, 8, 8}), t(Shape{3});
  const Rows ids = {{1, 0, 0, 0}, {2, 0, 0, 0}, {3, 0, 0, 0}};
  CHECK_THROWS_WITH_AS(net.forward(x, t, ids), doctest::Contains("[3, 2, 8, 8]"), spo::error);
}

TEST_CASE_TEMPLATE("PreferenceNetwork on cuda: reset_parameters gives the CPU's numbers from the same generator", T,
                   float, double) {
  spm::PreferenceNetwork<T, spm::StepConditioned, cpu> host(tiny_config(), vocab);
  spm::PreferenceNetwork<T, spm::StepConditioned, cuda> device(tiny_config(), vocab);
  Generator gh{31, 0}, gd{31, 0};
  host.reset_parameters(gh);
  device.reset_parameters(gd);
  spm::PreferenceNetwork<T, spm::StepConditioned, cpu> copy(tiny_config(), vocab);
  nn::copy_parameters(device, copy);
  std::map<std::string, Tensor<T, cpu>> device_values;
  copy.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cpu>& p) { device_values.emplace(std::string(name), p.value); }, {});
  // The same random stream; only the device's transcendental rounding may differ.
  const double tol = std::is_same_v<T, double> ? 1e-12 : 1e-5;
  host.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cpu>& p) {
        INFO("parameter " << name);
        const auto it = device_values.find(std::string(name));
        REQUIRE(it != device_values.end());
        CHECK(cuda_test::scaled_error(it->second, p.value, tol) <= 1.0);
      },
      {});
}
