// SPDX-License-Identifier: MIT
#include "spo/core/half.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "spo/tensor/ops.hpp"

using namespace spo;

namespace {

/// Reference rounding by search: the value of `table` (all finite values of a 16-bit format, as doubles, paired
/// with their bit patterns and sorted) nearest to x, ties to the even bit pattern; past the largest finite value
/// by half an ulp or more -> infinity (IEEE 754 overflow under round-to-nearest-even).
struct Nearest {
  std::vector<std::pair<double, std::uint16_t>> table;  // non-negative finite values
  double overflow_threshold;                            // max + ulp(max) / 2

  std::uint16_t operator()(float xf, std::uint16_t inf_bits) const {
    const double x = std::fabs(static_cast<double>(xf));
    const std::uint16_t sign = std::signbit(xf) ? 0x8000 : 0;
    if (x >= overflow_threshold) return sign | inf_bits;
    auto hi = std::lower_bound(table.begin(), table.end(), std::pair<double, std::uint16_t>{x, 0});
    if (hi->first == x) return sign | hi->second;
    auto lo = hi - 1;
    const double dlo = x - lo->first, dhi = hi->first - x;
    if (dlo < dhi) return sign | lo->second;
    if (dhi < dlo) return sign | hi->second;
    return sign | ((lo->second & 1) ? hi->second : lo->second);
  }
};

Nearest make_table(float (*decode)(std::uint16_t), std::uint16_t inf_bits) {
  Nearest n;
  for (std::uint32_t b = 0; b < inf_bits; ++b) n.table.emplace_back(decode(static_cast<std::uint16_t>(b)), b);
  std::sort(n.table.begin(), n.table.end());
  const double max = n.table.back().first, below = n.table[n.table.size() - 2].first;
  n.overflow_threshold = max + (max - below) / 2;
  n.table.emplace_back(2 * max, inf_bits);  // sentinel above every finite value
  return n;
}

std::vector<float> test_floats(std::uint32_t seed) {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          65504.0f,
                          65519.99f,
                          65520.0f,
                          65536.0f,
                          0x1p-14f,
                          0x1p-24f,
                          0x1p-25f,
                          0x1.8p-25f,
                          0x1.8p-24f,
                          0x1.0p-26f,
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(),
                          0x1.fefffep127f,
                          0x1.ff0000p127f,
                          1.0f + 0x1p-8f,
                          1.0f + 0x1p-11f,
                          1.0f + 0x3p-11f};
  // Every float whose bit pattern ends in the rounding-relevant region for both formats, plus random patterns.
  for (std::uint32_t e = 0; e < 256; ++e)
    for (std::uint32_t m : {0u, 1u, 0x0fffu, 0x1000u, 0x1001u, 0x2000u, 0x3000u, 0x7fffu, 0x8000u, 0x8001u, 0x18000u,
                            0x7fe000u, 0x7ff000u, 0x7fffffu})
      v.push_back(std::bit_cast<float>((e << 23) | m));
  std::mt19937 gen(seed);
  for (int i = 0; i < 300000; ++i) {
    v.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(gen())));
  }
  for (int i = 0; i < 100000; ++i)
    v.push_back(std::ldexp(std::uniform_real_distribution<float>(-1, 1)(gen), -30 + i % 50));
  std::erase_if(v, [](float f) { return std::isnan(f); });
  return v;
}

}  // namespace

TEST_CASE("f16: every bit pattern decodes as sign * 2^(e-15) * (1 + m/1024) and re-encodes to itself") {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    const float f = half_bits_to_float(h);
    const int e = (b >> 10) & 0x1f;
    const int m = b & 0x3ff;
    const double s = (b & 0x8000) ? -1.0 : 1.0;
    if (e == 31) {
      if (m == 0)
        CHECK(f == s * std::numeric_limits<float>::infinity());
      else
        CHECK(std::isnan(f));
    } else {
      const double expected = e == 0 ? s * std::ldexp(m, -24) : s * std::ldexp(1024 + m, e - 25);
      REQUIRE(static_cast<double>(f) == expected);
      CHECK(std::signbit(f) == ((b & 0x8000) != 0));
      CHECK(float_to_half_bits(f) == h);
    }
  }
  // NaN stays NaN (made quiet), keeping its sign.
  CHECK(float_to_half_bits(half_bits_to_float(0x7c01)) == 0x7e01);
  CHECK(float_to_half_bits(std::numeric_limits<float>::quiet_NaN()) == 0x7e00);
  CHECK(float_to_half_bits(-std::numeric_limits<float>::quiet_NaN()) == 0xfe00);
}

