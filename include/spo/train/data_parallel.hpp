// SPDX-License-Identifier: MIT
/// @brief What every data-parallel trainer shares: per-rank seeds, reduced round records, and the ranks' generators in
/// checkpoints.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/dist/concepts.hpp"
#include "spo/dist/exchange.hpp"
#include "spo/train/concepts.hpp"

namespace spo::train {

/// The seed of rank r's generator: the run's seed on rank 0 (so a one-rank run is the run without a launcher), a
/// SplitMix64 mix of (seed, r) elsewhere: every rank samples its own noise, as the official scripts'
/// set_seed(seed, device_specific=True), without colliding with the streams of neighbouring seeds.
inline std::uint64_t rank_seed(std::uint64_t seed, int rank) {
  if (rank == 0) return seed;
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(rank);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// The run's record from every rank's {"metrics", "sample_s", "train_s"} (JSON text, rank order): see reduce_record.
inline void combine_records(const std::vector<std::string>& ranks, RoundRecord& rec) {
  std::vector<nlohmann::json> recs;
  for (const auto& a : ranks) recs.push_back(nlohmann::json::parse(a));
  const auto w = static_cast<double>(recs.size());
  auto add = [](nlohmann::json& acc, const nlohmann::json& v, double scale) {
    if (acc.is_null()) acc = v.is_number_integer() && scale == 1.0 ? nlohmann::json(0) : nlohmann::json(0.0);
    if (acc.is_number_integer() && v.is_number_integer())
      acc = acc.get<std::int64_t>() + v.get<std::int64_t>();
    else
      acc = acc.get<double>() + v.get<double>() * scale;
  };
  nlohmann::json out = nlohmann::json::object();
  for (const auto& r : recs)
    for (const auto& [key, v] : r.at("metrics").items()) {
      const bool sum = std::find(rec.sum_keys.begin(), rec.sum_keys.end(), key) != rec.sum_keys.end();
      if (v.is_number()) {
        add(out[key], v, sum ? 1.0 : 1.0 / w);
      } else if (v.is_object()) {
        auto& o = out[key];
        if (o.is_null()) o = nlohmann::json::object();
        for (const auto& [k2, x] : v.items())
          if (x.is_number()) add(o[k2], x, 1.0);
      } else if (!out.contains(key)) {
        out[key] = v;
      }
    }
  rec.metrics = std::move(out);
  for (const auto& r : recs) {
    rec.sample_s = std::max(rec.sample_s, r.at("sample_s").get<double>());
    rec.train_s = std::max(rec.train_s, r.at("train_s").get<double>());
  }
}

/*!
  ENSURES
    - every rank's record replaced by the run's, the same on every rank: top-level numbers are the mean over ranks
      (each rank trains on equally many items), except the counts in rec.sum_keys, which are summed; objects of numbers
      (e.g. valid pairs per timestep) are summed key by key; sample_s and train_s are the slowest rank's
!*/
template <dist::Communicator C>
void reduce_record(C& comm, RoundRecord& rec) {
  if (comm.size() == 1) return;
  const nlohmann::json mine = {{"metrics", rec.metrics}, {"sample_s", rec.sample_s}, {"train_s", rec.train_s}};
  combine_records(dist::all_gather_strings(comm, {mine.dump()}), rec);
}

/// Every rank's generator as [[seed, offset], ...] in rank order (what a checkpoint of a W-rank run stores).
template <dist::Communicator C>
nlohmann::json rank_generators(C& comm, const Generator& gen) {
  const std::uint64_t mine[2] = {gen.seed, gen.offset};
  const auto all = dist::all_gather_values(comm, std::span<const std::uint64_t>(mine, 2));
  nlohmann::json g = nlohmann::json::array();
  for (std::size_t r = 0; r + 1 < all.size(); r += 2) g.push_back({all[r], all[r + 1]});
  return g;
}

/*!
  ENSURES
    - this rank's generator from a checkpoint's config: its entry of "rank_generators" (written by a W-rank run),
      or `saved` (the checkpoint's own generator) for a checkpoint of one process
    - throws spo::input_error when the checkpoint's number of ranks is not comm.size(): the ranks' random streams
      would not continue exactly
!*/
template <dist::Communicator C>
Generator rank_generator(C& comm, const nlohmann::json& config, const Generator& saved,
                         const std::filesystem::path& checkpoint) {
  if (!config.contains("rank_generators")) {
    SPO_EXPECT(comm.size() == 1, checkpoint.string()
                                     << ": written by a single process; resume it with one rank, not " << comm.size());
    return saved;
  }
  const auto& g = config.at("rank_generators");
  SPO_EXPECT(g.is_array() && static_cast<int>(g.size()) == comm.size(),
             checkpoint.string() << ": written by a run of " << g.size() << " ranks; resume it with as many ("
                                 << comm.size() << " now), or the ranks' random streams would not continue exactly");
  const auto& mine = g.at(static_cast<std::size_t>(comm.rank()));
  return Generator{mine.at(0).get<std::uint64_t>(), mine.at(1).get<std::uint64_t>()};
}

}  // namespace spo::train
