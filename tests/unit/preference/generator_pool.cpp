// SPDX-License-Identifier: MIT
// The off-policy pool: every generator makes its share of a prompt's images, every ordered combination of two
// generators forms pairs equally often, and the generators' seeds differ from the on-policy seed and from each other.
#include "spo/preference/generator_pool.hpp"

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

using namespace spo;

TEST_CASE("generator pool: image a of pair i from generator i mod G, image b from floor(i / G) mod G") {
  const std::int64_t pairs = 48, g = 4;
  const auto rows = preference::pool_rows(pairs, g);
  REQUIRE(rows.size() == 4);
  std::vector<int> maker(2 * pairs, -1);
  for (std::size_t k = 0; k < rows.size(); ++k) {
    CHECK(rows[k].size() == 24);  // 2 P / G images each
    for (std::size_t j = 0; j < rows[k].size(); ++j) {
      if (j > 0) CHECK(rows[k][j] > rows[k][j - 1]);
      CHECK(maker[static_cast<std::size_t>(rows[k][j])] == -1);  // every image made once
      maker[static_cast<std::size_t>(rows[k][j])] = static_cast<int>(k);
    }
  }
  std::map<std::pair<int, int>, int> combos;
  for (std::int64_t i = 0; i < pairs; ++i) {
    CHECK(maker[static_cast<std::size_t>(2 * i)] == i % g);
    CHECK(maker[static_cast<std::size_t>(2 * i + 1)] == (i / g) % g);
    ++combos[{maker[static_cast<std::size_t>(2 * i)], maker[static_cast<std::size_t>(2 * i + 1)]}];
  }
  CHECK(combos.size() == 16);  // every ordered combination, 3 times in 48 pairs
  for (const auto& [c, n] : combos) CHECK(n == 3);
  // One generator makes everything; a bad pool is an error.
  CHECK(preference::pool_rows(5, 1)[0].size() == 10);
  CHECK_THROWS_AS(preference::pool_rows(5, 0), spo::error);
}

TEST_CASE("generator pool: the batch seeds differ from the on-policy seed and from each other") {
  std::set<std::uint64_t> seen{100000};
  for (std::size_t g = 0; g < 8; ++g) CHECK(seen.insert(preference::pool_seed(100000, g)).second);
}
