// SPDX-License-Identifier: MIT
/// @brief The DDPO PPO-clipped policy-gradient loss and its per-prompt advantage normalisation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/error.hpp"
#include "spo/loss/clipped_ratio.hpp"
#include "spo/loss/concepts.hpp"

namespace spo::loss {

/// Hyper-parameters of the DDPO loss; every key is required in a config.
struct DdpoLossOptions {
  BOOST_HANA_DEFINE_STRUCT(DdpoLossOptions, (double, clip_range), (double, adv_clip_max));
};

/// The defaults of kvablack/ddpo-pytorch config/base.py: clip_range = 1e-4, adv_clip_max = 5.
inline constexpr DdpoLossOptions ddpo_default_loss_options{1e-4, 5.0};

/// clip_range finite with 0 < clip_range < 1; adv_clip_max finite and > 0.
inline void validate(const DdpoLossOptions& o) {
  SPO_CONFIG_CHECK(std::isfinite(o.clip_range) && o.clip_range > 0 && o.clip_range < 1, "loss.clip_range",
                   "must lie in (0, 1), got " << o.clip_range);
  SPO_CONFIG_CHECK(std::isfinite(o.adv_clip_max) && o.adv_clip_max > 0, "loss.adv_clip_max",
                   "must be finite and > 0, got " << o.adv_clip_max);
}

/*!
  WHAT THIS REPRESENTS
    The value, analytic gradient and diagnostics of the DDPO loss over B (sample, timestep) items.
!*/
struct DdpoLossResult {
  double loss = 0.0;         ///< mean over the B items
  std::vector<double> d_lp;  ///< d loss / d lp[i], [B]
  double approx_kl = 0.0;    ///< 0.5 mean (lp - lp_old)^2
  double clipfrac = 0.0;     ///< mean of [|r - 1| > clip_range]
  double ratio_mean = 0.0;   ///< mean of r = exp(lp - lp_old)
};

/*!
  REQUIRES
    - lp: B >= 1 finite step log-probabilities under the trained policy; lp_old: the same steps' log-probabilities
      stored at sampling time; advantages: finite per-item advantages (PerPromptStatTracker or batch_advantages)
    - validate(opts)
  ENSURES
    - with A = clamp(advantages, -adv_clip_max, adv_clip_max), r = exp(lp - lp_old), c = clip_range:
        loss = mean_i max(-A_i r_i, -A_i clamp(r_i, 1 - c, 1 + c))         (ddpo-pytorch scripts/train.py)
    - d_lp[i] = -A_i r_i / B when 1 - c <= r_i <= 1 + c or when the unclipped term is the strictly larger one, else 0
      (torch autograd: clamp passes the gradient inside the closed range, maximum splits it evenly on a tie)
    - approx_kl = 0.5 mean (lp - lp_old)^2, clipfrac = mean [|r - 1| > c]
    - throws spo::error for invalid options, mismatched lengths, B == 0 or non-finite inputs
!*/
inline DdpoLossResult ddpo_loss(std::span<const double> lp, std::span<const double> lp_old,
                                std::span<const double> advantages, const DdpoLossOptions& opts) {
  validate(opts);
  const std::size_t b = check_items("ddpo_loss", {{"lp", lp}, {"lp_old", lp_old}, {"advantages", advantages}});
  const double n = static_cast<double>(b);
  DdpoLossResult r;
  r.d_lp.resize(b);  // [B]
  double loss_sum = 0, kl_sum = 0, clipped = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const double a = std::clamp(advantages[i], -opts.adv_clip_max, opts.adv_clip_max);
    const ClippedRatio q = clipped_ratio(lp[i], lp_old[i], opts.clip_range);
    const double unclipped_loss = -a * q.ratio;
    const double clipped_loss = -a * q.clipped;
    loss_sum += std::max(unclipped_loss, clipped_loss);
    const double d_unclipped = -a * q.ratio;                          // d(-A r)/d lp
    const double d_clipped = q.passes_gradient ? -a * q.ratio : 0.0;  // d(-A clamp(r))/d lp
    const double g = unclipped_loss > clipped_loss   ? d_unclipped
                     : unclipped_loss < clipped_loss ? d_clipped
                                                     : 0.5 * (d_unclipped + d_clipped);
    r.d_lp[i] = g / n + 0.0;
    const double d = lp[i] - lp_old[i];
    kl_sum += d * d;
    clipped += std::abs(q.ratio - 1.0) > opts.clip_range ? 1 : 0;
    r.ratio_mean += q.ratio;
  }
  r.loss = loss_sum / n;
  r.approx_kl = 0.5 * kl_sum / n;
  r.clipfrac = clipped / n;
  r.ratio_mean /= n;
  return r;
}

namespace detail {
/// numpy mean and std (ddof = 0) of get(0) .. get(count - 1): two passes, sqrt(mean((x - mean)^2)).
template <class Get>
std::pair<double, double> mean_std(std::size_t count, Get&& get) {
  double sum = 0;
  for (std::size_t i = 0; i < count; ++i) sum += get(i);
  const double mean = sum / static_cast<double>(count);
  double sq = 0;
  for (std::size_t i = 0; i < count; ++i) sq += (get(i) - mean) * (get(i) - mean);
  return {mean, std::sqrt(sq / static_cast<double>(count))};
}
}  // namespace detail

