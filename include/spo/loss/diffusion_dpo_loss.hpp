// SPDX-License-Identifier: MIT
/// @brief The Diffusion-DPO loss on per-pair denoising errors of the policy and the reference.
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

/// Hyper-parameters of Diffusion-DPO; every key is required in a config.
struct DiffusionDpoOptions {
  BOOST_HANA_DEFINE_STRUCT(DiffusionDpoOptions, (double, beta));
};

/// beta_dpo of the SD1.5 / SDXL launchers of SalesforceAIResearch/DiffusionDPO.
inline constexpr DiffusionDpoOptions diffusion_dpo_sd15_options{5000.0};

/// beta finite and > 0.
inline void validate(const DiffusionDpoOptions& o) {
  SPO_CONFIG_CHECK(std::isfinite(o.beta) && o.beta > 0, "loss.beta", "must be finite and > 0, got " << o.beta);
}

/*!
  WHAT THIS REPRESENTS
    The value, analytic gradient and diagnostics of the Diffusion-DPO loss over B pairs.
!*/
struct DiffusionDpoResult {
  double loss = 0.0;               ///< mean over the B pairs
  std::vector<double> d_w;         ///< d loss / d err_w[i], [B]
  std::vector<double> d_l;         ///< d loss / d err_l[i], [B] (= -d_w[i])
  double implicit_accuracy = 0.0;  ///< mean of [inside > 0] + 0.5 [inside == 0] (DiffusionDPO train.py)
  double model_error_mean = 0.0;   ///< 0.5 (mean err_w + mean err_l) ("raw_model_loss")
  double ref_error_mean = 0.0;     ///< 0.5 (mean err_ref_w + mean err_ref_l) ("ref_loss")
};

/*!
  REQUIRES
    - err_w, err_ref_w, err_l, err_ref_l: B >= 1 finite, non-negative per-pair denoising errors
      mean_CHW (eps_model(z_t, t, c) - eps)^2 of the preferred (w) and dispreferred (l) image, with t and eps shared
      within the pair, for the trained model and the frozen reference (docs/algorithm.md 3.1)
    - validate(opts)
  ENSURES
    - inside_i = -0.5 beta ((err_w[i] - err_l[i]) - (err_ref_w[i] - err_ref_l[i]))
      loss = mean_i -logsigmoid(inside_i)                              (DiffusionDPO train.py, train_method 'dpo')
    - d_w[i] = 0.5 beta sigmoid(-inside_i) / B and d_l[i] = -d_w[i] (torch autograd; the reference errors
      get no gradient); the chain to the model output is d err / d eps_model = 2 (eps_model - eps) / (C H W)
    - throws spo::error for invalid options, mismatched lengths, B == 0, non-finite or negative errors
!*/
inline DiffusionDpoResult diffusion_dpo_loss(std::span<const double> err_w, std::span<const double> err_ref_w,
                                             std::span<const double> err_l, std::span<const double> err_ref_l,
                                             const DiffusionDpoOptions& opts) {
  validate(opts);
  const std::size_t b = check_items(
      "diffusion_dpo_loss", {{"err_w", err_w}, {"err_ref_w", err_ref_w}, {"err_l", err_l}, {"err_ref_l", err_ref_l}});
  for (std::size_t i = 0; i < b; ++i)
    SPO_CHECK(err_w[i] >= 0 && err_ref_w[i] >= 0 && err_l[i] >= 0 && err_ref_l[i] >= 0,
              "diffusion_dpo_loss: negative squared error at item " << i << " (err_w " << err_w[i] << ", err_ref_w "
                                                                    << err_ref_w[i] << ", err_l " << err_l[i]
                                                                    << ", err_ref_l " << err_ref_l[i] << ")");
  const double n = static_cast<double>(b);
  const double scale = -0.5 * opts.beta;  // scale_term
  DiffusionDpoResult r;
  r.d_w.resize(b);  // [B]
  r.d_l.resize(b);  // [B]
  double loss_sum = 0, correct = 0, model_sum = 0, ref_sum = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const double model_diff = err_w[i] - err_l[i];
    const double ref_diff = err_ref_w[i] - err_ref_l[i];
    const double inside = scale * (model_diff - ref_diff);
    loss_sum += -log_sigmoid(inside);
    const double g = -sigmoid(-inside) * scale / n;  // d(-logsigmoid x)/dx = -sigmoid(-x); d inside/d err_w = scale
    r.d_w[i] = g;
    r.d_l[i] = -g;
    correct += inside > 0 ? 1.0 : inside == 0 ? 0.5 : 0.0;
    model_sum += err_w[i] + err_l[i];
    ref_sum += err_ref_w[i] + err_ref_l[i];
  }
  r.loss = loss_sum / n;
  r.implicit_accuracy = correct / n;
  r.model_error_mean = model_sum / (2 * n);
  r.ref_error_mean = ref_sum / (2 * n);
  return r;
}

/// The Diffusion-DPO loss as a pair-loss policy (loss::PairLoss) on denoising errors; any sampler fits.
struct DiffusionDpoLoss {
  static constexpr std::string_view name = "diffusion_dpo";
  static constexpr bool needs_transition_log_prob = false;
  using options_type = DiffusionDpoOptions;
  static DiffusionDpoResult evaluate(std::span<const double> err_w, std::span<const double> err_ref_w,
                                     std::span<const double> err_l, std::span<const double> err_ref_l,
                                     const DiffusionDpoOptions& o) {
    return diffusion_dpo_loss(err_w, err_ref_w, err_l, err_ref_l, o);
  }
};
static_assert(PairLoss<DiffusionDpoLoss> && !StepPairLoss<DiffusionDpoLoss>);

}  // namespace spo::loss
