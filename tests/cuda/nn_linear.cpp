// SPDX-License-Identifier: MIT
// Linear<T, cuda> and LoRA<Linear<T, cuda>> against the CPU layers (same parameters, same inputs).
// Bounds, per element, |gpu - cpu| <= abs + rel |cpu| (reductions here are at most 37 long):
//   double: abs 1e-12, rel 1e-10;  float: abs 5e-6, rel 2e-5.
#include <map>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/lora.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"

using namespace spo;

static_assert(kernels_declared<cuda>);
static_assert(nn::Layer<nn::Linear<float, cuda>>);
static_assert(nn::Layer<nn::Linear<double, cuda>>);
static_assert(nn::Layer<nn::LoRA<nn::Linear<float, cuda>>>);
static_assert(nn::LoRABase<nn::Linear<double, cuda>>);

namespace {

template <class T>
struct Tolerance;
template <>
struct Tolerance<double> {
  static constexpr double abs = 1e-12, rel = 1e-10;
};
template <>
struct Tolerance<float> {
  static constexpr double abs = 5e-6, rel = 2e-5;
};

template <class T>
void check_close(const Tensor<T, cuda>& gpu, const Tensor<T, cpu>& cpu_ref, const std::string& what) {
  REQUIRE_MESSAGE(gpu.shape() == cpu_ref.shape(), what << ": " << gpu.shape() << " vs " << cpu_ref.shape());
  const double r = cuda_test::worst_ratio(to_host(gpu), cpu_ref, Tolerance<T>::abs, Tolerance<T>::rel);
  INFO(what << ": worst |gpu - cpu| / (abs + rel |cpu|) = " << r);
  CHECK(r <= 1.0);
}

/// Every parameter of the cuda layer against the CPU layer's: names, trainable flags, values, and the gradients of
/// the trainable ones (frozen ones must hold none).
template <class CpuLayer, class GpuLayer>
void check_parameters(CpuLayer& cpu_layer, GpuLayer& gpu_layer, bool gradients) {
  using T = typename CpuLayer::scalar_type;
  std::map<std::string, nn::Parameter<T, cpu>*> reference;
  cpu_layer.visit_parameters([&](std::string_view name, auto& p) { reference.emplace(std::string(name), &p); }, {});
  std::size_t seen = 0;
  gpu_layer.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cuda>& p) {
        const auto it = reference.find(std::string(name));
        REQUIRE_MESSAGE(it != reference.end(), "no CPU parameter " << name);
        ++seen;
        CHECK_MESSAGE(p.trainable == it->second->trainable, name);
        check_close(p.value, it->second->value, std::string(name) + " value");
        if (!gradients) return;
        if (p.trainable)
          check_close(p.grad, it->second->grad, std::string(name) + " grad");
        else
          CHECK_MESSAGE(p.grad.empty(), name << " is frozen but holds a gradient");
      },
      {});
  CHECK(seen == reference.size());
}

template <class T>
Tensor<T, cpu> random_tensor(Shape s, Generator& gen, T stddev = T(1)) {
  return randn<T>(s, gen, stddev);
}

}  // namespace

TEST_CASE_TEMPLATE("Linear<T, cuda> matches the CPU: init, forward, dx, dW, db on [B, N, in]", T, float, double) {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    nn::Linear<T> cpu_layer(37, 23, bias);
    nn::Linear<T, cuda> gpu_layer(37, 23, bias);
    Generator g_cpu{11, 3}, g_gpu{11, 3};
    cpu_layer.reset_parameters(g_cpu);
    gpu_layer.reset_parameters(g_gpu);
    check_parameters(cpu_layer, gpu_layer, false);  // same init numbers
    CHECK(g_cpu == g_gpu);

    Generator g{7, 0};
    auto x = random_tensor<T>(Shape{2, 5, 37}, g);   // [B, N, in]
    auto dy = random_tensor<T>(Shape{2, 5, 23}, g);  // [B, N, out]
    // Non-zero accumulators: backward must add, not overwrite.
    nn::zero_grad(cpu_layer);
    fill_normal(cpu_layer.weight().grad.view(), g, T(0), T(1));
    if (bias) fill_normal(cpu_layer.bias().grad.view(), g, T(0), T(1));
    nn::copy_parameters(cpu_layer, gpu_layer);
    nn::copy_gradients(cpu_layer, gpu_layer);

    auto y_cpu = cpu_layer.forward(x);
    auto y_gpu = gpu_layer.forward(to_device(x));
    check_close(y_gpu, y_cpu, "y");
    auto dx_cpu = cpu_layer.backward(dy);
    auto dx_gpu = gpu_layer.backward(to_device(dy));
    check_close(dx_gpu, dx_cpu, "dx");
    check_parameters(cpu_layer, gpu_layer, true);
  }
}