/*!
  ENSURES
    - returns (R - mean(R)) / (std(R) + 1e-8) with numpy's std (ddof = 0): DDPO's advantages without per-prompt
      tracking (ddpo-pytorch scripts/train.py)
    - throws spo::error for an empty batch or non-finite rewards
!*/
inline std::vector<double> batch_advantages(std::span<const double> rewards) {
  const std::size_t b = check_items("batch_advantages", {{"rewards", rewards}});
  const auto [mean, stddev] = detail::mean_std(b, [&](std::size_t i) { return rewards[i]; });
  std::vector<double> adv(b);  // [B]
  for (std::size_t i = 0; i < b; ++i) adv[i] = (rewards[i] - mean) / (stddev + 1e-8);
  return adv;
}

/// Buffer sizes of PerPromptStatTracker; every key is required in a config.
struct StatTrackerOptions {
  BOOST_HANA_DEFINE_STRUCT(StatTrackerOptions, (std::int64_t, buffer_size), (std::int64_t, min_count));
};

/// The defaults of ddpo-pytorch config/base.py (per_prompt_stat_tracking): buffer 16, min_count 16.
inline constexpr StatTrackerOptions ddpo_default_tracker_options{16, 16};

/// buffer_size >= 1 and 0 <= min_count <= buffer_size (a larger min_count would never use the per-prompt stats).
inline void validate(const StatTrackerOptions& o) {
  SPO_CONFIG_CHECK(o.buffer_size >= 1, "stat_tracker.buffer_size", "must be >= 1, got " << o.buffer_size);
  SPO_CONFIG_CHECK(o.min_count >= 0 && o.min_count <= o.buffer_size, "stat_tracker.min_count",
                   "must lie in [0, buffer_size = " << o.buffer_size << "], got " << o.min_count);
}

/*!
  WHAT THIS REPRESENTS
    DDPO's per-prompt advantage normalisation (ddpo-pytorch ddpo_pytorch/stat_tracking.py): for every prompt a FIFO
    of its last buffer_size rewards. update() appends a batch's rewards to their prompts' buffers (in batch order)
    and normalises each reward by its prompt's buffer statistics, or by the whole batch's statistics while the
    buffer holds fewer than min_count rewards:
      A = (R - mean) / (std + 1e-6),   std with ddof = 0
!*/
class PerPromptStatTracker {
 public:
  /// Statistics of one prompt's buffer.
  struct PromptStats {
    double mean = 0.0;
    double stddev = 0.0;  ///< ddof = 0
    std::int64_t count = 0;
  };

  explicit PerPromptStatTracker(StatTrackerOptions options = ddpo_default_tracker_options) : options_(options) {
    validate(options_);
  }

  /*!
    REQUIRES
      - prompts.size() == rewards.size(); rewards finite
    ENSURES
      - appends rewards[i] to the buffer of prompts[i] for i = 0..B-1 in order, dropping the oldest beyond
        buffer_size
      - returns the advantages [B]: for the prompt p of item i, once every item of the batch is appended,
        (rewards[i] - mean_p) / (std_p + 1e-6) over p's buffer when it holds >= min_count rewards, else over all
        B rewards of this batch
      - an empty batch returns an empty vector and changes nothing
      - throws spo::error (before any change) for mismatched lengths or non-finite rewards
  !*/
  std::vector<double> update(std::span<const std::string> prompts, std::span<const double> rewards) {
    SPO_CHECK(prompts.size() == rewards.size(),
              "PerPromptStatTracker::update: " << prompts.size() << " prompts but " << rewards.size() << " rewards");
    const std::size_t b = rewards.size();
    if (b == 0) return {};
    check_items("PerPromptStatTracker::update", {{"rewards", rewards}});
    const auto [batch_mean, batch_stddev] = detail::mean_std(b, [&](std::size_t i) { return rewards[i]; });

    std::map<std::string, std::vector<std::size_t>> items;  // prompt -> its batch indices, in batch order
    for (std::size_t i = 0; i < b; ++i) items[prompts[i]].push_back(i);
    std::vector<double> adv(b);  // [B]
    for (const auto& [prompt, indices] : items) {
      std::deque<double>& buffer = buffers_[prompt];
      for (std::size_t i : indices) {
        buffer.push_back(rewards[i]);
        if (static_cast<std::int64_t>(buffer.size()) > options_.buffer_size) buffer.pop_front();
      }
      double mean = batch_mean, stddev = batch_stddev;
      if (static_cast<std::int64_t>(buffer.size()) >= options_.min_count)
        std::tie(mean, stddev) = detail::mean_std(buffer.size(), [&](std::size_t k) { return buffer[k]; });
      for (std::size_t i : indices) adv[i] = (rewards[i] - mean) / (stddev + 1e-6);
    }
    return adv;
  }

  /// Mean, std (ddof = 0) and count of every prompt's buffer (ddpo-pytorch get_stats).
  std::map<std::string, PromptStats> stats() const {
    std::map<std::string, PromptStats> out;
    for (const auto& [prompt, buffer] : buffers_) {
      const auto [mean, stddev] = detail::mean_std(buffer.size(), [&](std::size_t k) { return buffer[k]; });
      out[prompt] = {mean, stddev, static_cast<std::int64_t>(buffer.size())};
    }
    return out;
  }

  /// The rewards held for each prompt, oldest first (for checkpointing).
  const std::map<std::string, std::deque<double>>& buffers() const { return buffers_; }

  /// Forgets every prompt's buffer.
  void clear() { buffers_.clear(); }

  const StatTrackerOptions& options() const { return options_; }

 private:
  StatTrackerOptions options_;
  std::map<std::string, std::deque<double>> buffers_;
};

/// DDPO's loss as a loss policy: PPO on the per-step log-probabilities of sampled trajectories.
struct DdpoLoss {
  static constexpr std::string_view name = "ddpo";
  static constexpr bool needs_transition_log_prob = true;
};

}  // namespace spo::loss
