// SPDX-License-Identifier: MIT
/// @brief The unclipped DPO loss on step log-likelihood ratios: SPO's loss without the ratio clamp.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/error.hpp"
#include "spo/loss/clipped_ratio.hpp"
#include "spo/loss/concepts.hpp"
#include "spo/loss/spo_loss.hpp"

namespace spo::loss {

/// Hyper-parameters of the unclipped step DPO loss; every key is required in a config.
struct StepDpoOptions {
  BOOST_HANA_DEFINE_STRUCT(StepDpoOptions, (double, beta));
};

/// beta finite and > 0.
inline void validate(const StepDpoOptions& o) {
  SPO_CONFIG_CHECK(std::isfinite(o.beta) && o.beta > 0, "loss.beta", "must be finite and > 0, got " << o.beta);
}

/*!
  REQUIRES
    - lp_w, lp_w_ref, lp_l, lp_l_ref: B >= 1 finite per-item step log-probabilities of the preferred and the
      dispreferred child of one x_t under the policy and the reference (as for spo_loss); validate(opts)
  ENSURES
    - with the margin z_i = beta ((lp_w[i] - lp_w_ref[i]) - (lp_l[i] - lp_l_ref[i])) (DPO, Rafailov et al. 2023,
      eq. 7, applied to one denoising step: docs/algorithm.md 3.5), returns loss = mean_i -log sigmoid(z_i)
    - d_w[i] = -beta sigmoid(-z_i) / B, d_l[i] = +beta sigmoid(-z_i) / B: every item passes its gradient
      (clip_fraction = 0; clipped_ratio_*_mean equal the unclipped means)
    - equals spo_loss wherever every ratio of spo_loss lies inside [1 - eps, 1 + eps]
    - throws spo::error for invalid options, mismatched lengths, B == 0 or non-finite inputs
!*/
inline PairLossResult step_dpo_loss(std::span<const double> lp_w, std::span<const double> lp_w_ref,
                                    std::span<const double> lp_l, std::span<const double> lp_l_ref,
                                    const StepDpoOptions& opts) {
  validate(opts);
  const std::size_t b =
      check_items("step_dpo_loss", {{"lp_w", lp_w}, {"lp_w_ref", lp_w_ref}, {"lp_l", lp_l}, {"lp_l_ref", lp_l_ref}});
  const double n = static_cast<double>(b);
  PairLossResult r;
  r.d_w.resize(b);  // [B]
  r.d_l.resize(b);  // [B]
  double loss_sum = 0, correct = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const double log_w = lp_w[i] - lp_w_ref[i], log_l = lp_l[i] - lp_l_ref[i];
    const double z = opts.beta * (log_w - log_l);
    loss_sum += -log_sigmoid(z);
    const double dz = -sigmoid(-z) * opts.beta / n;
    r.d_w[i] = dz;
    r.d_l[i] = -dz;
    r.ratio_win_mean += std::exp(log_w);
    r.ratio_lose_mean += std::exp(log_l);
    correct += z > 0 ? 1.0 : z == 0 ? 0.5 : 0.0;
  }
  r.loss = loss_sum / n;
  r.ratio_win_mean /= n;
  r.ratio_lose_mean /= n;
  r.clipped_ratio_win_mean = r.ratio_win_mean;
  r.clipped_ratio_lose_mean = r.ratio_lose_mean;
  r.implicit_accuracy = correct / n;
  return r;
}

/// The unclipped step DPO loss as the loss policy of a step-pair trainer (loss::StepPairLoss).
struct StepDpoLoss {
  static constexpr std::string_view name = "step_dpo";
  static constexpr bool needs_transition_log_prob = true;
  using options_type = StepDpoOptions;
  static PairLossResult evaluate(std::span<const double> lp_w, std::span<const double> lp_w_ref,
                                 std::span<const double> lp_l, std::span<const double> lp_l_ref,
                                 const StepDpoOptions& o) {
    return step_dpo_loss(lp_w, lp_w_ref, lp_l, lp_l_ref, o);
  }
};
static_assert(StepPairLoss<StepDpoLoss>);

}  // namespace spo::loss
