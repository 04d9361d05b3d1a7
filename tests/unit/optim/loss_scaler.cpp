// SPDX-License-Identifier: MIT
// Dynamic loss scaling with GradScaler's semantics, on the CPU with injected infinities: unscaling is exact for
// powers of two, a non-finite gradient skips the update and backs the scale off, growth_interval finite steps grow
// it, a scaled run equals the unscaled one bitwise, and the state resumes exactly.
#include "spo/optim/loss_scaler.hpp"

#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/layer.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/optim/adamw.hpp"

using namespace spo;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();

/// A linear layer y = W x + b trained on a fixed batch against a target: loss = 0.5 |y - target|^2 / rows.
struct Problem {
  nn::Linear<float> layer{3, 2, true};
  Tensor<float> x, target;
  Problem() {
    Generator g{17, 0};
    layer.reset_parameters(g);
    x = randn<float>(Shape{4, 3}, g);       // [4, 3]
    target = randn<float>(Shape{4, 2}, g);  // [4, 2]
  }
  /// Accumulates `loss_scale` x the loss's gradient into the layer's gradients.
  void backward(double loss_scale) {
    nn::zero_grad(layer);
    const auto y = layer.forward(x);  // [4, 2]
    Tensor<float> dy(y.shape());
    for (std::int64_t i = 0; i < y.numel(); ++i) dy[i] = static_cast<float>(loss_scale * (y[i] - target[i]) / 4.0);
    layer.backward(dy);
  }
  std::vector<float> weights() {
    std::vector<float> w;
    layer.visit_parameters(
        [&](std::string_view, nn::Parameter<float>& p) {
          w.insert(w.end(), p.value.data(), p.value.data() + p.value.numel());
        },
        {});
    return w;
  }
  nn::Parameter<float>& weight() {
    nn::Parameter<float>* w = nullptr;
    layer.visit_parameters(
        [&](std::string_view name, nn::Parameter<float>& p) {
          if (name == "weight") w = &p;
        },
        {});
    return *w;
  }
};

optim::AdamW<float> adamw() { return optim::AdamW<float>(optim::AdamWOptions{1e-2, 0.9, 0.999, 1e-8, 1e-4}); }

}  // namespace

TEST_CASE("loss scaler: GradScaler's defaults, and bad options are config errors naming the key") {
  const optim::DynamicLossScaler s;
  CHECK(s.loss_scale() == 65536.0);
  CHECK(s.growth_tracker() == 0);
  CHECK_THROWS_WITH_AS(optim::DynamicLossScaler({0.0, 2.0, 0.5, 10}), doctest::Contains("loss_scale.init_scale"),
                       spo::config_error);
  CHECK_THROWS_WITH_AS(optim::DynamicLossScaler({8.0, 1.0, 0.5, 10}), doctest::Contains("loss_scale.growth_factor"),
                       spo::config_error);
  CHECK_THROWS_WITH_AS(optim::DynamicLossScaler({8.0, 2.0, 1.0, 10}), doctest::Contains("loss_scale.backoff_factor"),
                       spo::config_error);
  CHECK_THROWS_WITH_AS(optim::DynamicLossScaler({8.0, 2.0, 0.5, 0}), doctest::Contains("loss_scale.growth_interval"),
                       spo::config_error);
}

TEST_CASE("loss scaler: unscaling by a power of two is exact, and an injected infinity is found") {
  Problem p, q;
  const optim::DynamicLossScaler s;
  p.backward(1.0);
  q.backward(s.loss_scale());
  CHECK(s.unscale(q.layer));
  const auto& gp = p.weight().grad;
  const auto& gq = q.weight().grad;
  for (std::int64_t i = 0; i < gp.numel(); ++i) CHECK(gq[i] == gp[i]);
  q.backward(s.loss_scale());
  q.weight().grad[3] = inf;
  CHECK_FALSE(s.unscale(q.layer));
  q.backward(s.loss_scale());
  q.weight().grad[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(s.unscale(q.layer));
}

TEST_CASE("loss scaler: a non-finite gradient skips the update and halves the scale; growth after the interval") {
  Problem p;
  auto opt = adamw();
  optim::DynamicLossScaler s({1024.0, 2.0, 0.5, 3});
  // Two finite steps: updates taken, the tracker counts.
  for (int i = 0; i < 2; ++i) {
    p.backward(s.loss_scale());
    const auto r = s.step(p.layer, opt, 1.0);
    CHECK_FALSE(r.skipped);
    CHECK(std::isfinite(r.grad_norm));
  }
  CHECK(s.loss_scale() == 1024.0);
  CHECK(s.growth_tracker() == 2);
  CHECK(opt.step_count() == 2);
  // An injected infinity: no parameter moves, no optimizer step, the scale backs off and the tracker restarts.
  const auto before = p.weights();
  p.backward(s.loss_scale());
  p.weight().grad[1] = inf;
  const auto r = s.step(p.layer, opt, 1.0);
  CHECK(r.skipped);
  CHECK(r.scale_used == 1024.0);
  CHECK(p.weights() == before);
  CHECK(opt.step_count() == 2);
  CHECK(s.loss_scale() == 512.0);
  CHECK(s.growth_tracker() == 0);
  // Three finite steps in a row double it.
  for (int i = 0; i < 3; ++i) {
    p.backward(s.loss_scale());
    CHECK_FALSE(s.step(p.layer, opt, 1.0).skipped);
  }
  CHECK(s.loss_scale() == 1024.0);
  CHECK(s.growth_tracker() == 0);
  CHECK(opt.step_count() == 5);
}

TEST_CASE("loss scaler: training with a power-of-two scale equals unscaled training bitwise") {
  Problem a, b;
  auto oa = adamw(), ob = adamw();
  optim::DynamicLossScaler s({4096.0, 2.0, 0.5, 2});  // the scale grows to 8192 and 16384 along the way
  for (int i = 0; i < 5; ++i) {
    a.backward(1.0);
    optim::clip_grad_norm(a.layer, 0.05);
    oa.step(a.layer);
    b.backward(s.loss_scale());
    CHECK_FALSE(s.step(b.layer, ob, 0.05).skipped);
  }
  CHECK(s.loss_scale() == 16384.0);
  CHECK(a.weights() == b.weights());
}

TEST_CASE("loss scaler: the state resumes exactly and a corrupt state is an error") {
  optim::DynamicLossScaler a({256.0, 2.0, 0.5, 4});
  a.update(true);
  a.update(false);
  a.update(true);
  optim::DynamicLossScaler b({256.0, 2.0, 0.5, 4});
  b.load_state(a.state());
  CHECK(b.loss_scale() == 128.0);
  CHECK(b.growth_tracker() == 1);
  for (bool f : {true, true, true, false, true}) {
    a.update(f);
    b.update(f);
    CHECK(a.loss_scale() == b.loss_scale());
    CHECK(a.growth_tracker() == b.growth_tracker());
  }
  CHECK_THROWS_AS(b.load_state({{"scale", -1.0}, {"growth_tracker", 0}}), spo::error);
  CHECK_THROWS_AS(b.load_state({{"scale", 2.0}, {"growth_tracker", 4}}), spo::error);
}
