// SPDX-License-Identifier: MIT
/// @brief The D3PO loss: the clamped-ratio DPO loss of two whole trajectories with a signed (+1/-1/0) preference.
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

/// Hyper-parameters of the D3PO loss; every key is required in a config.
struct D3poLossOptions {
  BOOST_HANA_DEFINE_STRUCT(D3poLossOptions, (double, beta), (double, clip_eps));
};

/// The default of yk7333/d3po config/base.py: beta = 0.1, eps = 0.1.
inline constexpr D3poLossOptions d3po_default_loss_options{0.1, 0.1};

/// beta finite and > 0; clip_eps finite with 0 < clip_eps < 1.
inline void validate(const D3poLossOptions& o) {
  SPO_CONFIG_CHECK(std::isfinite(o.beta) && o.beta > 0, "loss.beta", "must be finite and > 0, got " << o.beta);
  SPO_CONFIG_CHECK(std::isfinite(o.clip_eps) && o.clip_eps > 0 && o.clip_eps < 1, "loss.clip_eps",
                   "must lie in (0, 1), got " << o.clip_eps);
}

/// The sign vectors of a batch of pairs: sample 0 preferred (h0, h1) = (+1, -1), sample 1 preferred (-1, +1),
/// tie (0, 0).
struct D3poSigns {
  std::vector<double> h0;  // [B]
  std::vector<double> h1;  // [B]
};

/*!
  ENSURES
    - h0[i] = +1 if pref0[i] > pref1[i], -1 if pref0[i] < pref1[i], 0 on a tie; h1[i] = -h0[i] (docs/algorithm.md 3.3)
    - throws spo::error for mismatched lengths, an empty batch or non-finite preferences
!*/
inline D3poSigns d3po_signs(std::span<const double> pref0, std::span<const double> pref1) {
  const std::size_t b = check_items("d3po_signs", {{"pref0", pref0}, {"pref1", pref1}});
  D3poSigns s{std::vector<double>(b), std::vector<double>(b)};
  for (std::size_t i = 0; i < b; ++i) {
    s.h0[i] = pref0[i] > pref1[i] ? 1.0 : pref0[i] < pref1[i] ? -1.0 : 0.0;
    s.h1[i] = -s.h0[i] + 0.0;  // + 0.0: a tie gives +0, not -0
  }
  return s;
}

/*!
  WHAT THIS REPRESENTS
    The value, analytic gradient and diagnostics of the D3PO loss over B pairs (sample 0, sample 1).
!*/
struct D3poLossResult {
  double loss = 0.0;                  ///< mean over the B pairs
  std::vector<double> d_lp_0;         ///< d loss / d lp_0[i], [B]; 0 where r_0[i] is clipped or on a tie
  std::vector<double> d_lp_1;         ///< d loss / d lp_1[i], [B]; 0 where r_1[i] is clipped or on a tie
  double ratio_0_mean = 0.0;          ///< mean of the unclipped exp(lp_0 - lp_0_ref)
  double ratio_1_mean = 0.0;          ///< mean of the unclipped exp(lp_1 - lp_1_ref)
  double clipped_ratio_0_mean = 0.0;  ///< mean of clamp(r_0)
  double clipped_ratio_1_mean = 0.0;  ///< mean of clamp(r_1)
  double clip_fraction = 0.0;         ///< fraction of the 2B ratios outside [1 - eps, 1 + eps]
  double tie_fraction = 0.0;          ///< fraction of pairs with h0 = h1 = 0
};

/*!
  REQUIRES
    - lp_0, lp_0_ref, lp_1, lp_1_ref: B >= 1 finite per-item step log-probabilities of the two samples (each on its
      own trajectory, at the same denoising step) under the trained policy and the frozen reference
    - h0, h1: the sign vectors of d3po_signs, i.e. h0[i] in {-1, 0, +1} and h1[i] = -h0[i]
    - validate(opts)
  ENSURES
    - with r_k = clamp(exp(lp_k - lp_k_ref), 1 - eps, 1 + eps) and z_i = beta log r_0[i] h0[i] + beta log r_1[i] h1[i],
      returns loss = mean_i -log sigmoid(z_i) (yk7333/d3po scripts/train.py; docs/algorithm.md 3.3)
    - d_lp_0[i] = -beta h0[i] sigmoid(-z_i) / B where 1 - eps <= exp(lp_0 - lp_0_ref)[i] <= 1 + eps, else 0;
      d_lp_1[i] likewise with h1 and r_1 (torch autograd; ties have z = 0, loss log 2 and zero gradient)
    - throws spo::error for invalid options, mismatched lengths, B == 0, non-finite inputs or invalid signs
!*/
inline D3poLossResult d3po_loss(std::span<const double> lp_0, std::span<const double> lp_0_ref,
                                std::span<const double> lp_1, std::span<const double> lp_1_ref,
                                std::span<const double> h0, std::span<const double> h1, const D3poLossOptions& opts) {
  validate(opts);
  const std::size_t b = check_items(
      "d3po_loss",
      {{"lp_0", lp_0}, {"lp_0_ref", lp_0_ref}, {"lp_1", lp_1}, {"lp_1_ref", lp_1_ref}, {"h0", h0}, {"h1", h1}});
  for (std::size_t i = 0; i < b; ++i)
    SPO_CHECK((h0[i] == 1 || h0[i] == -1 || h0[i] == 0) && h1[i] == -h0[i],
              "d3po_loss: signs (h0, h1)[" << i << "] = (" << h0[i] << ", " << h1[i]
                                           << ") are not one of (1, -1), (-1, 1), (0, 0)");
  const double n = static_cast<double>(b);
  D3poLossResult r;
  r.d_lp_0.resize(b);  // [B]
  r.d_lp_1.resize(b);  // [B]
  double loss_sum = 0, clipped = 0, ties = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const ClippedRatio q0 = clipped_ratio(lp_0[i], lp_0_ref[i], opts.clip_eps);
    const ClippedRatio q1 = clipped_ratio(lp_1[i], lp_1_ref[i], opts.clip_eps);
    const double z = opts.beta * q0.log_clipped * h0[i] + opts.beta * q1.log_clipped * h1[i];  // D3PO
    loss_sum += -log_sigmoid(z);
    const double dz = -sigmoid(-z) * opts.beta / n;  // d(-log sigmoid z)/dz = -sigmoid(-z)
    r.d_lp_0[i] = q0.passes_gradient ? dz * h0[i] + 0.0 : 0.0;
    r.d_lp_1[i] = q1.passes_gradient ? dz * h1[i] + 0.0 : 0.0;
    r.ratio_0_mean += q0.ratio;
    r.ratio_1_mean += q1.ratio;
    r.clipped_ratio_0_mean += q0.clipped;
    r.clipped_ratio_1_mean += q1.clipped;
    clipped += (q0.passes_gradient ? 0 : 1) + (q1.passes_gradient ? 0 : 1);
    ties += h0[i] == 0 ? 1 : 0;
  }
  r.loss = loss_sum / n;
  r.ratio_0_mean /= n;
  r.ratio_1_mean /= n;
  r.clipped_ratio_0_mean /= n;
  r.clipped_ratio_1_mean /= n;
  r.clip_fraction = clipped / (2 * n);
  r.tie_fraction = ties / n;
  return r;
}

/// D3PO's loss as a loss policy: DPO on the per-step log-probabilities of two whole trajectories.
struct D3poLoss {
  static constexpr std::string_view name = "d3po";
  static constexpr bool needs_transition_log_prob = true;
};

}  // namespace spo::loss