TEST_CASE_TEMPLATE("Linear<T, cuda>: frozen parameters get no gradient, shape errors name the shape", T, float,
                   double) {
  nn::Linear<T> cpu_layer(6, 4);
  nn::Linear<T, cuda> gpu_layer(6, 4);
  Generator g{3, 1};
  cpu_layer.reset_parameters(g);
  nn::set_trainable(cpu_layer, false);
  nn::copy_parameters(cpu_layer, gpu_layer);
  auto x = random_tensor<T>(Shape{3, 6}, g);
  auto dy = random_tensor<T>(Shape{3, 4}, g);
  check_close(gpu_layer.forward(to_device(x)), cpu_layer.forward(x), "y");
  check_close(gpu_layer.backward(to_device(dy)), cpu_layer.backward(dy), "dx");
  CHECK(gpu_layer.weight().grad.empty());
  CHECK(gpu_layer.bias().grad.empty());

  CHECK_THROWS_WITH_AS(gpu_layer.forward(Tensor<T, cuda>(Shape{2, 5})), doctest::Contains("[2, 5]"), spo::error);
  gpu_layer.forward(Tensor<T, cuda>(Shape{2, 6}));
  CHECK_THROWS_WITH_AS(gpu_layer.backward(Tensor<T, cuda>(Shape{2, 3})), doctest::Contains("[2, 3]"), spo::error);

  std::vector<std::string> names;
  gpu_layer.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "to_out.0");
  CHECK(names == std::vector<std::string>{"to_out.0.weight", "to_out.0.bias"});
}

TEST_CASE_TEMPLATE("Linear<T, cuda> without grad mode keeps nothing and matches the CPU", T, float, double) {
  nn::Linear<T> cpu_layer(5, 9);
  nn::Linear<T, cuda> gpu_layer(5, 9);
  Generator g{21, 0};
  cpu_layer.reset_parameters(g);
  nn::copy_parameters(cpu_layer, gpu_layer);
  auto x = random_tensor<T>(Shape{4, 1, 5}, g);
  nn::no_grad_guard guard;
  check_close(gpu_layer.forward(to_device(x)), cpu_layer.forward(x), "y");
  CHECK_THROWS_AS(gpu_layer.backward(Tensor<T, cuda>(Shape{4, 1, 9})), spo::error);
}

TEST_CASE_TEMPLATE("LoRA<Linear<T, cuda>> matches the CPU: attach init, forward, dx, dA, dB with the base frozen", T,
                   float, double) {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    nn::LoRA<nn::Linear<T>> cpu_layer(29, 17, bias);
    nn::LoRA<nn::Linear<T, cuda>> gpu_layer(29, 17, bias);
    Generator g_cpu{5, 2}, g_gpu{5, 2};
    cpu_layer.reset_parameters(g_cpu);
    gpu_layer.reset_parameters(g_gpu);
    cpu_layer.attach(4, 6.0, g_cpu);
    gpu_layer.attach(4, 6.0, g_gpu);
    CHECK(gpu_layer.attached());
    CHECK(gpu_layer.rank() == 4);
    CHECK(gpu_layer.scale() == cpu_layer.scale());
    check_parameters(cpu_layer, gpu_layer, false);  // names, frozen base, A ~ N(0, 1/r^2), B = 0
    CHECK_FALSE(gpu_layer.weight().trainable);

    Generator g{9, 0};
    fill_normal(cpu_layer.lora_B().value.view(), g, T(0), T(0.5));  // B != 0 so that dA and dx see the adapter
    fill_normal(cpu_layer.lora_A().grad.view(), g, T(0), T(1));     // accumulators start non-zero
    fill_normal(cpu_layer.lora_B().grad.view(), g, T(0), T(1));
    nn::copy_parameters(cpu_layer, gpu_layer);
    nn::copy_gradients(cpu_layer, gpu_layer);
    auto x = random_tensor<T>(Shape{3, 4, 29}, g);   // [B, N, in]
    auto dy = random_tensor<T>(Shape{3, 4, 17}, g);  // [B, N, out]
    check_close(gpu_layer.forward(to_device(x)), cpu_layer.forward(x), "y");
    check_close(gpu_layer.backward(to_device(dy)), cpu_layer.backward(dy), "dx");
    check_parameters(cpu_layer, gpu_layer, true);

    cpu_layer.merge();
    gpu_layer.merge();
    CHECK_FALSE(gpu_layer.attached());
    CHECK(gpu_layer.weight().trainable);            // flags restored by detach
    check_parameters(cpu_layer, gpu_layer, false);  // W += s B A
  }
}

TEST_CASE("LoRA<Linear<float, cuda>>: rank check, detach, shape error") {
  nn::LoRA<nn::Linear<float, cuda>> layer(8, 3);
  Generator g{1, 0};
  layer.reset_parameters(g);
  CHECK_THROWS_WITH_AS(layer.attach(0, 1.0, g), doctest::Contains("rank 0"), spo::error);
  layer.attach(2, 2.0, g);
  std::vector<std::string> names;
  layer.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "to_k");
  CHECK(names == std::vector<std::string>{"to_k.weight", "to_k.bias", "to_k.lora_A.weight", "to_k.lora_B.weight"});
  CHECK_THROWS_WITH_AS(layer.forward(Tensor<float, cuda>(Shape{2, 7})), doctest::Contains("[2, 7]"), spo::error);
  layer.detach();
  CHECK(nn::parameter_count(layer, true) == 8 * 3 + 3);
}
