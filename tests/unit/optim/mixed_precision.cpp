// SPDX-License-Identifier: MIT
// Mixed-precision steps on the CPU: FP32 masters of 16-bit trainable weights keep updates below a 16-bit ulp, the
// published weights are the masters' rounding, fp16 loss scaling rescues gradients below half's range and skips a
// step with an injected infinity without touching weights, masters or optimizer, bf16 stops on one, and fp32 through
// the wrapper is bitwise the plain step.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/parameter.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/optim/mixed_precision_step.hpp"

using namespace spo;

namespace {

/// A model of two trainable parameters in storage scalar S, one frozen one, and a trainable float one.
template <class S>
struct Model {
  using scalar_type = S;
  using device_type = cpu;
  nn::Parameter<S> w{Shape{2, 3}};
  nn::Parameter<S> frozen{Shape{4}};
  nn::Parameter<S> v{Shape{5}};
  nn::Parameter<float> bias{Shape{3}};

  Model() {
    frozen.set_trainable(false);
    for (std::int64_t i = 0; i < w.value.numel(); ++i) w.value[i] = S(0.25f * static_cast<float>(i + 1));
    for (std::int64_t i = 0; i < v.value.numel(); ++i) v.value[i] = S(1.0f);
    for (std::int64_t i = 0; i < frozen.value.numel(); ++i) frozen.value[i] = S(-2.0f);
    for (std::int64_t i = 0; i < bias.value.numel(); ++i) bias.value[i] = 0.5f;
  }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(nn::join_name(prefix, "w"), w);
    f(nn::join_name(prefix, "frozen"), frozen);
    f(nn::join_name(prefix, "v"), v);
    f(nn::join_name(prefix, "bias"), bias);
  }
  /// Gradients scale x g_i with g_i = gradient * (i + 1) for the 16-bit ones (rounded into S), bias 1e-3 x scale.
  void set_gradients(double scale, double gradient) {
    for (auto* p : {&w, &v})
      for (std::int64_t i = 0; i < p->grad.numel(); ++i)
        p->grad[i] = S(static_cast<float>(scale * gradient * static_cast<double>(i + 1)));
    for (std::int64_t i = 0; i < bias.grad.numel(); ++i) bias.grad[i] = static_cast<float>(scale * 1e-3);
  }
};

optim::AdamWOptions adamw(double lr) { return {lr, 0.9, 0.999, 1e-8, 0.0}; }

template <class S>
std::vector<std::uint16_t> bits(const Tensor<S>& t) {
  std::vector<std::uint16_t> b;
  for (std::int64_t i = 0; i < t.numel(); ++i) b.push_back(t[i].bits);
  return b;
}

template <class S>
std::vector<float> floats(const Tensor<S>& t) {
  std::vector<float> f;
  for (std::int64_t i = 0; i < t.numel(); ++i) f.push_back(static_cast<float>(t[i]));
  return f;
}

/// Every published 16-bit weight is the rounding of its master.
template <class S, class Step>
void check_published(Model<S>& m, Step& step) {
  std::vector<const nn::Parameter<float>*> masters;
  step.masters().visit_parameters([&](std::string_view, nn::Parameter<float>& p) { masters.push_back(&p); }, {});
  REQUIRE(masters.size() == 3);  // w, v (masters) and the model's own float bias
  CHECK(masters[2] == &m.bias);
  for (auto [model_p, master] : {std::pair{&m.w, masters[0]}, std::pair{&m.v, masters[1]}})
    for (std::int64_t i = 0; i < model_p->value.numel(); ++i) CHECK(model_p->value[i].bits == S(master->value[i]).bits);
}

}  // namespace

TEST_CASE("master weights: copies of the trainable 16-bit parameters only, visited under the model's names") {
  Model<half> m;
  optim::MasterWeights masters(m);
  CHECK(masters.size() == 2);
  std::vector<std::string> names;
  masters.visit_parameters(
      [&](std::string_view name, auto& p) {
        names.emplace_back(name);
        static_assert(std::is_same_v<std::remove_cvref_t<decltype(p)>, nn::Parameter<float>>);
      },
      "unet");
  CHECK(names == std::vector<std::string>{"unet.w", "unet.v", "unet.bias"});
  m.v.set_trainable(false);
  CHECK_THROWS_WITH_AS(masters.gather_gradients(), doctest::Contains("call refresh()"), spo::error);
  masters.refresh();
  CHECK(masters.size() == 1);
}