TEST_CASE("f16: float -> half rounds to nearest even (checked against a search over all half values)") {
  const std::uint32_t seed = 20240611;
  INFO("seed " << seed);
  const Nearest nearest = make_table(&half_bits_to_float, 0x7c00);
  int failures = 0;
  for (float f : test_floats(seed)) {
    const std::uint16_t got = float_to_half_bits(f), want = nearest(f, 0x7c00);
    if (got != want && ++failures < 10)
      CHECK_MESSAGE(got == want, "x = " << f << " (bits " << std::bit_cast<std::uint32_t>(f) << ")");
  }
  CHECK(failures == 0);
  CHECK(float_to_half_bits(65519.99f) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);
  CHECK(float_to_half_bits(0x1p-25f) == 0x0000);    // tie between 0 and 2^-24 -> even (0)
  CHECK(float_to_half_bits(0x1.8p-24f) == 0x0002);  // tie between 1 and 2 ulps -> even (2)
  CHECK(float_to_half_bits(1.0f + 0x1p-11f) == 0x3c00);
  CHECK(float_to_half_bits(1.0f + 0x3p-11f) == 0x3c02);
  CHECK(float_to_half_bits(-std::numeric_limits<float>::infinity()) == 0xfc00);
}

TEST_CASE("bf16: decoding is exact and float -> bf16 rounds to nearest even") {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_bits_to_float(static_cast<std::uint16_t>(b));
    if (!std::isnan(f)) REQUIRE(float_to_bf16_bits(f) == b);
  }
  const std::uint32_t seed = 77;
  INFO("seed " << seed);
  const Nearest nearest = make_table(&bf16_bits_to_float, 0x7f80);
  int failures = 0;
  for (float f : test_floats(seed)) {
    const std::uint16_t got = float_to_bf16_bits(f), want = nearest(f, 0x7f80);
    if (got != want && ++failures < 10) CHECK_MESSAGE(got == want, "x = " << f);
  }
  CHECK(failures == 0);
  CHECK(float_to_bf16_bits(1.0f + 0x1p-8f) == 0x3f80);  // tie -> even
  CHECK(float_to_bf16_bits(1.0f + 0x3p-8f) == 0x3f82);
  CHECK(float_to_bf16_bits(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::bit_cast<float>(0x7f800001u)))));  // payload in low bits
}

TEST_CASE_TEMPLATE("half and bfloat16 store the conversions' bits; convert_scalar and cast go through float", H, half,
                   bfloat16) {
  static_assert(HalfScalar<H> && StorageScalar<H> && !Scalar<H>);
  static_assert(std::same_as<compute_type_t<H>, float> && std::same_as<compute_type_t<double>, double>);
  constexpr bool is_half = std::same_as<H, half>;
  const auto to_bits = [](float f) { return is_half ? float_to_half_bits(f) : float_to_bf16_bits(f); };
  const auto from_bits = [](std::uint16_t b) { return is_half ? half_bits_to_float(b) : bf16_bits_to_float(b); };
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const H h = H::from_bits(bits);
    const float f = static_cast<float>(h);
    REQUIRE(std::bit_cast<std::uint32_t>(f) == std::bit_cast<std::uint32_t>(from_bits(bits)));
    if (!std::isnan(f)) REQUIRE(H(f).bits == bits);  // every finite or infinite value re-encodes to itself
  }
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 1000.0);
  for (int i = 0; i < 1000; ++i) {
    const double x = normal(rng);
    CHECK(convert_scalar<H>(x).bits == to_bits(static_cast<float>(x)));
    CHECK(convert_scalar<double>(convert_scalar<H>(x)) ==
          static_cast<double>(from_bits(to_bits(static_cast<float>(x)))));
    CHECK(convert_scalar<H>(convert_scalar<H>(x)) == convert_scalar<H>(x));
  }
  // Tensors: cast<H> of a float tensor is the element conversions; cast back is exact.
  Tensor<float> x(Shape{3, 70000});  // [3, 70000]: long enough for the threaded path
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(normal(rng)) * (i % 7 == 0 ? 1e-6f : 1.f);
  const auto h = cast<H>(x);  // [3, 70000]
  REQUIRE(h.shape() == x.shape());
  std::int64_t mismatches = 0;
  const auto back = cast<double>(h);  // [3, 70000]
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    mismatches += h[i].bits != to_bits(x[i]);
    mismatches += back[i] != static_cast<double>(from_bits(h[i].bits));
  }
  CHECK(mismatches == 0);
}
