// SPDX-License-Identifier: MIT
#include "spo/preference/compare.hpp"

#include <array>
#include <map>

#include <doctest/doctest.h>

using namespace spo;
using namespace spo::preference;

static_assert(ComparePolicy<BestWorstCompare>);
static_assert(ComparePolicy<RandomPairCompare>);

TEST_CASE("best/worst compare: argmax wins, argmin loses, validity by the softmax gap") {
  Generator g{1, 0};
  std::array<double, 4> s{0.2, 1.5, -0.3, 0.9};
  auto c = BestWorstCompare{}.compare(s, 0.3, g);
  CHECK(c.win == 1);
  CHECK(c.lose == 2);
  // softmax([1.5, -0.3]) = [0.8581, 0.1419]: gap 0.7163
  CHECK(c.gap == doctest::Approx(std::exp(1.5) / (std::exp(1.5) + std::exp(-0.3)) -
                                 std::exp(-0.3) / (std::exp(1.5) + std::exp(-0.3)))
                     .epsilon(1e-12));
  CHECK(c.valid);
  // docs/algorithm.md 4.4: threshold 0.3 <=> s_max - s_min > 0.6190; 0.4 <=> > 0.8473.
  std::array<double, 2> just_below{0.0, 0.6189}, just_above{0.0, 0.6191};
  CHECK_FALSE(BestWorstCompare{}.compare(just_below, 0.3, g).valid);
  CHECK(BestWorstCompare{}.compare(just_above, 0.3, g).valid);
  std::array<double, 2> b4{0.0, 0.8472}, a4{0.0, 0.8474};
  CHECK_FALSE(BestWorstCompare{}.compare(b4, 0.4, g).valid);
  CHECK(BestWorstCompare{}.compare(a4, 0.4, g).valid);
  std::array<double, 3> equal{1.0, 1.0, 1.0};
  auto e = BestWorstCompare{}.compare(equal, 0.0, g);
  CHECK(e.win != e.lose);
  CHECK_FALSE(e.valid);  // gap 0 is not > 0
  CHECK_THROWS_AS(BestWorstCompare{}.compare(std::span<const double>(s.data(), 1), 0.3, g), spo::error);
  CHECK_THROWS_AS(check_threshold(1.0), spo::error);
  CHECK_THROWS_AS(check_threshold(-0.1), spo::error);
}

TEST_CASE("random-pair compare: uniform over ordered pairs, ordered by score, deterministic per seed") {
  std::array<double, 4> s{0.0, 3.0, 1.0, 2.0};
  Generator g{5, 0};
  std::map<std::pair<std::int64_t, std::int64_t>, int> counts;
  const int n = 12000;
  for (int i = 0; i < n; ++i) {
    auto c = RandomPairCompare{}.compare(s, 0.0, g);
    REQUIRE(c.win != c.lose);
    REQUIRE(s[static_cast<std::size_t>(c.win)] > s[static_cast<std::size_t>(c.lose)]);
    ++counts[{c.win, c.lose}];
  }
  CHECK(counts.size() == 6);  // all C(4, 2) pairs occur
  for (const auto& [pair, count] : counts) CHECK(std::abs(count - n / 6) < 5 * std::sqrt(n / 6.0));
  Generator a{9, 0}, b{9, 0};
  for (int i = 0; i < 10; ++i)
    CHECK(RandomPairCompare{}.compare(s, 0.3, a).win == RandomPairCompare{}.compare(s, 0.3, b).win);
}