TEST_CASE("mixed precision: updates below half a 16-bit ulp accumulate in the FP32 masters") {
  // AdamW moves each weight by about lr per step; at 1.0 the half ulp is 2^-10, so a 1e-4 step rounds back to 1.0
  // in half arithmetic, while the masters move 1e-3 in 10 steps and the published weights follow.
  Model<half> m;
  Model<half> direct;
  optim::MixedPrecisionStep<Model<half>, precision::fp16> step(m, adamw(1e-4), {1.0, 2.0, 0.5, 1000});
  for (int i = 0; i < 10; ++i) {
    m.set_gradients(step.loss_scale(), 1.0);
    CHECK_FALSE(step.step(1e6).skipped);
    // The same AdamW update applied in half arithmetic leaves the weight where it was.
    for (std::int64_t j = 0; j < direct.v.value.numel(); ++j)
      direct.v.value[j] = half(static_cast<float>(direct.v.value[j]) - 1e-4f);
  }
  CHECK(step.optimizer().step_count() == 10);
  check_published(m, step);
  for (float x : floats(direct.v.value)) CHECK(x == 1.0f);
  for (float x : floats(m.v.value)) {
    CHECK(x < 1.0f);
    CHECK(x == doctest::Approx(1.0 - 1e-3).epsilon(1e-3));
  }
  CHECK(floats(m.frozen.value) == std::vector<float>(4, -2.0f));
  for (std::int64_t i = 0; i < m.bias.value.numel(); ++i) CHECK(m.bias.value[i] < 0.5f);
}

TEST_CASE("fp16 loss scaling: gradients below half's range survive scaling and unscale in FP32") {
  // 1e-9 to 6e-9 are below half the smallest subnormal (2^-25 ~ 3e-8): unscaled they round to zero, scaled by 2^16
  // they are normal halves whose values the FP32 masters recover within half's rounding.
  Model<half> m;
  optim::MixedPrecisionStep<Model<half>, precision::fp16> step(m, adamw(1e-3));
  CHECK(step.loss_scale() == 65536.0);
  m.set_gradients(1.0, 1e-9);
  for (std::int64_t i = 0; i < m.w.grad.numel(); ++i) CHECK(static_cast<float>(m.w.grad[i]) == 0.0f);
  m.set_gradients(step.loss_scale(), 1e-9);
  step.masters().gather_gradients();
  CHECK(step.optimizer().step_count() == 0);
  std::vector<const nn::Parameter<float>*> masters;
  step.masters().visit_parameters([&](std::string_view, nn::Parameter<float>& p) { masters.push_back(&p); }, {});
  for (std::int64_t i = 0; i < masters[0]->grad.numel(); ++i)
    CHECK(masters[0]->grad[i] / 65536.0 == doctest::Approx(1e-9 * static_cast<double>(i + 1)).epsilon(1e-3));
  const auto r = step.step(1.0);
  CHECK_FALSE(r.skipped);
  CHECK(r.scale_used == 65536.0);
  CHECK(r.grad_norm > 0);
}

