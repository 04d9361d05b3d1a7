// SPDX-License-Identifier: MIT
/// @brief The DDPO baseline (Black et al. 2023, DDPO_IS): on-policy trajectories, the rater's reward of the final
/// image, per-prompt normalised advantages and the PPO clipped objective over the stored per-step log-probs.
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
#include "spo/loss/ddpo_loss.hpp"
#include "spo/preference/rater.hpp"
#include "spo/train/round_trainer.hpp"

namespace spo::train {

/// One round: prompts_per_round prompts with samples_per_prompt trajectories each; then inner_epochs passes, each a
/// fresh permutation of the trajectories into minibatches of batch_size and fresh per-trajectory step permutations
/// (the first max(1, floor(N * timestep_fraction)) steps train); one optimizer step per minibatch with the gradient
/// averaged over its steps (ddpo-pytorch: accumulation over num_train_timesteps).
struct DdpoTrainSection {
  BOOST_HANA_DEFINE_STRUCT(DdpoTrainSection, (std::int64_t, rounds), (std::int64_t, prompts_per_round),
                           (std::int64_t, samples_per_prompt), (std::vector<int>, templates),
                           (std::int64_t, batch_size), (std::int64_t, inner_epochs), (double, timestep_fraction),
                           (double, lr), (double, weight_decay), (double, max_grad_norm),
                           (std::int64_t, checkpoint_every));
};

inline void validate(const DdpoTrainSection& t) {
  validate_positive(t.rounds, "rounds");
  validate_positive(t.prompts_per_round, "prompts_per_round");
  validate_positive(t.samples_per_prompt, "samples_per_prompt");
  validate_positive(t.batch_size, "batch_size");
  validate_positive(t.inner_epochs, "inner_epochs");
  validate_positive(t.checkpoint_every, "checkpoint_every");
  SPO_CONFIG_CHECK(std::isfinite(t.timestep_fraction) && t.timestep_fraction > 0 && t.timestep_fraction <= 1,
                   "train.timestep_fraction", "must lie in (0, 1], got " << t.timestep_fraction);
  validate_templates(t.templates);
  validate_optimizer(t.lr, t.weight_decay, t.max_grad_norm);
}

/*!
  WHAT THIS REPRESENTS
    DDPO_IS fine-tuning (kvablack/ddpo-pytorch scripts/train.py; docs/algorithm.md 3.4) of a LoRA policy with CFG (the
    sampling guidance scale); no reference model (the PPO ratio is against the sampling-time log-probs):
      per round: prompts -> samples_per_prompt DDIM trajectories each (eta, CFG; no gradients), storing every step's
      log p_old -> reward R = rater(final image, prompt) -> A = PerPromptStatTracker advantages
      -> inner epochs of minibatches: for each training step j, lp = log p_theta(x_{j+1} | x_j) on the guided policy
      output, loss_j = ddpo_loss(lp, lp_old, A) (clip_range, adv_clip_max); gradient averaged over the steps ->
      grad-norm clipping -> AdamW.
    The stat tracker's buffers are part of the checkpoint (exact resume).
    Randomness, in order per round: prompts, the trajectories' noise, then per inner epoch the trajectory
    permutation and the per-trajectory step permutations; all from the trainer's generator.
    Everything runs on the policy's device (Policy::device_type): the trajectories, the guided passes and the
    log-probs; only per-sample scalars (log-probs, rewards, advantages, the loss and its gradients) and the final
    images the rater scores pass through the host.
  REQUIRES
    - Policy: DiffusionModel; Scheduler: diffusion::Scheduler on the policy's device
!*/
template <diffusion::DiffusionModel Policy, class Scheduler, preference::Rater R,
          precision::Policy Precision = precision::fp32>
requires diffusion::Scheduler<Scheduler, typename Policy::scalar_type, typename Policy::device_type>
class DdpoTraining : public RoundTrainer<DdpoTraining<Policy, Scheduler, R, Precision>, Policy, Precision> {
  using Base = RoundTrainer<DdpoTraining, Policy, Precision>;

 public:
  using typename Base::D;
  using typename Base::T;
  using typename Base::tensor;

  DdpoTraining(Policy& policy, const Scheduler& ddim, R& rater, const TrajectorySection& sampling,
               const loss::DdpoLossOptions& loss, const loss::StatTrackerOptions& tracker,
               const DdpoTrainSection& train, std::int64_t channels, std::int64_t resolution, std::uint64_t seed,
               nlohmann::json resolved)
      : Base(policy, "ddpo", train.rounds, train.checkpoint_every, train.lr, train.weight_decay, train.max_grad_norm,
             seed, std::move(resolved)),
        ddim_(ddim),
        rater_(rater),
        sampling_(sampling),
        loss_(loss),
        tracker_(tracker),
        train_(train),
        channels_(channels),
        resolution_(resolution) {
    validate(train);
    validate(sampling);
    loss::validate(loss);
    SPO_CHECK(ddim.num_inference_steps() > 0, "DdpoTraining: the scheduler needs set_timesteps()");
  }

