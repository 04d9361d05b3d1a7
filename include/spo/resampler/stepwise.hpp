// SPDX-License-Identifier: MIT
/// @brief SPO's step-wise resampler (multi_sample_pipeline): k children per step, scored, paired, one continues.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/diffusion/concepts.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/preference/compare.hpp"
#include "spo/preference/preference_model.hpp"
#include "spo/resampler/continuation.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::resampler {

/// Runtime settings of the resampler; every key is required in a config. Pairs are recorded only when the parent
/// timestep lies in [t_min, t_max] (the timestep-range ablation, Table 8).
struct ResamplerOptions {
  BOOST_HANA_DEFINE_STRUCT(ResamplerOptions, (int, k), (int, divert_start_step), (double, threshold),
                           (double, guidance_scale), (double, eta), (std::int64_t, t_min), (std::int64_t, t_max));
};

/// k >= 2, 0 <= divert_start_step < num_inference_steps, threshold in [0, 1), eta > 0, guidance >= 0,
/// 0 <= t_min <= t_max.
inline void validate(const ResamplerOptions& o, int num_inference_steps) {
  SPO_CONFIG_CHECK(o.k >= 2, "resampler.k", "(children per step) must be >= 2, got " << o.k);
  SPO_CONFIG_CHECK(o.divert_start_step >= 0 && o.divert_start_step < num_inference_steps, "resampler.divert_start_step",
                   "must be in [0, " << num_inference_steps << ") (the base model's number of inference steps), got "
                                     << o.divert_start_step);
  preference::check_threshold(o.threshold, "resampler.threshold");
  SPO_CONFIG_CHECK(std::isfinite(o.eta) && o.eta > 0, "resampler.eta",
                   "must be finite and > 0 (the step log-probs need noise), got " << o.eta);
  SPO_CONFIG_CHECK(std::isfinite(o.guidance_scale) && o.guidance_scale >= 0, "resampler.guidance_scale",
                   "must be finite and >= 0, got " << o.guidance_scale);
  SPO_CONFIG_CHECK(o.t_min >= 0, "resampler.t_min", "must be >= 0, got " << o.t_min);
  SPO_CONFIG_CHECK(o.t_max >= o.t_min, "resampler.t_max", "must be >= t_min = " << o.t_min << ", got " << o.t_max);
}

/// The training items of one sampling round: item m is (x_t, x_{t-1}^w, x_{t-1}^l, t, prompt) with both children
/// drawn from the same x_t; the images live on the policy's device D.
template <Scalar T, Device D = cpu>
struct StepPairs {
  Tensor<T, D> x_t;     // [M, C, R, R]
  Tensor<T, D> x_win;   // [M, C, R, R]
  Tensor<T, D> x_lose;  // [M, C, R, R]
  std::vector<std::int64_t> t;
  std::vector<std::string> prompts;
  std::vector<double> gap;  ///< the compare policy's softmax gap

  std::int64_t size() const { return static_cast<std::int64_t>(t.size()); }
};

/// What one round produced besides the pairs.
template <Scalar T, Device D = cpu>
struct RoundResult {
  StepPairs<T, D> pairs;
  Tensor<T, D> final_images;                         // [B, C, R, R] the continued chains' x_0
  std::vector<double> final_scores;                  ///< preference-model scores of every final child at t = 0
  std::map<std::int64_t, std::int64_t> valid_per_t;  ///< valid pairs per parent timestep (all compared steps)
  std::map<std::int64_t, std::int64_t> compared_per_t;
};

/*!
  WHAT THIS REPRESENTS
    SPO's multi_sample_pipeline (docs/algorithm.md 4.5) for B prompts, with DDIM timesteps t_0 > ... > t_{N-1} and
    d = divert_start_step:
      - steps 0 .. d-1: plain DDIM (eta, CFG); the parent P is x at t_d
      - the parent's guided prediction gives mu, std (clamped previous timestep, the log-prob convention) and k
        children x^(s) = mu + std z^(s)
      - at each later level t_i (i = d+1 .. N-1): the policy's guided prediction on all k B children at t_i gives
        each child's x0 prediction; the preference model scores (x0, t_i); after the last step the children are x_0
        and are scored at t = 0. The compare policy picks (win, lose) among each prompt's k children; a valid pair is
        recorded as (P, x^win, x^lose, t_{i-1}) when t_{i-1} lies in [t_min, t_max]; the continuation rule picks the
        child that becomes the next parent, whose prediction (already computed) gives the next k children.
    Rows are sample-major (child s of prompt j is row s B + j), as SPO's flatten(0, 1). No gradients are kept.
    Randomness, in order: the initial noise, each step's noise, the compare and continuation draws, all from gen.
    Images stay on the policy's device; the x0 predictions are handed to the preference model on its own device
    (preference_device_t<PM>), so a GPU policy can be scored by a CPU rater and the other way round.
  REQUIRES
    - Model: encode(prompts), guided(x, t [rows], cond, uncond, g); Scheduler: Ddim with set_timesteps done
!*/
template <preference::PreferenceModel PM, preference::ComparePolicy Compare, ContinuationRule Continuation>
class StepwiseResampler {
 public:
  explicit StepwiseResampler(const ResamplerOptions& o) : o_(o) {}

