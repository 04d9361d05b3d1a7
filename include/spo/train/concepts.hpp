// SPDX-License-Identifier: MIT
/// @brief The train module's contract: what one round of a method returns and what a method supplies to the round
/// loop every method shares (train::RoundTrainer).
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace spo::train {

/// What one round of a method reports: its metrics record (the loop adds step, sample_s, train_s and wall_s), a
/// progress-bar line, and the seconds spent sampling and training.
struct RoundRecord {
  std::int64_t round = 0;
  nlohmann::json metrics = nlohmann::json::object();
  std::string summary;
  double sample_s = 0, train_s = 0;
  std::vector<std::string> sum_keys;  ///< metrics that are counts: summed over ranks (the others are averaged)
};

/*!
  WHAT THIS REPRESENTS
    A preference-optimisation method as the shared round loop drives it (SPO, Diffusion-DPO, D3PO, DDPO): the loop
    owns prompt draws' generator, the optimizer, checkpoints and exact resume, the metrics log and the progress bar;
    the method supplies only its round.
  REQUIRES
    - m.run_round() -> RoundRecord: samples, trains and advances the round counter by one; it draws every random
      number from the loop's generator, so that a resumed run repeats an uninterrupted one bitwise
    - m.round(): the rounds completed
    - optionally m.save_state(json&) const / m.load_state(const json&) for state beyond the loop's (e.g. DDPO's
      per-prompt statistics), written into and read from the checkpoint
!*/
template <class M>
concept RoundMethod = requires(M& m) {
  { m.run_round() } -> std::same_as<RoundRecord>;
  { m.round() } -> std::convertible_to<std::int64_t>;
};

}  // namespace spo::train