  const loss::PerPromptStatTracker& tracker() const { return tracker_; }

  /// The tracker's buffers as {prompt: [rewards, oldest first]}.
  void save_state(nlohmann::json& j) const {
    nlohmann::json b = nlohmann::json::object();
    for (const auto& [prompt, buffer] : tracker_.buffers())
      b[prompt] = std::vector<double>(buffer.begin(), buffer.end());
    j["stat_tracker"] = std::move(b);
  }
  /// Rebuilds the buffers by appending each prompt's rewards in order (at most buffer_size each, so none drop).
  void load_state(const nlohmann::json& j) {
    tracker_.clear();
    if (!j.contains("stat_tracker")) return;
    for (const auto& [prompt, values] : j["stat_tracker"].items()) {
      const auto v = values.template get<std::vector<double>>();
      const std::vector<std::string> p(v.size(), prompt);
      tracker_.update(p, v);
    }
  }

  /// Metrics of one minibatch.
  struct MinibatchResult {
    double loss = 0, approx_kl = 0, clipfrac = 0, ratio = 0, grad_norm = 0;
  };

  /*!
    REQUIRES
      - rows index traj; steps[i] the training step indices of rows[i] (all of length J); advantages per row of traj
    ENSURES
      - one optimizer step on the DDPO loss averaged over the J steps
      - throws spo::error, before any parameter changes, when a step log-probability is not finite
  !*/
  MinibatchResult train_minibatch(const Trajectories<T, D>& traj, std::span<const std::int64_t> rows,
                                  const std::vector<std::vector<std::int64_t>>& steps,
                                  std::span<const double> advantages) {
    const auto m = static_cast<std::int64_t>(rows.size());
    const auto j_count = static_cast<std::int64_t>(steps.at(0).size());
    std::vector<std::string> prompts;
    std::vector<double> adv;
    for (auto r : rows) {
      prompts.push_back(traj.prompts[static_cast<std::size_t>(r)]);
      adv.push_back(advantages[static_cast<std::size_t>(r)]);
    }
    tensor cond, uncond;
    {
      nn::no_grad_guard ng;
      cond = this->policy_.encode(prompts);  // [m, L, D]
      uncond = this->policy_.encode(std::vector<std::string>(prompts.size()));
    }
    nn::zero_grad(this->policy_);
    MinibatchResult out;
    for (std::int64_t j = 0; j < j_count; ++j) {
      std::vector<std::int64_t> t(static_cast<std::size_t>(m)), level(t.size()), next(t.size());
      std::vector<double> lp_old(t.size());
      for (std::int64_t i = 0; i < m; ++i) {
        const auto k = static_cast<std::size_t>(i);
        const std::int64_t row = rows[k];
        const auto step = static_cast<std::size_t>(steps[k][static_cast<std::size_t>(j)]);
        level[k] = static_cast<std::int64_t>(step);
        next[k] = static_cast<std::int64_t>(step) + 1;
        t[k] = traj.t[step];
        lp_old[k] = traj.logp[step][static_cast<std::size_t>(row)];
      }
      const tensor x_t = gather_rows(traj.x, level, rows);                                          // [m, C, R, R]
      const tensor x_prev = gather_rows(traj.x, next, rows);                                        // [m, C, R, R]
      const tensor tt = scalars_on<T, D>(t);                                                        // [m]
      const tensor u = this->policy_.guided(x_t, tt, cond, uncond, sampling_.guidance_scale);       // [m, C, R, R]
      const auto lp = to_doubles(transfer<cpu>(ddim_.log_prob(u, t, x_t, x_prev, sampling_.eta)));  // [m]
      check_finite(lp, "step log-probability", this->round_ + 1);
      check_finite(lp_old, "sampling-time step log-probability", this->round_ + 1);
      const auto res = loss::ddpo_loss(lp, lp_old, adv, loss_);
      SPO_CHECK(std::isfinite(res.loss), "non-finite DDPO loss "
                                             << res.loss << " in round " << this->round_ + 1
                                             << "; stopped before the update, the last checkpoint is intact");
      std::vector<double> d_lp(static_cast<std::size_t>(m));  // the loss gradients, times the loss scale
      const double j_total = static_cast<double>(j_count), seed_scale = this->loss_scale();
      for (std::size_t i = 0; i < d_lp.size(); ++i) d_lp[i] = res.d_lp[i] / j_total * seed_scale;
      const tensor glp = scalars_on<T, D>(d_lp);  // [m]
      this->policy_.guided_backward(ddim_.log_prob_backward(u, t, x_t, x_prev, sampling_.eta, glp));
      out.loss += res.loss / static_cast<double>(j_count);
      out.approx_kl += res.approx_kl / static_cast<double>(j_count);
      out.clipfrac += res.clipfrac / static_cast<double>(j_count);
      out.ratio += res.ratio_mean / static_cast<double>(j_count);
    }
    out.grad_norm = this->clip_and_step();
    return out;
  }