TEST_CASE(
    "fp16 loss scaling: an injected infinity skips the step, leaves weights, masters and moments, halves the "
    "scale") {
  Model<half> m;
  optim::MixedPrecisionStep<Model<half>, precision::fp16> step(m, adamw(1e-2), {1024.0, 2.0, 0.5, 2});
  m.set_gradients(step.loss_scale(), 0.1);
  CHECK_FALSE(step.step(1.0).skipped);
  const auto w = bits(m.w.value), v = bits(m.v.value);
  const auto bias = floats(m.bias.value);
  const auto state = step.optimizer().export_state();
  std::vector<std::vector<float>> master_values;
  step.masters().visit_parameters(
      [&](std::string_view, nn::Parameter<float>& p) {
        master_values.emplace_back(p.value.data(), p.value.data() + p.value.numel());
      },
      {});

  m.set_gradients(step.loss_scale(), 0.1);
  m.v.grad[2] = half(std::numeric_limits<float>::infinity());
  const auto r = step.step(1.0);
  CHECK(r.skipped);
  CHECK(r.scale_used == 1024.0);
  CHECK(step.loss_scale() == 512.0);
  CHECK(bits(m.w.value) == w);
  CHECK(bits(m.v.value) == v);
  CHECK(floats(m.bias.value) == bias);
  CHECK(step.optimizer().step_count() == state.step);
  for (const auto& [name, t] : step.optimizer().export_state().tensors)
    CHECK(max_abs_diff<float>(t.view(), state.tensors.at(name).view()) == 0.0);
  std::size_t i = 0;
  step.masters().visit_parameters(
      [&](std::string_view, nn::Parameter<float>& p) {
        CHECK(std::vector<float>(p.value.data(), p.value.data() + p.value.numel()) == master_values[i++]);
      },
      {});
  // A NaN from an overflowing half product (inf - inf) is caught the same way.
  m.set_gradients(step.loss_scale(), 0.1);
  m.w.grad[0] = half(std::numeric_limits<float>::quiet_NaN());
  CHECK(step.step(1.0).skipped);
  CHECK(step.loss_scale() == 256.0);
  // Two finite steps grow it back.
  for (int k = 0; k < 2; ++k) {
    m.set_gradients(step.loss_scale(), 0.1);
    CHECK_FALSE(step.step(1.0).skipped);
  }
  CHECK(step.loss_scale() == 512.0);
  check_published(m, step);
  // The scaler's state round-trips; a policy without scaling refuses one.
  optim::MixedPrecisionStep<Model<half>, precision::fp16> resumed(m, adamw(1e-2), {1024.0, 2.0, 0.5, 2});
  resumed.load_state(step.state());
  CHECK(resumed.loss_scale() == 512.0);
  Model<bfloat16> b;
  optim::MixedPrecisionStep<Model<bfloat16>, precision::bf16> bstep(b, adamw(1e-2));
  CHECK(bstep.state().empty());
  CHECK_THROWS_WITH_AS(bstep.load_state(step.state()), doctest::Contains("no loss scaler"), spo::error);
}

TEST_CASE("bf16: no loss scaling, and a non-finite gradient stops before any update") {
  Model<bfloat16> m;
  optim::MixedPrecisionStep<Model<bfloat16>, precision::bf16> step(m, adamw(1e-2));
  CHECK(step.loss_scale() == 1.0);
  m.set_gradients(step.loss_scale(), 0.1);
  const auto r = step.step(1.0);
  CHECK(r.scale_used == 1.0);
  check_published(m, step);
  const auto w = bits(m.w.value);
  m.set_gradients(1.0, 0.1);
  m.w.grad[1] = bfloat16(std::numeric_limits<float>::infinity());
  CHECK_THROWS_WITH_AS(step.step(1.0), doctest::Contains("gradient norm"), spo::error);
  CHECK(bits(m.w.value) == w);
  CHECK(step.optimizer().step_count() == 1);
}

TEST_CASE("fp32 through the mixed-precision step is bitwise clip_grad_norm + AdamW on the model") {
  Model<float> a, b;
  optim::MixedPrecisionStep<Model<float>, precision::fp32> step(a, adamw(1e-2));
  CHECK(step.masters().size() == 0);
  optim::AdamW<float> plain(adamw(1e-2));
  for (int i = 0; i < 3; ++i) {
    a.set_gradients(step.loss_scale(), 0.3);
    b.set_gradients(1.0, 0.3);
    step.step(0.5);
    optim::clip_grad_norm(b, 0.5, true);
    plain.step(b);
  }
  for (auto [pa, pb] : {std::pair{&a.w, &b.w}, std::pair{&a.v, &b.v}, std::pair{&a.bias, &b.bias}})
    CHECK(max_abs_diff<float>(pa->value.view(), pb->value.view()) == 0.0);
  CHECK(floats(a.frozen.value) == std::vector<float>(4, -2.0f));
}
