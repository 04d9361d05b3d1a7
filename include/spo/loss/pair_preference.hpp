// SPDX-License-Identifier: MIT
/// @brief The preference-model loss of PickScore and SPO's SPM: two-way cross-entropy with soft tie labels.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "spo/core/error.hpp"

namespace spo::loss {

/// The loss and its gradient w.r.t. both logits of each pair.
struct PairPreferenceLoss {
  double loss = 0;
  std::vector<double> d_logit_a, d_logit_b;  ///< d loss / d l_a[i], d loss / d l_b[i]
  double accuracy = 0;                       ///< non-tie pairs whose larger logit has label 1 (equal logits: 1/2)
};

/*!
  WHAT THIS REPRESENTS
    SPO's spm_criterion (in_batch_negatives = False), as in PickScore: for pair i with logits (l_a, l_b) (the scores
    exp(logit_scale) * cos(image, prompt)), labels (y_a, y_b) in {(1, 0), (0, 1), (0.5, 0.5)} and the number n_i
    of examples of pair i's prompt,
      CE_a = -log softmax(l_a, l_b)_a,   CE_b = -log softmax(l_a, l_b)_b
      loss_i = y_a CE_a + y_b CE_b + [y_a == y_b] log(0.5)          (a tie's minimum is 0, like a decided pair's)
      w_i = (1 / n_i) / sum_j (1 / n_j),    loss = sum_i w_i loss_i
    Gradients: d loss / d l_a = w_i (softmax_a - y_a), d loss / d l_b = w_i (softmax_b - y_b)
  REQUIRES
    - equal sizes; finite logits; labels in [0, 1] with y_a + y_b == 1; examples_per_prompt >= 1 (empty span: all 1)
!*/
inline PairPreferenceLoss pair_preference_loss(std::span<const double> l_a, std::span<const double> l_b,
                                               std::span<const double> y_a, std::span<const double> y_b,
                                               std::span<const double> examples_per_prompt = {}) {
  const std::size_t n = l_a.size();
  SPO_CHECK(n >= 1 && l_b.size() == n && y_a.size() == n && y_b.size() == n &&
                (examples_per_prompt.empty() || examples_per_prompt.size() == n),
            "pair_preference_loss: sizes " << l_a.size() << ", " << l_b.size() << ", labels " << y_a.size() << ", "
                                           << y_b.size() << ", counts " << examples_per_prompt.size());
  double wsum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double c = examples_per_prompt.empty() ? 1.0 : examples_per_prompt[i];
    SPO_CHECK(c >= 1, "pair_preference_loss: examples_per_prompt[" << i << "] = " << c << " < 1");
    wsum += 1.0 / c;
  }
  PairPreferenceLoss r;
  r.d_logit_a.resize(n);
  r.d_logit_b.resize(n);
  double hits = 0;
  std::size_t decided = 0;
  for (std::size_t i = 0; i < n; ++i) {
    SPO_CHECK(std::isfinite(l_a[i]) && std::isfinite(l_b[i]),
              "pair_preference_loss: non-finite logits (" << l_a[i] << ", " << l_b[i] << ") at pair " << i);
    SPO_CHECK(y_a[i] >= 0 && y_a[i] <= 1 && y_b[i] >= 0 && y_b[i] <= 1 && std::abs(y_a[i] + y_b[i] - 1) < 1e-12,
              "pair_preference_loss: label (" << y_a[i] << ", " << y_b[i] << ") of pair " << i
                                              << " is outside [0, 1] or does not sum to 1");
    const double w = (examples_per_prompt.empty() ? 1.0 : 1.0 / examples_per_prompt[i]) / wsum;
    const double m = std::max(l_a[i], l_b[i]);
    const double lse = m + std::log(std::exp(l_a[i] - m) + std::exp(l_b[i] - m));
    const double ce_a = lse - l_a[i], ce_b = lse - l_b[i];
    const bool tie = y_a[i] == y_b[i];
    r.loss += w * (y_a[i] * ce_a + y_b[i] * ce_b + (tie ? std::log(0.5) : 0.0));
    r.d_logit_a[i] = w * (std::exp(-ce_a) - y_a[i]);
    r.d_logit_b[i] = w * (std::exp(-ce_b) - y_b[i]);
    if (!tie) {
      ++decided;
      hits += l_a[i] == l_b[i] ? 0.5 : ((l_a[i] > l_b[i]) == (y_a[i] > y_b[i]) ? 1.0 : 0.0);
    }
  }
  r.accuracy = decided ? hits / static_cast<double>(decided) : std::nan("");
  return r;
}

}  // namespace spo::loss