  /// Samples the round's trajectories (row p K + s = sample s of prompt p) and their rewards (of the final images, on
  /// the host).
  std::pair<Trajectories<T, D>, std::vector<double>> sample_round() {
    const auto drawn = draw_prompts(this->gen_, train_.prompts_per_round, train_.templates);
    std::vector<std::string> prompts;
    for (const auto& p : drawn)
      for (std::int64_t s = 0; s < train_.samples_per_prompt; ++s) prompts.push_back(p);
    auto traj = sample_trajectories(this->policy_, ddim_, prompts, channels_, resolution_, sampling_, this->gen_);
    auto rewards = rater_.score(transfer<cpu>(traj.x.back()), traj.prompts);
    return {std::move(traj), std::move(rewards)};
  }

  /// The advantages of this rank's samples. W ranks (ddpo-pytorch's train.py): the prompts and rewards of all ranks
  /// are gathered in rank order, every rank updates its (identical) stat tracker with all of them, and takes the
  /// advantages of its own rows.
  std::vector<double> rank_advantages(const std::vector<std::string>& prompts, const std::vector<double>& rewards) {
    auto& comm = this->comm_;
    if (comm.size() == 1) return tracker_.update(prompts, rewards);
    const auto adv = tracker_.update(dist::all_gather_strings(comm, prompts),
                                     dist::all_gather_values(comm, std::span<const double>(rewards)));
    SPO_CHECK(adv.size() == rewards.size() * static_cast<std::size_t>(comm.size()),
              "DDPO: the ranks sampled different numbers of images");
    const auto first = adv.begin() + static_cast<std::ptrdiff_t>(rewards.size()) * comm.rank();
    return std::vector<double>(first, first + static_cast<std::ptrdiff_t>(rewards.size()));
  }

  RoundRecord run_round() {
    const auto t0 = std::chrono::steady_clock::now();
    auto [traj, rewards] = sample_round();
    const auto advantages = rank_advantages(traj.prompts, rewards);
    const auto t1 = std::chrono::steady_clock::now();
    const std::int64_t b = traj.size(), n = traj.steps();
    const std::int64_t j_count = train_timesteps(n, train_.timestep_fraction);
    MinibatchResult sum;
    std::int64_t batches = 0;
    for (std::int64_t e = 0; e < train_.inner_epochs; ++e) {
      const auto order = random_permutation(this->gen_, b);
      std::vector<std::vector<std::int64_t>> steps;
      for (std::int64_t i = 0; i < b; ++i) {
        auto perm = random_permutation(this->gen_, n);
        perm.resize(static_cast<std::size_t>(j_count));
        steps.push_back(std::move(perm));
      }
      for (std::int64_t at = 0; at < b; at += train_.batch_size) {
        const auto len = static_cast<std::size_t>(std::min(train_.batch_size, b - at));
        const std::span<const std::int64_t> ids = std::span(order).subspan(static_cast<std::size_t>(at), len);
        std::vector<std::vector<std::int64_t>> st;
        for (auto k : ids) st.push_back(steps[static_cast<std::size_t>(k)]);
        const auto r = train_minibatch(traj, ids, st, advantages);
        sum.loss += r.loss;
        sum.approx_kl += r.approx_kl;
        sum.clipfrac += r.clipfrac;
        sum.ratio += r.ratio;
        sum.grad_norm += r.grad_norm;
        ++batches;
      }
    }
    const auto nb = static_cast<double>(batches);
    double mean = 0, sq = 0;
    for (double v : rewards) mean += v / static_cast<double>(b);
    for (double v : rewards) sq += (v - mean) * (v - mean);
    ++this->round_;
    RoundRecord rec;
    rec.round = this->round_;
    rec.sum_keys = {"samples"};
    rec.sample_s = std::chrono::duration<double>(t1 - t0).count();
    rec.train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    rec.metrics = {{"samples", b},
                   {"train_timesteps", j_count},
                   {"loss", sum.loss / nb},
                   {"approx_kl", sum.approx_kl / nb},
                   {"clipfrac", sum.clipfrac / nb},
                   {"ratio", sum.ratio / nb},
                   {"grad_norm", sum.grad_norm / nb},
                   {"score_mean", mean},
                   {"score_std", std::sqrt(sq / static_cast<double>(b))}};
    char buf[96];
    std::snprintf(buf, sizeof buf, "loss %.4f score %.3f", sum.loss / nb, mean);
    rec.summary = buf;
    return rec;
  }

 private:
  const Scheduler& ddim_;
  R& rater_;
  TrajectorySection sampling_;
  loss::DdpoLossOptions loss_;
  loss::PerPromptStatTracker tracker_;
  DdpoTrainSection train_;
  std::int64_t channels_, resolution_;
};

}  // namespace spo::train
