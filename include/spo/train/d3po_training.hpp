// SPDX-License-Identifier: MIT
/// @brief The D3PO baseline (Yang et al. 2024): two on-policy trajectories per prompt, the rater's preference of the
/// final images applied at every denoising step with the clipped-ratio DPO loss.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/diffusion/concepts.hpp"
#include "spo/loss/d3po_loss.hpp"
#include "spo/preference/rater.hpp"
#include "spo/train/round_trainer.hpp"

namespace spo::train {

/// One round: prompts_per_round prompts, two trajectories each; the pairs are shuffled and split into minibatches of
/// batch_size pairs; each minibatch accumulates the loss over its pairs' training timesteps (the first
/// max(1, floor(N * timestep_fraction)) of a per-pair permutation of the N steps) and takes one optimizer step.
struct D3poTrainSection {
  BOOST_HANA_DEFINE_STRUCT(D3poTrainSection, (std::int64_t, rounds), (std::int64_t, prompts_per_round),
                           (std::vector<int>, templates), (std::int64_t, batch_size), (double, timestep_fraction),
                           (double, lr), (double, weight_decay), (double, max_grad_norm),
                           (std::int64_t, checkpoint_every));
};

inline void validate(const D3poTrainSection& t) {
  validate_positive(t.rounds, "rounds");
  validate_positive(t.prompts_per_round, "prompts_per_round");
  validate_positive(t.batch_size, "batch_size");
  validate_positive(t.checkpoint_every, "checkpoint_every");
  SPO_CONFIG_CHECK(std::isfinite(t.timestep_fraction) && t.timestep_fraction > 0 && t.timestep_fraction <= 1,
                   "train.timestep_fraction", "must lie in (0, 1], got " << t.timestep_fraction);
  validate_templates(t.templates);
  validate_optimizer(t.lr, t.weight_decay, t.max_grad_norm);
}

/*!
  WHAT THIS REPRESENTS
    D3PO fine-tuning (yk7333/d3po scripts/train.py, reward-model variant; docs/algorithm.md 3.3) of a LoRA policy
    against a frozen reference (the base model), both with CFG (the sampling guidance scale):
      per round: prompts -> two DDIM trajectories per prompt from the current policy (eta, CFG; no gradients)
      -> the rater scores both final images -> signs (h0, h1) = (+1, -1) / (-1, +1) / (0, 0) on a tie
      -> for every training step j of a pair (the two samples at the same denoising step, each on its own
      trajectory): lp_k = log p(x^k_{j+1} | x^k_j) under the policy and the reference,
      loss_j = d3po_loss(lp_0, lp_0_ref, lp_1, lp_1_ref, h0, h1) (clipped ratios, beta); the gradient is averaged
      over the pair's training steps (accelerate's accumulation over num_train_timesteps) -> grad-norm clipping ->
      AdamW.
    Randomness, in order per round: prompts, initial and step noise of the trajectories, the pair permutation, the
    per-pair step permutations; all from the trainer's generator.
    Everything runs on the policy's device (Policy::device_type): the trajectories, both models' guided passes and
    the log-probs; only per-pair scalars (log-probs, the loss and its gradients, the signs) and the final images the
    rater scores pass through the host.
  REQUIRES
    - Policy, Reference: DiffusionModel on one device; Scheduler: diffusion::Scheduler on that device
!*/
template <diffusion::DiffusionModel Policy, diffusion::DiffusionModel Reference, class Scheduler, preference::Rater R,
          precision::Policy Precision = precision::fp32>
requires diffusion::Scheduler<Scheduler, typename Policy::scalar_type, typename Policy::device_type>
class D3poTraining : public RoundTrainer<D3poTraining<Policy, Reference, Scheduler, R, Precision>, Policy, Precision> {
  using Base = RoundTrainer<D3poTraining, Policy, Precision>;

 public:
  using typename Base::D;
  using typename Base::T;
  using typename Base::tensor;

  D3poTraining(Policy& policy, Reference& reference, const Scheduler& ddim, R& rater, const TrajectorySection& sampling,
               const loss::D3poLossOptions& loss, const D3poTrainSection& train, std::int64_t channels,
               std::int64_t resolution, std::uint64_t seed, nlohmann::json resolved)
      : Base(policy, "d3po", train.rounds, train.checkpoint_every, train.lr, train.weight_decay, train.max_grad_norm,
             seed, std::move(resolved)),
        reference_(reference),
        ddim_(ddim),
        rater_(rater),
        sampling_(sampling),
        loss_(loss),
        train_(train),
        channels_(channels),
        resolution_(resolution) {
    validate(train);
    validate(sampling);
    loss::validate(loss);
    SPO_CHECK(ddim.num_inference_steps() > 0, "D3poTraining: the scheduler needs set_timesteps()");
  }

