// SPDX-License-Identifier: MIT
/// @brief The SPO loss: a DPO-style logistic loss on clamped step log-likelihood ratios of a winner/loser pair.
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

namespace spo::loss {

/// Hyper-parameters of the SPO loss; every key is required in a config.
struct SpoLossOptions {
  BOOST_HANA_DEFINE_STRUCT(SpoLossOptions, (double, beta), (double, clip_eps));
};

/// The SD1.5 setting of SPO (configs of RockeyCoss/SPO): beta = 10, clip_eps = 0.1.
inline constexpr SpoLossOptions spo_sd15_loss_options{10.0, 0.1};

/// beta finite and > 0; clip_eps finite with 0 < clip_eps < 1 (so that log(1 - clip_eps) exists).
inline void validate(const SpoLossOptions& o) {
  SPO_CONFIG_CHECK(std::isfinite(o.beta) && o.beta > 0, "loss.beta", "must be finite and > 0, got " << o.beta);
  SPO_CONFIG_CHECK(std::isfinite(o.clip_eps) && o.clip_eps > 0 && o.clip_eps < 1, "loss.clip_eps",
                   "must lie in (0, 1), got " << o.clip_eps);
}

/*!
  WHAT THIS REPRESENTS
    The value, the analytic gradient and the diagnostics of a pairwise preference loss over B items, each item a
    preferred (win) and a dispreferred (lose) sample with policy and reference log-probabilities.
    Ratios are r = exp(lp - lp_ref); "clipped" ratios are clamp(r, 1 - eps, 1 + eps).
!*/
struct PairLossResult {
  double loss = 0.0;                     ///< mean over the B items
  std::vector<double> d_w;               ///< d loss / d lp_w[i], [B]; 0 where r_w[i] is clipped
  std::vector<double> d_l;               ///< d loss / d lp_l[i], [B]; 0 where r_l[i] is clipped
  double ratio_win_mean = 0.0;           ///< mean of the unclipped r_w
  double ratio_lose_mean = 0.0;          ///< mean of the unclipped r_l
  double clipped_ratio_win_mean = 0.0;   ///< mean of clamp(r_w)
  double clipped_ratio_lose_mean = 0.0;  ///< mean of clamp(r_l)
  double clip_fraction = 0.0;            ///< fraction of the 2B ratios outside [1 - eps, 1 + eps]
  double implicit_accuracy = 0.0;        ///< mean of [margin > 0] + 0.5 [margin == 0] (Diffusion-DPO's convention)
};

/*!
  REQUIRES
    - lp_w, lp_w_ref, lp_l, lp_l_ref: B >= 1 finite per-item step log-probabilities (docs/algorithm.md section 2) of
      the preferred child x^w_{t-1} and the dispreferred child x^l_{t-1} of the same x_t, under the trained policy
      and the frozen reference
    - validate(opts)
  ENSURES
    - with r_w = clamp(exp(lp_w - lp_w_ref), 1 - eps, 1 + eps), r_l likewise, and the margin
        z_i = beta log r_w[i] - beta log r_l[i],
      returns loss = mean_i -log sigmoid(z_i) (SPO train_spo.py; computed as -log_sigmoid, which is stable)
    - d_w[i] = -beta sigmoid(-z_i) / B where 1 - eps <= exp(lp_w - lp_w_ref)[i] <= 1 + eps, else 0
      d_l[i] = +beta sigmoid(-z_i) / B where the lose ratio lies in the range, else 0
      (torch autograd of the loss above; the reference log-probabilities get no gradient)
    - r_w = r_l = 1 gives loss log 2; the loss is bounded below by -log sigmoid(beta (log(1 + eps) - log(1 - eps)))
    - throws spo::error for invalid options, mismatched lengths, B == 0 or non-finite inputs
!*/
inline PairLossResult spo_loss(std::span<const double> lp_w, std::span<const double> lp_w_ref,
                               std::span<const double> lp_l, std::span<const double> lp_l_ref,
                               const SpoLossOptions& opts) {
  validate(opts);
  const std::size_t b =
      check_items("spo_loss", {{"lp_w", lp_w}, {"lp_w_ref", lp_w_ref}, {"lp_l", lp_l}, {"lp_l_ref", lp_l_ref}});
  const double n = static_cast<double>(b);
  PairLossResult r;
  r.d_w.resize(b);  // [B]
  r.d_l.resize(b);  // [B]
  double loss_sum = 0, clipped = 0, correct = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const ClippedRatio w = clipped_ratio(lp_w[i], lp_w_ref[i], opts.clip_eps);
    const ClippedRatio l = clipped_ratio(lp_l[i], lp_l_ref[i], opts.clip_eps);
    const double z = opts.beta * w.log_clipped - opts.beta * l.log_clipped;  // SPO: beta log r_w - beta log r_l
    loss_sum += -log_sigmoid(z);
    const double dz = -sigmoid(-z) * opts.beta / n;  // d(-log sigmoid z)/dz = -sigmoid(-z)
    r.d_w[i] = w.passes_gradient ? dz : 0.0;
    r.d_l[i] = l.passes_gradient ? -dz : 0.0;
    r.ratio_win_mean += w.ratio;
    r.ratio_lose_mean += l.ratio;
    r.clipped_ratio_win_mean += w.clipped;
    r.clipped_ratio_lose_mean += l.clipped;
    clipped += (w.passes_gradient ? 0 : 1) + (l.passes_gradient ? 0 : 1);
    correct += z > 0 ? 1.0 : z == 0 ? 0.5 : 0.0;
  }
  r.loss = loss_sum / n;
  r.ratio_win_mean /= n;
  r.ratio_lose_mean /= n;
  r.clipped_ratio_win_mean /= n;
  r.clipped_ratio_lose_mean /= n;
  r.clip_fraction = clipped / (2 * n);
  r.implicit_accuracy = correct / n;
  return r;
}

/// The SPO loss as the loss policy of a step-pair trainer (loss::StepPairLoss): the paper's method.
struct SpoLoss {
  static constexpr std::string_view name = "spo";
  static constexpr bool needs_transition_log_prob = true;
  using options_type = SpoLossOptions;
  static PairLossResult evaluate(std::span<const double> lp_w, std::span<const double> lp_w_ref,
                                 std::span<const double> lp_l, std::span<const double> lp_l_ref,
                                 const SpoLossOptions& o) {
    return spo_loss(lp_w, lp_w_ref, lp_l, lp_l_ref, o);
  }
};
static_assert(StepPairLoss<SpoLoss>);

}  // namespace spo::loss
