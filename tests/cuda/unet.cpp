// SPDX-License-Identifier: MIT
// The SD-style UNet on spo::cuda against the same UNet on the CPU: forward output, the sample and context gradients
// and every parameter gradient, for a full-parameter backward and for a LoRA backward (base frozen), float and double.
// Bounds, per element, |gpu - cpu| <= abs + rel |cpu| with abs scaled by the tensor's largest CPU magnitude:
//   double: 1e-10 relative (a few hundred chained reductions, each exact to ~1e-15 but re-associated on the GPU);
//   float:  2e-3 of the tensor's scale (GroupNorm / softmax / GEMM re-association over ~10 chained layers with
//           reductions of up to a few thousand terms; the CPU float path uses oneDNN).
#include <cmath>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"
#include "unet_fixtures.hpp"

using namespace spo;

namespace {

template <class T, class Proj>
void check_unet() {
  constexpr bool lora = !std::is_same_v<Proj, nn::Linear<T, cuda>>;
  using CpuProj = std::conditional_t<lora, nn::LoRA<nn::Linear<T, cpu>>, nn::Linear<T, cpu>>;
  model::UNet2DCondition<T, cpu, CpuProj> host(cuda_test::tiny_unet_config());
  model::UNet2DCondition<T, cuda, Proj> device(cuda_test::tiny_unet_config());
  Generator g{11, 0};
  host.reset_parameters(g);
  if constexpr (lora) {
    Generator ga{12, 0}, gb{12, 0};
    host.attach_lora(2, 4.0, ga);
    device.attach_lora(2, 4.0, gb);  // same adapter numbers from the same stream
  }
  // LoRA B starts at zero: give it values so the adapter path contributes to the output and gradients.
  Generator gp{13, 0};
  host.visit_parameters([&](std::string_view name, auto& p) {
    if (std::string(name).find("lora_B") != std::string::npos) fill_uniform(p.value.view(), gp, T(-0.2), T(0.2));
  });
  nn::copy_parameters(host, device);

  Generator gi{14, 0};
  auto x = randn<T>(Shape{2, 3, 8, 8}, gi);     // [B, Cin, H, W]
  auto ctx = randn<T>(Shape{2, 5, 12}, gi);     // [B, M, Dctx]
  Tensor<T, cpu> t(Shape{2}, {T(17), T(901)});  // [B]
  auto dy = randn<T>(Shape{2, 2, 8, 8}, gi);    // [B, Cout, H, W]

  nn::zero_grad(host);
  nn::zero_grad(device);
  auto y_host = host.forward(x, t, ctx);
  auto g_host = host.backward(dy);
  auto y_dev = device.forward(to_device(x), to_device(t), to_device(ctx));
  auto g_dev = device.backward(to_device(dy));

  const double tol = cuda_test::model_tolerance<T>();
  CHECK(cuda_test::scaled_error(to_host(y_dev), y_host, tol) <= 1.0);
  CHECK(cuda_test::scaled_error(to_host(g_dev.dsample), g_host.dsample, tol) <= 1.0);
  CHECK(cuda_test::scaled_error(to_host(g_dev.dcontext), g_host.dcontext, tol) <= 1.0);

  model::UNet2DCondition<T, cpu, CpuProj> grads(cuda_test::tiny_unet_config());
  if constexpr (lora) {
    Generator ga{12, 0};
    grads.attach_lora(2, 4.0, ga);
  }
  nn::copy_parameters(host, grads);
  nn::copy_gradients(device, grads);
  int checked = 0;
  std::map<std::string, Tensor<T, cpu>> device_grads;
  grads.visit_parameters([&](std::string_view name, auto& p) {
    if (p.trainable) device_grads.emplace(std::string(name), p.grad);
  });
  host.visit_parameters([&](std::string_view name, auto& p) {
    if (!p.trainable) return;
    INFO("parameter " << name);
    if constexpr (lora) CHECK(std::string(name).find("lora_") != std::string::npos);  // the base is frozen
    const auto it = device_grads.find(std::string(name));
    REQUIRE(it != device_grads.end());
    CHECK(cuda_test::scaled_error(it->second, p.grad, tol) <= 1.0);
    ++checked;
  });
  CHECK(checked > (lora ? 10 : 100));
}

}  // namespace

TEST_CASE_TEMPLATE("UNet2DCondition on cuda == cpu: forward, dsample, dcontext, every parameter gradient", T, float,
                   double) {
  check_unet<T, nn::Linear<T, cuda>>();
}

TEST_CASE_TEMPLATE("UNet2DCondition with LoRA on cuda == cpu: only adapter gradients, same values", T, float, double) {
  check_unet<T, nn::LoRA<nn::Linear<T, cuda>>>();
}

TEST_CASE("UNet2DCondition on cuda: a sample of the wrong channel count is an error naming the shape") {
  model::UNet2DCondition<float, cuda> unet(cuda_test::tiny_unet_config());
  Tensor<float, cuda> x(Shape{2, 4, 8, 8}), t(Shape{2}), ctx(Shape{2, 5, 12});
  CHECK_THROWS_WITH_AS(unet.forward(x, t, ctx), doctest::Contains("[2, 4, 8, 8]"), spo::error);
}
