// SPDX-License-Identifier: MIT
#include "spo/loss/pair_preference.hpp"

#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/error.hpp"

using spo::loss::pair_preference_loss;

TEST_CASE("pair preference loss: values by hand, tie correction, prompt weights") {
  // Decided pair: CE of the preferred side. l = (2, 0): -log(e^2 / (e^2 + 1)).
  const double ce = std::log(1 + std::exp(-2.0));
  std::vector<double> la{2.0}, lb{0.0}, ya{1.0}, yb{0.0};
  auto r = pair_preference_loss(la, lb, ya, yb);
  CHECK(r.loss == doctest::Approx(ce).epsilon(1e-14));
  CHECK(r.accuracy == 1.0);
  // A tie at equal logits costs exactly 0 thanks to the log(0.5) correction; gradient 0.
  std::vector<double> z{0.7}, h{0.5};
  r = pair_preference_loss(z, z, h, h);
  CHECK(std::abs(r.loss) < 1e-15);
  CHECK(std::abs(r.d_logit_a[0]) < 1e-15);
  CHECK(std::isnan(r.accuracy));
  // Tie at unequal logits: 0.5 CE_a + 0.5 CE_b + log 0.5 = 0.5 (lse - a) + 0.5 (lse - b) + log 0.5.
  std::vector<double> a2{1.0}, b2{-1.0};
  r = pair_preference_loss(a2, b2, h, h);
  const double lse = std::log(std::exp(1.0) + std::exp(-1.0));
  CHECK(r.loss == doctest::Approx(lse - 0.0 + std::log(0.5)).epsilon(1e-14));
  // Weights 1/n_i normalised: pairs of a prompt with 3 examples weigh a third of a prompt with 1.
  std::vector<double> la3{2.0, 0.0}, lb3{0.0, 0.0}, ya3{1.0, 1.0}, yb3{0.0, 0.0}, n3{1.0, 3.0};
  r = pair_preference_loss(la3, lb3, ya3, yb3, n3);
  CHECK(r.loss == doctest::Approx(0.75 * ce + 0.25 * std::log(2.0)).epsilon(1e-14));
}

TEST_CASE("pair preference loss: gradient by central differences") {
  std::vector<double> la{0.3, -1.2, 2.5, 0.0}, lb{1.1, -0.4, 2.0, 0.2};
  std::vector<double> ya{1.0, 0.0, 0.5, 1.0}, yb{0.0, 1.0, 0.5, 0.0}, n{2.0, 1.0, 4.0, 2.0};
  const auto r = pair_preference_loss(la, lb, ya, yb, n);
  const double h = 1e-6;
  for (std::size_t i = 0; i < la.size(); ++i)
    for (int side = 0; side < 2; ++side) {
      auto& v = side == 0 ? la : lb;
      const double keep = v[i];
      v[i] = keep + h;
      const double up = pair_preference_loss(la, lb, ya, yb, n).loss;
      v[i] = keep - h;
      const double down = pair_preference_loss(la, lb, ya, yb, n).loss;
      v[i] = keep;
      const double fd = (up - down) / (2 * h);
      CHECK((side == 0 ? r.d_logit_a[i] : r.d_logit_b[i]) == doctest::Approx(fd).epsilon(1e-7));
    }
}

TEST_CASE("pair preference loss: bad input") {
  std::vector<double> a{0.0}, b{0.0};
  std::vector<double> bad_y{1.5}, bad_n{-0.5}, y0{0.0}, y1{1.0};
  CHECK_THROWS_AS(pair_preference_loss(a, b, bad_y, bad_n), spo::error);
  CHECK_THROWS_AS(pair_preference_loss(a, b, y1, y1), spo::error);  // does not sum to 1
  std::vector<double> nan{std::nan("")};
  CHECK_THROWS_AS(pair_preference_loss(nan, b, y1, y0), spo::error);
  std::vector<double> two{0.0, 0.0};
  CHECK_THROWS_AS(pair_preference_loss(two, b, y1, y0), spo::error);
  std::vector<double> zero{0.0};
  CHECK_THROWS_AS(pair_preference_loss(a, b, y1, y0, zero), spo::error);
}
