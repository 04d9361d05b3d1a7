// SPDX-License-Identifier: MIT
// gather_rows: rows of one tensor or of several, stacked in order, with bad rows rejected before any copy.
#include <cstdint>
#include <vector>

#include <doctest/doctest.h>

#include "spo/tensor/transfer.hpp"

using namespace spo;

namespace {
/// [4, 2, 3] with element (b, i, j) = 100 (offset + b) + 10 i + j.
Tensor<double, cpu> batch(double offset) {
  Tensor<double, cpu> x(Shape{4, 2, 3});  // [4, 2, 3]
  for (std::int64_t e = 0; e < x.numel(); ++e)
    x[e] = 100 * (offset + static_cast<double>(e / 6)) + (e % 6) / 3 * 10 + e % 3;
  return x;
}
}  // namespace

TEST_CASE("gather_rows: one tensor's rows, repeated and reordered, and no rows") {
  const auto x = batch(0);
  const std::vector<std::int64_t> rows{3, 0, 3};
  const auto g = gather_rows(x, rows);  // [3, 2, 3]
  REQUIRE(g.shape() == Shape{3, 2, 3});
  for (std::int64_t i = 0; i < 3; ++i)
    for (std::int64_t e = 0; e < 6; ++e) CHECK(g[i * 6 + e] == x[rows[static_cast<std::size_t>(i)] * 6 + e]);
  CHECK(gather_rows(x, std::vector<std::int64_t>{}).shape() == Shape{0, 2, 3});
}

TEST_CASE("gather_rows: row i of source i, from several tensors") {
  const auto a = batch(0), b = batch(10);
  const std::vector<const Tensor<double, cpu>*> sources{&b, &a, &b};
  const std::vector<std::int64_t> rows{1, 2, 0};
  const auto g = gather_rows<double, cpu>(sources, rows);  // [3, 2, 3]
  REQUIRE(g.shape() == Shape{3, 2, 3});
  CHECK(g[0] == 1100);   // b row 1
  CHECK(g[6] == 200);    // a row 2
  CHECK(g[12] == 1000);  // b row 0
  CHECK(g[17] == 1012);  // b row 0, last element
}

TEST_CASE("gather_rows: rows out of range, mismatched counts and other row shapes are errors") {
  const auto x = batch(0);
  CHECK_THROWS_WITH_AS(gather_rows(x, std::vector<std::int64_t>{4}), doctest::Contains("row 4"), spo::error);
  CHECK_THROWS_WITH_AS(gather_rows(x, std::vector<std::int64_t>{-1}), doctest::Contains("row -1"), spo::error);
  const Tensor<double, cpu> other(Shape{4, 5});  // [4, 5]: rows of 5, not 6
  const std::vector<const Tensor<double, cpu>*> mixed{&x, &other};
  const std::vector<std::int64_t> two{0, 0}, one{0};
  auto gather = [&](const std::vector<std::int64_t>& rows) { return gather_rows<double, cpu>(mixed, rows); };
  CHECK_THROWS_WITH_AS(gather(two), doctest::Contains("rows of 6 elements"), spo::error);
  CHECK_THROWS_WITH_AS(gather(one), doctest::Contains("2 sources"), spo::error);
}
