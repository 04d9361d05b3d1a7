// SPDX-License-Identifier: MIT
// Mixed-precision steps on the CPU: FP32 masters of 16-bit trainable weights keep updates below a 16-bit ulp, the
// published weights are the masters' rounding, fp16 loss scaling rescues gradients below half's range and skips a
// step with an injected infinity without touching weights, masters or optimizer, bf16 stops on one, fp32 through
// the wrapper is bitwise the plain step, and on two thread ranks the masters' gradients are averaged before the
// scaler reads them (an infinity on one rank skips the step on both).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "spo/dist/gradient_reducer.hpp"
#include "spo/dist/thread_group.hpp"
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

namespace {

/// Rank r's gradient of element i of w and v: rank 0 all positive, rank 1 of alternating sign and larger, so that
/// the mean's sign differs from rank 0's on the even elements (AdamW, nearly scale-invariant, tells directions only).
double rank_gradient(int rank, std::int64_t i) {
  const double k = static_cast<double>(i + 1);
  return rank == 0 ? 0.1 * k : (i % 2 ? 0.3 : -0.3) * k;
}

void set_rank_gradients(Model<half>& m, double scale, int rank) {
  for (auto* p : {&m.w, &m.v})
    for (std::int64_t i = 0; i < p->grad.numel(); ++i)
      p->grad[i] = half(static_cast<float>(scale * rank_gradient(rank, i)));
  for (std::int64_t i = 0; i < m.bias.grad.numel(); ++i) m.bias.grad[i] = static_cast<float>(scale * 1e-3 * (rank + 1));
}

struct RankOutcome {
  std::vector<std::uint16_t> w, v;
  std::vector<float> masters;  // w, v, bias in visiting order
  bool skipped_first = true, skipped_second = false;
  double scale = 0;
  std::int64_t steps = -1;
};

std::vector<float> master_values(optim::MasterWeights<Model<half>>& masters) {
  std::vector<float> out;
  masters.visit_parameters(
      [&](std::string_view, nn::Parameter<float>& p) {
        out.insert(out.end(), p.value.data(), p.value.data() + p.value.numel());
      },
      {});
  return out;
}

}  // namespace

TEST_CASE("fp16 on 2 thread ranks: the FP32 masters' gradients are averaged before the scaler reads them") {
  const optim::LossScaleOptions scaling{1024.0, 2.0, 0.5, 1000};
  std::vector<RankOutcome> out(2);
  dist::run_ranks(2, [&](dist::AnyCommunicator comm) {
    const int r = comm.rank();
    Model<half> m;
    optim::MixedPrecisionStep<Model<half>, precision::fp16> step(m, adamw(1e-2), scaling);
    dist::GradientReducer<float, cpu> reducer(step.masters(), comm);
    auto average = [&](optim::MasterWeights<Model<half>>&) { reducer.finish(); };
    auto& o = out[static_cast<std::size_t>(r)];
    set_rank_gradients(m, step.loss_scale(), r);
    o.skipped_first = step.step(1.0, average).skipped;
    // An infinity in rank 1's gradients only: the mean is infinite on both ranks, so both skip and back off.
    set_rank_gradients(m, step.loss_scale(), r);
    if (r == 1) m.v.grad[2] = half(std::numeric_limits<float>::infinity());
    o.skipped_second = step.step(1.0, average).skipped;
    o.w = bits(m.w.value);
    o.v = bits(m.v.value);
    o.masters = master_values(step.masters());
    o.scale = step.loss_scale();
    o.steps = step.optimizer().step_count();
  });
  for (const auto& o : out) {
    CHECK_FALSE(o.skipped_first);
    CHECK(o.skipped_second);
    CHECK(o.scale == 512.0);
    CHECK(o.steps == 1);
  }
  CHECK(out[0].w == out[1].w);  // identical replicas, bitwise
  CHECK(out[0].v == out[1].v);
  CHECK(out[0].masters == out[1].masters);

  // One process whose masters receive the mean by hand: the ranks' update is the update on the mean gradient.
  Model<half> ref;
  optim::MixedPrecisionStep<Model<half>, precision::fp16> ref_step(ref, adamw(1e-2), scaling);
  set_rank_gradients(ref, ref_step.loss_scale(), 0);
  const double s = ref_step.loss_scale();
  ref_step.step(1.0, [&](optim::MasterWeights<Model<half>>& masters) {
    masters.visit_parameters(
        [&](std::string_view name, nn::Parameter<float>& p) {
          for (std::int64_t i = 0; i < p.grad.numel(); ++i)
            p.grad[i] = name == "bias" ? static_cast<float>(s * 1.5e-3)
                                       : (static_cast<float>(half(static_cast<float>(s * rank_gradient(0, i)))) +
                                          static_cast<float>(half(static_cast<float>(s * rank_gradient(1, i))))) /
                                             2;
        },
        {});
  });
  const auto want = master_values(ref_step.masters());
  REQUIRE(want.size() == out[0].masters.size());
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(out[0].masters[i]) - want[i]) / std::abs(want[i]));
  MESSAGE("largest relative gap of the masters to the update on the mean gradient: " << worst);
  CHECK(worst < 1e-6);
  // Without the averaging rank 0 would have stepped on its own gradient: its even elements move the other way.
  Model<half> alone;
  optim::MixedPrecisionStep<Model<half>, precision::fp16> alone_step(alone, adamw(1e-2), scaling);
  set_rank_gradients(alone, alone_step.loss_scale(), 0);
  alone_step.step(1.0);
  CHECK(bits(alone.w.value) != out[0].w);
}
