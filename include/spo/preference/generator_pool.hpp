// SPDX-License-Identifier: MIT
/// @brief Off-policy preference pairs from a pool of generators (as Pick-a-Pic's images come from many models): which
/// generator makes which image of a prompt's pairs, and the seed of each generator's batch.
#pragma once

#include <cstdint>
#include <vector>

#include "spo/core/error.hpp"

namespace spo::preference {

/*!
  ENSURES
    - of a prompt's 2 pairs images (images 2i and 2i + 1 form pair i), returns per generator of a pool of
      `generators` the image rows it makes, increasing: image a of pair i from generator i mod G, image b from
      floor(i / G) mod G, so that every ordered combination of two generators (a generator with itself included)
      occurs once in each G^2 consecutive pairs
!*/
inline std::vector<std::vector<std::int64_t>> pool_rows(std::int64_t pairs, std::int64_t generators) {
  SPO_CHECK(pairs >= 1 && generators >= 1, "pool_rows: " << pairs << " pairs from " << generators << " generators");
  std::vector<std::vector<std::int64_t>> rows(static_cast<std::size_t>(generators));
  for (std::int64_t i = 0; i < pairs; ++i) {
    rows[static_cast<std::size_t>(i % generators)].push_back(2 * i);
    rows[static_cast<std::size_t>((i / generators) % generators)].push_back(2 * i + 1);
  }
  return rows;
}

/// The seed of generator g's batch for a prompt whose on-policy seed is `seed` (distinct from it and across g).
inline std::uint64_t pool_seed(std::uint64_t seed, std::size_t g) {
  return seed ^ (0x9e3779b97f4a7c15ULL * (static_cast<std::uint64_t>(g) + 1));
}

}  // namespace spo::preference
