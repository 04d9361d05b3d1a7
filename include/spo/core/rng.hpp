// SPDX-License-Identifier: MIT
/// @brief Counter-based Philox4x32-10 generator: the same (seed, offset) gives the same numbers on every device.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "spo/core/host_device.hpp"

namespace spo {

/// Philox4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
/// Pure function of (counter, key); no state, so any element of a stream can be computed independently.
struct Philox4x32 {
  using counter_type = std::array<std::uint32_t, 4>;
  using key_type = std::array<std::uint32_t, 2>;

  static constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  static constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;

  SPO_HOST_DEVICE static constexpr counter_type apply(counter_type c, key_type k) {
    for (int round = 0; round < 10; ++round) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * c[0];
      const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * c[2];
      c = {static_cast<std::uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<std::uint32_t>(p1),
           static_cast<std::uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<std::uint32_t>(p0)};
      k = {k[0] + w0, k[1] + w1};
    }
    return c;
  }
};

/*!
  WHAT THIS REPRESENTS
    The position in a Philox stream: a 64-bit seed (the key) and a 64-bit block offset (the counter).
    Block b of the stream is Philox(counter = {b_lo, b_hi, 0, 0}, key = {seed_lo, seed_hi}) and yields 4 numbers;
    element i of a draw of n numbers comes from block offset + i / 4, lane i % 4. A draw of n numbers advances
    the offset by ceil(n / 4). Saving (seed, offset) and restoring it resumes the stream exactly.
!*/
struct Generator {
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;

  /// Reserves n numbers and returns the first block index of the reservation.
  std::uint64_t reserve(std::uint64_t n) {
    const std::uint64_t first = offset;
    offset += (n + 3) / 4;
    return first;
  }
  friend bool operator==(const Generator&, const Generator&) = default;
};

namespace rng {

SPO_HOST_DEVICE inline std::array<std::uint32_t, 4> block(std::uint64_t seed, std::uint64_t block_index) {
  return Philox4x32::apply(
      {static_cast<std::uint32_t>(block_index), static_cast<std::uint32_t>(block_index >> 32), 0u, 0u},
      {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
}

/// Maps a 32-bit integer to a double in (0, 1]: never 0, so log() in Box-Muller is finite.
SPO_HOST_DEVICE inline double to_unit_open_closed(std::uint32_t u) { return (static_cast<double>(u) + 1.0) * 0x1p-32; }

/// Uniform [0, 1) number i of the stream starting at block `first` (24-bit mantissa for float exactness).
SPO_HOST_DEVICE inline double uniform_at(std::uint64_t seed, std::uint64_t first, std::uint64_t i) {
  const auto b = block(seed, first + i / 4);
  return static_cast<double>(b[i % 4] >> 8) * 0x1p-24;
}

/// Standard normal number i of the stream starting at block `first`. Box-Muller in double on lanes (0,1) and (2,3):
/// lane 0 = r cos(theta), lane 1 = r sin(theta), with r = sqrt(-2 ln u0), theta = 2 pi u1.
SPO_HOST_DEVICE inline double normal_at(std::uint64_t seed, std::uint64_t first, std::uint64_t i) {
  const auto b = block(seed, first + i / 4);
  const unsigned lane = static_cast<unsigned>(i % 4);
  const unsigned pair = lane & ~1u;
  const double r = std::sqrt(-2.0 * std::log(to_unit_open_closed(b[pair])));
  const double theta = 6.283185307179586476925 * (static_cast<double>(b[pair + 1]) * 0x1p-32);
  return (lane & 1u) ? r * std::sin(theta) : r * std::cos(theta);
}

/// The four standard normal numbers of block `block_index` (lanes 0..3, as normal_at computes them one by one).
SPO_HOST_DEVICE inline std::array<double, 4> normal4(std::uint64_t seed, std::uint64_t block_index) {
  const auto b = block(seed, block_index);
  std::array<double, 4> out{};
  for (unsigned pair = 0; pair < 4; pair += 2) {
    const double r = std::sqrt(-2.0 * std::log(to_unit_open_closed(b[pair])));
    const double theta = 6.283185307179586476925 * (static_cast<double>(b[pair + 1]) * 0x1p-32);
    out[pair] = r * std::cos(theta);
    out[pair + 1] = r * std::sin(theta);
  }
  return out;
}

}  // namespace rng
}  // namespace spo