  const ResamplerOptions& options() const { return o_; }

  template <diffusion::DiffusionModel Model, class Scheduler>
  RoundResult<typename Model::scalar_type, typename Model::device_type> sample(
      Model& policy, const Scheduler& ddim, PM& pm, std::span<const std::string> prompts, std::int64_t resolution,
      std::int64_t channels, Generator& gen) const {
    using T = typename Model::scalar_type;
    using D = typename Model::device_type;
    using tensor = Tensor<T, D>;
    const auto& ts = ddim.timesteps();
    const int n_steps = static_cast<int>(ts.size());
    validate(o_, n_steps);
    nn::no_grad_guard guard;
    const std::int64_t b = static_cast<std::int64_t>(prompts.size()), k = o_.k;
    SPO_CHECK(b >= 1, "resampler: no prompts");
    const std::int64_t per = channels * resolution * resolution;
    const std::vector<std::string> empty(static_cast<std::size_t>(b));
    const auto cond = policy.encode(prompts), uncond = policy.encode(empty);  // [B, L, D]
    auto repeat_rows = [&](const tensor& x) {                                 // [B, ...] -> [k B, ...]
      Shape s = x.shape();
      s[0] = k * b;
      auto out = tensor::uninitialized(s);
      for (std::int64_t c = 0; c < k; ++c) copy_elements<D>(x.data(), x.numel(), out.data() + c * x.numel());
      return out;
    };
    const auto cond_k = repeat_rows(cond), uncond_k = repeat_rows(uncond);  // [k B, L, D]
    std::vector<std::string> prompts_k;
    for (std::int64_t c = 0; c < k; ++c) prompts_k.insert(prompts_k.end(), prompts.begin(), prompts.end());

    RoundResult<T, D> r;
    auto x = random_normal<T, D>(Shape{b, channels, resolution, resolution}, gen);  // [B, C, R, R] x_T
    for (int i = 0; i < o_.divert_start_step; ++i) {
      auto u = policy.guided(x, static_cast<double>(ts[static_cast<std::size_t>(i)]), cond, uncond, o_.guidance_scale);
      x = std::move(ddim.step(u, ts[static_cast<std::size_t>(i)], x, o_.eta, &gen).prev_sample);
    }
    // The first branching from the parent at t_d.
    tensor parent = std::move(x);  // [B, C, R, R]
    std::vector<std::int64_t> t_b(static_cast<std::size_t>(b), ts[static_cast<std::size_t>(o_.divert_start_step)]);
    auto u = policy.guided(parent, static_cast<double>(t_b[0]), cond, uncond, o_.guidance_scale);
    auto tr = ddim.transitions(t_b, o_.eta);
    auto children = ddim.sample_children(ddim.mean(ddim.predict(u, parent, t_b), tr), tr, static_cast<int>(k), gen);
    children.reshape(Shape{k * b, channels, resolution, resolution});  // [k B, C, R, R]

    std::vector<std::int64_t> win_rows, lose_rows, parent_rows;  // rows of the level's children / parent
    std::vector<tensor> win_parts, lose_parts, parent_parts;     // the gathered rows of each level
    for (int i = o_.divert_start_step + 1; i <= n_steps; ++i) {
      const bool last = i == n_steps;
      const std::int64_t t_parent = ts[static_cast<std::size_t>(i - 1)];
      const std::int64_t t_level = last ? 0 : ts[static_cast<std::size_t>(i)];
      std::vector<std::int64_t> t_kb(static_cast<std::size_t>(k * b), t_level);
      diffusion::DdimPrediction<T, D> pred;
      if (!last) {
        auto uc = policy.guided(children, static_cast<double>(t_level), cond_k, uncond_k, o_.guidance_scale);
        pred = ddim.predict(uc, children, t_kb);  // x0, eps: [k B, C, R, R]
      }
      const auto scores = score(pm, last ? children : pred.x0, t_kb, prompts_k);  // k B, sample-major
      for (const double v : scores)
        SPO_CHECK(std::isfinite(v), "preference model \"" << PM::name << "\" returned a non-finite score at t = "
                                                          << t_level << " (non-finite samples from the policy?)");
      if (last) r.final_scores = scores;
      tensor next_parent = tensor::uninitialized(Shape{b, channels, resolution, resolution});  // [B, C, R, R]
      diffusion::DdimPrediction<T, D> next_pred{tensor::uninitialized(next_parent.shape()),
                                                tensor::uninitialized(next_parent.shape())};
      std::vector<double> s(static_cast<std::size_t>(k));
      for (std::int64_t j = 0; j < b; ++j) {
        for (std::int64_t c = 0; c < k; ++c)
          s[static_cast<std::size_t>(c)] = scores[static_cast<std::size_t>(c * b + j)];
        const auto cmp = compare_.compare(s, o_.threshold, gen);
        ++r.compared_per_t[t_parent];
        if (cmp.valid) {
          ++r.valid_per_t[t_parent];
          if (t_parent >= o_.t_min && t_parent <= o_.t_max) {
            parent_rows.push_back(j);
            win_rows.push_back(cmp.win * b + j);
            lose_rows.push_back(cmp.lose * b + j);
            r.pairs.t.push_back(t_parent);
            r.pairs.prompts.push_back(prompts[static_cast<std::size_t>(j)]);
            r.pairs.gap.push_back(cmp.gap);
          }
        }
        const std::int64_t c = continuation_.choose(s, cmp, gen);
        SPO_CHECK(c >= 0 && c < k, "continuation rule " << Continuation::name << " chose child " << c << " of " << k);
        copy_elements<D>(children.data() + (c * b + j) * per, per, next_parent.data() + j * per);
        if (!last) {
          copy_elements<D>(pred.x0.data() + (c * b + j) * per, per, next_pred.x0.data() + j * per);
          copy_elements<D>(pred.eps.data() + (c * b + j) * per, per, next_pred.eps.data() + j * per);
        }
      }
      parent_parts.push_back(gather_rows(parent, parent_rows));
      win_parts.push_back(gather_rows(children, win_rows));
      lose_parts.push_back(gather_rows(children, lose_rows));
      parent_rows.clear();
      win_rows.clear();
      lose_rows.clear();
      parent = std::move(next_parent);
      if (last) break;
      std::vector<std::int64_t> t_next(static_cast<std::size_t>(b), t_level);
      tr = ddim.transitions(t_next, o_.eta);
      children = ddim.sample_children(ddim.mean(next_pred, tr), tr, static_cast<int>(k), gen);
      children.reshape(Shape{k * b, channels, resolution, resolution});  // [k B, C, R, R]
    }
    r.final_images = std::move(parent);
    r.pairs.x_t = concat(parent_parts, channels, resolution);
    r.pairs.x_win = concat(win_parts, channels, resolution);
    r.pairs.x_lose = concat(lose_parts, channels, resolution);
    return r;
  }

 private:
  /// pm's scores of x, moved to pm's device when it differs from x's.
  template <Scalar T, Device D>
  static std::vector<double> score(PM& pm, const Tensor<T, D>& x, std::span<const std::int64_t> t,
                                   std::span<const std::string> prompts) {
    using PD = preference::preference_device_t<PM>;
    if constexpr (std::same_as<PD, D>)
      return pm.score(x, t, prompts);
    else
      return pm.score(transfer<PD>(x), t, prompts);
  }
  /// The parts' rows, in order, as [M, C, R, R].
  template <Scalar T, Device D>
  static Tensor<T, D> concat(const std::vector<Tensor<T, D>>& parts, std::int64_t channels, std::int64_t res) {
    std::int64_t m = 0;
    for (const auto& p : parts) m += p.size(0);
    auto out = Tensor<T, D>::uninitialized(Shape{m, channels, res, res});  // [M, C, R, R]
    std::int64_t at = 0;
    for (const auto& p : parts) {
      copy_elements<D>(p.data(), p.numel(), out.data() + at);
      at += p.numel();
    }
    return out;
  }

  ResamplerOptions o_;
  Compare compare_{};
  Continuation continuation_{};
};

}  // namespace spo::resampler
