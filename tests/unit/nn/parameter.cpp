// SPDX-License-Identifier: MIT
#include "spo/nn/parameter.hpp"

#include <doctest/doctest.h>

#include "spo/nn/linear.hpp"

using namespace spo;

TEST_CASE("parameters built under frozen_parameters_guard hold no gradient memory until made trainable") {
  {
    nn::Parameter<float> p(Shape{3, 4});
    CHECK(p.trainable);
    CHECK(p.grad.shape() == Shape{3, 4});
  }
  {
    nn::frozen_parameters_guard frozen;
    nn::Linear<float> l(4, 3);
    int params = 0;
    l.visit_parameters(
        [&](std::string_view, auto& p) {
          ++params;
          CHECK(!p.trainable);
          CHECK(p.grad.numel() == 0);
          CHECK(p.value.numel() > 0);
        },
        {});
    CHECK(params == 2);
    { nn::frozen_parameters_guard nested; }
    nn::Parameter<float> still(Shape{2});  // the outer guard is still alive
    CHECK(!still.trainable);
    still.set_trainable(true);
    CHECK(still.grad.shape() == Shape{2});
  }
  nn::Parameter<double> after(Shape{5});  // the guard restored the default
  CHECK(after.trainable);
  CHECK(after.grad.shape() == Shape{5});
}
