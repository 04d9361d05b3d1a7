// SPDX-License-Identifier: MIT
#include "spo/core/rng.hpp"

#include <cmath>

#include <doctest/doctest.h>

#include "spo/tensor/ops.hpp"

using namespace spo;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  // Known-answer tests of the Random123 distribution (kat_vectors, philox4x32 10 rounds).
  auto r = Philox4x32::apply({0u, 0u, 0u, 0u}, {0u, 0u});
  CHECK(r == Philox4x32::counter_type{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  r = Philox4x32::apply({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  CHECK(r == Philox4x32::counter_type{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  r = Philox4x32::apply({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  CHECK(r == Philox4x32::counter_type{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("normal stream: deterministic, resumable, and standard normal") {
  Generator a{42, 0}, b{42, 0};
  auto x = randn<double>(Shape{1000}, a);
  auto y = randn<double>(Shape{1000}, b);
  CHECK(max_abs_diff<double>(x.view(), y.view()) == 0.0);
  CHECK(a.offset == 250);

  // Two draws equal one draw of the concatenation when the first length is a multiple of 4.
  Generator c{42, 0};
  auto first = randn<double>(Shape{600}, c);
  auto second = randn<double>(Shape{400}, c);
  for (int i = 0; i < 600; ++i) REQUIRE(first[i] == x[i]);
  for (int i = 0; i < 400; ++i) REQUIRE(second[i] == x[600 + i]);

  // Different seeds differ.
  Generator d{43, 0};
  auto z = randn<double>(Shape{1000}, d);
  CHECK(max_abs_diff<double>(x.view(), z.view()) > 0.1);

  // Moments of 2^18 samples: mean 0 +- 5 sigma/sqrt(n), variance 1 +- 5 sqrt(2/n), kurtosis 3 +- 0.1.
  Generator g{7, 0};
  const std::int64_t n = 1 << 18;
  auto s = randn<double>(Shape{n}, g);
  double m1 = 0, m2 = 0, m4 = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    m1 += s[i];
    m2 += s[i] * s[i];
    m4 += s[i] * s[i] * s[i] * s[i];
  }
  m1 /= n;
  m2 /= n;
  m4 /= n;
  CHECK(std::abs(m1) < 5.0 / std::sqrt(double(n)));
  CHECK(std::abs(m2 - 1.0) < 5.0 * std::sqrt(2.0 / n));
  CHECK(std::abs(m4 / (m2 * m2) - 3.0) < 0.1);
}

TEST_CASE("fill_normal (blocked) equals the element-wise definition normal_at") {
  Generator g{11, 5};
  auto x = randn<double>(Shape{1001}, g);
  for (std::int64_t i = 0; i < 1001; ++i) REQUIRE(x[i] == rng::normal_at(11, 5, static_cast<std::uint64_t>(i)));
  CHECK(g.offset == 5 + 251);
}

TEST_CASE("uniform stream lies in [lo, hi) with the right mean") {
  Generator g{3, 0};
  Tensor<float> u(Shape{1 << 16});
  fill_uniform(u.view(), g, -2.0f, 2.0f);
  double sum = 0;
  for (std::int64_t i = 0; i < u.numel(); ++i) {
    REQUIRE(u[i] >= -2.0f);
    REQUIRE(u[i] < 2.0f);
    sum += u[i];
  }
  CHECK(std::abs(sum / u.numel()) < 0.03);
}
