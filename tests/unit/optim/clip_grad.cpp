// SPDX-License-Identifier: MIT
#include "spo/optim/clip_grad.hpp"

#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include "spo/nn/parameter.hpp"

using namespace spo;

namespace {
/// Two trainable parameters with gradients [3, 4] and [12] (total norm 13) and a frozen one.
struct Params {
  nn::Parameter<float> u{Shape{2}}, w{Shape{1}}, frozen{Shape{3}};
  Params() {
    u.grad = Tensor<float>(Shape{2}, {3, 4});
    w.grad = Tensor<float>(Shape{1}, {12});
    frozen.set_trainable(false);
  }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(nn::join_name(prefix, "u"), u);
    f(nn::join_name(prefix, "w"), w);
    f(nn::join_name(prefix, "frozen"), frozen);
  }
};
}  // namespace

TEST_CASE("total norm over all trainable gradients; scale max_norm / (total + 1e-6) when above") {
  Params p;
  CHECK(optim::grad_norm(p) == 13.0);
  CHECK(optim::clip_grad_norm(p, 6.5) == 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  CHECK(p.u.grad[0] == static_cast<float>(3.0f * static_cast<float>(coef)));
  CHECK(p.u.grad[1] == static_cast<float>(4.0f * static_cast<float>(coef)));
  CHECK(p.w.grad[0] == static_cast<float>(12.0f * static_cast<float>(coef)));
  CHECK(optim::grad_norm(p) == doctest::Approx(6.5).epsilon(1e-6));
}

TEST_CASE("gradients below the limit are untouched") {
  Params p;
  CHECK(optim::clip_grad_norm(p, 20.0) == 13.0);
  CHECK(p.u.grad[0] == 3.0f);
  CHECK(p.w.grad[0] == 12.0f);
  // torch clamps coef = max_norm / (total + 1e-6) at 1: total == max_norm still scales by 13 / (13 + 1e-6)
  optim::clip_grad_norm(p, 13.0);
  CHECK(p.w.grad[0] == static_cast<float>(12.0f * static_cast<float>(13.0 / (13.0 + 1e-6))));
}

TEST_CASE("a non-finite total is returned (or thrown) and never applied") {
  Params p;
  p.u.grad[0] = std::numeric_limits<float>::infinity();
  const double total = optim::clip_grad_norm(p, 1.0);
  CHECK(std::isinf(total));
  CHECK(p.u.grad[1] == 4.0f);
  CHECK(p.w.grad[0] == 12.0f);
  p.u.grad[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(optim::clip_grad_norm(p, 1.0)));
  CHECK(p.w.grad[0] == 12.0f);
  CHECK_THROWS_WITH_AS(optim::clip_grad_norm(p, 1.0, true), doctest::Contains("nan"), error);
  CHECK_THROWS_AS(optim::clip_grad_norm(p, 0.0), error);
}