  /// Metrics of one minibatch.
  struct MinibatchResult {
    double loss = 0, clip_fraction = 0, ratio_0 = 0, ratio_1 = 0, grad_norm = 0;
  };

  /*!
    REQUIRES
      - traj holds 2P trajectories, pair k = rows (k, P + k); pairs lists pair indices; steps[i] the training step
        indices of pairs[i] (all of the same length J); h0 / h1 the signs of the listed pairs
    ENSURES
      - one optimizer step on the D3PO loss averaged over the J steps
      - throws spo::error, before any parameter changes, when a step log-probability is not finite
  !*/
  MinibatchResult train_minibatch(const Trajectories<T, D>& traj, std::span<const std::int64_t> pairs,
                                  const std::vector<std::vector<std::int64_t>>& steps, std::span<const double> h0,
                                  std::span<const double> h1) {
    const auto m = static_cast<std::int64_t>(pairs.size());
    const std::int64_t p = traj.size() / 2;
    const auto j_count = static_cast<std::int64_t>(steps.at(0).size());
    const double g = sampling_.guidance_scale, eta = sampling_.eta;
    std::vector<std::string> prompts(static_cast<std::size_t>(2 * m));
    for (std::int64_t i = 0; i < m; ++i)
      prompts[static_cast<std::size_t>(i)] = prompts[static_cast<std::size_t>(m + i)] =
          traj.prompts[static_cast<std::size_t>(pairs[static_cast<std::size_t>(i)])];
    tensor cond, uncond;
    {
      nn::no_grad_guard ng;
      cond = this->policy_.encode(prompts);  // [2m, L, D]
      uncond = this->policy_.encode(std::vector<std::string>(prompts.size()));
    }
    nn::zero_grad(this->policy_);
    MinibatchResult out;
    for (std::int64_t j = 0; j < j_count; ++j) {
      // Rows 0..m-1: sample 0 of each pair, rows m..2m-1: sample 1, each at the pair's step steps[i][j].
      std::vector<std::int64_t> t(static_cast<std::size_t>(2 * m)), rows(t.size()), level(t.size()), next(t.size());
      for (std::int64_t i = 0; i < m; ++i) {
        const std::int64_t k = pairs[static_cast<std::size_t>(i)];
        const std::int64_t step = steps[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
        for (const std::int64_t side : {std::int64_t{0}, std::int64_t{1}}) {
          const auto dst = static_cast<std::size_t>(i + side * m);
          rows[dst] = k + side * p;
          level[dst] = step;
          next[dst] = step + 1;
          t[dst] = traj.t[static_cast<std::size_t>(step)];
        }
      }
      const tensor x_t = gather_rows(traj.x, level, rows);    // [2m, C, R, R]
      const tensor x_prev = gather_rows(traj.x, next, rows);  // [2m, C, R, R]
      const tensor tt = scalars_on<T, D>(t);                  // [2m]
      tensor u_ref;
      {
        nn::no_grad_guard ng;
        u_ref = reference_.guided(x_t, tt, cond, uncond, g);  // [2m, C, R, R]
      }
      const tensor u = this->policy_.guided(x_t, tt, cond, uncond, g);                        // [2m, C, R, R]
      const auto lp = to_doubles(transfer<cpu>(ddim_.log_prob(u, t, x_t, x_prev, eta)));      // [2m]
      const auto lr = to_doubles(transfer<cpu>(ddim_.log_prob(u_ref, t, x_t, x_prev, eta)));  // [2m]
      check_finite(lp, "step log-probability", this->round_ + 1);
      check_finite(lr, "reference step log-probability", this->round_ + 1);
      const std::span<const double> lps(lp), lrs(lr);
      const auto res =
          loss::d3po_loss(lps.first(static_cast<std::size_t>(m)), lrs.first(static_cast<std::size_t>(m)),
                          lps.last(static_cast<std::size_t>(m)), lrs.last(static_cast<std::size_t>(m)), h0, h1, loss_);
      SPO_CHECK(std::isfinite(res.loss), "non-finite D3PO loss "
                                             << res.loss << " in round " << this->round_ + 1
                                             << "; stopped before the update, the last checkpoint is intact");
      std::vector<double> d_lp(static_cast<std::size_t>(2 * m));  // the loss gradients, times the loss scale
      const double j_total = static_cast<double>(j_count), seed_scale = this->loss_scale();
      for (std::int64_t i = 0; i < m; ++i) {
        d_lp[static_cast<std::size_t>(i)] = res.d_lp_0[static_cast<std::size_t>(i)] / j_total * seed_scale;
        d_lp[static_cast<std::size_t>(m + i)] = res.d_lp_1[static_cast<std::size_t>(i)] / j_total * seed_scale;
      }
      const tensor glp = scalars_on<T, D>(d_lp);  // [2m]
      this->policy_.guided_backward(ddim_.log_prob_backward(u, t, x_t, x_prev, eta, glp));
      out.loss += res.loss / static_cast<double>(j_count);
      out.clip_fraction += res.clip_fraction / static_cast<double>(j_count);
      out.ratio_0 += res.ratio_0_mean / static_cast<double>(j_count);
      out.ratio_1 += res.ratio_1_mean / static_cast<double>(j_count);
    }
    out.grad_norm = this->clip_and_step();
    return out;
  }

  /// Samples the round's pairs (2P trajectories; pair k = rows k and P + k) and their rater scores (of the final
  /// images, on the host).
  std::pair<Trajectories<T, D>, std::vector<double>> sample_pairs() {
    auto prompts = draw_prompts(this->gen_, train_.prompts_per_round, train_.templates);
    const std::vector<std::string> half = prompts;
    prompts.insert(prompts.end(), half.begin(), half.end());
    auto traj = sample_trajectories(this->policy_, ddim_, prompts, channels_, resolution_, sampling_, this->gen_);
    auto scores = rater_.score(transfer<cpu>(traj.x.back()), traj.prompts);
    return {std::move(traj), std::move(scores)};
  }

  RoundRecord run_round() {
    const auto t0 = std::chrono::steady_clock::now();
    auto [traj, scores] = sample_pairs();
    const auto t1 = std::chrono::steady_clock::now();
    const std::int64_t p = train_.prompts_per_round, n = traj.steps();
    const std::span<const double> sc(scores);
    const auto signs = loss::d3po_signs(sc.first(static_cast<std::size_t>(p)), sc.last(static_cast<std::size_t>(p)));
    const auto order = random_permutation(this->gen_, p);
    const std::int64_t j_count = train_timesteps(n, train_.timestep_fraction);
    std::vector<std::vector<std::int64_t>> steps;
    for (std::int64_t i = 0; i < p; ++i) {
      auto perm = random_permutation(this->gen_, n);
      perm.resize(static_cast<std::size_t>(j_count));
      steps.push_back(std::move(perm));
    }
    MinibatchResult sum;
    std::int64_t batches = 0;
    for (std::int64_t at = 0; at < p; at += train_.batch_size) {
      const auto len = static_cast<std::size_t>(std::min(train_.batch_size, p - at));
      const std::span<const std::int64_t> ids = std::span(order).subspan(static_cast<std::size_t>(at), len);
      std::vector<std::vector<std::int64_t>> st;
      std::vector<double> h0, h1;
      for (auto k : ids) {
        st.push_back(steps[static_cast<std::size_t>(k)]);
        h0.push_back(signs.h0[static_cast<std::size_t>(k)]);
        h1.push_back(signs.h1[static_cast<std::size_t>(k)]);
      }
      const auto r = train_minibatch(traj, ids, st, h0, h1);
      sum.loss += r.loss;
      sum.clip_fraction += r.clip_fraction;
      sum.ratio_0 += r.ratio_0;
      sum.ratio_1 += r.ratio_1;
      sum.grad_norm += r.grad_norm;
      ++batches;
    }
    const auto nb = static_cast<double>(batches);
    double mean = 0, sq = 0, ties = 0;
    for (double v : scores) mean += v / static_cast<double>(scores.size());
    for (double v : scores) sq += (v - mean) * (v - mean);
    for (double h : signs.h0) ties += h == 0 ? 1 : 0;
    ++this->round_;
    RoundRecord rec;
    rec.round = this->round_;
    rec.sum_keys = {"pairs"};
    rec.sample_s = std::chrono::duration<double>(t1 - t0).count();
    rec.train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    rec.metrics = {{"pairs", p},
                   {"train_timesteps", j_count},
                   {"loss", sum.loss / nb},
                   {"clip_fraction", sum.clip_fraction / nb},
                   {"ratio_0", sum.ratio_0 / nb},
                   {"ratio_1", sum.ratio_1 / nb},
                   {"grad_norm", sum.grad_norm / nb},
                   {"tie_fraction", ties / static_cast<double>(p)},
                   {"score_mean", mean},
                   {"score_std", std::sqrt(sq / static_cast<double>(scores.size()))}};
    char buf[96];
    std::snprintf(buf, sizeof buf, "loss %.4f score %.3f", sum.loss / nb, mean);
    rec.summary = buf;
    return rec;
  }

 private:
  Reference& reference_;
  const Scheduler& ddim_;
  R& rater_;
  TrajectorySection sampling_;
  loss::D3poLossOptions loss_;
  D3poTrainSection train_;
  std::int64_t channels_, resolution_;
};

}  // namespace spo::train
