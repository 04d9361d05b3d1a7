// SPDX-License-Identifier: MIT
/// @brief The SPO round: step-wise resampler sampling, then pair-loss minibatches on the LoRA policy.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/data/fashion_mnist.hpp"
#include "spo/diffusion/concepts.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/metrics_log.hpp"
#include "spo/io/progress.hpp"
#include "spo/loss/concepts.hpp"
#include "spo/loss/spo_loss.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/resampler/stepwise.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/prompts.hpp"
#include "spo/train/common_sections.hpp"
#include "spo/train/round_trainer.hpp"

namespace spo::train {

/// One sampling round per "round": prompts_per_round prompts are drawn uniformly from the training prompts, the
/// resampler collects valid pairs, and one pass of minibatches of batch_size items trains on them (SPO: no inner
/// epochs, no stored old-policy log-probs).
struct SpoTrainSection {
  BOOST_HANA_DEFINE_STRUCT(SpoTrainSection, (std::int64_t, rounds), (std::int64_t, prompts_per_round),
                           (std::vector<int>, templates), (std::int64_t, batch_size), (double, lr),
                           (double, weight_decay), (double, max_grad_norm), (std::int64_t, checkpoint_every));
};

inline void validate(const LoraSection& l, const SpoTrainSection& t) {
  validate(l);
  validate_positive(t.rounds, "rounds");
  validate_positive(t.prompts_per_round, "prompts_per_round");
  validate_positive(t.batch_size, "batch_size");
  validate_positive(t.checkpoint_every, "checkpoint_every");
  validate_optimizer(t.lr, t.weight_decay, t.max_grad_norm);
  validate_templates(t.templates);
}

/*!
  WHAT THIS REPRESENTS
    SPO fine-tuning (train_spo.py) of a LoRA policy against a frozen reference (the base model), both with CFG:
      per round: prompts -> StepwiseResampler (the current policy, no gradients) -> items (x_t, x^w, x^l, t, c)
      -> shuffled -> minibatches: lp = log p(x^{w,l} | x_t) under the policy and the reference (the scheduler's
      log_prob on the guided outputs; the two children share x_t, so one guided pass per model serves both),
      loss = the pair-loss policy Loss (SPO's clipped-ratio loss by default: docs/algorithm.md 3) on the four
      log-probabilities, d lp -> log_prob_backward -> guided_backward -> LoRA gradients; grad-norm clipping; AdamW.
    The round loop, checkpoints and exact resume are RoundTrainer's, shared with the baselines. Data parallel
    (train_spo.py under accelerate): each rank samples prompts_per_round prompts with its own generator, the valid
    pairs of all ranks are gathered in rank order, rank 0's permutation of them is broadcast and each rank trains on
    an equal share (gather_pairs, local_order); the gradients are averaged over ranks, so W ranks with batch_size b
    train as one process with the union of their pairs and minibatches of W b items. Everything runs on
    the policy's device (Policy::device_type); only per-item scalars (log-probs, the loss and its gradients, the
    gradient norm) pass through the host. A non-finite log-probability or loss stops the run with an error before
    any update, leaving the last checkpoint intact.
  REQUIRES
    - Policy, Reference: DiffusionModel on one device; Scheduler: diffusion::Scheduler on that device
!*/
template <diffusion::DiffusionModel Policy, diffusion::DiffusionModel Reference, class Scheduler,
          preference::PreferenceModel PM, preference::ComparePolicy Cmp, resampler::ContinuationRule Cont,
          loss::StepPairLoss Loss = loss::SpoLoss, precision::Policy Precision = precision::fp32>
requires diffusion::Scheduler<Scheduler, typename Policy::scalar_type, typename Policy::device_type>
class SpoTraining : public RoundTrainer<SpoTraining<Policy, Reference, Scheduler, PM, Cmp, Cont, Loss, Precision>,
                                        Policy, Precision> {
  using Base = RoundTrainer<SpoTraining, Policy, Precision>;

 public:
  using typename Base::D;
  using typename Base::T;
  using typename Base::tensor;
  using loss_options = typename Loss::options_type;

  SpoTraining(Policy& policy, Reference& reference, const Scheduler& scheduler, PM& pm,
              const resampler::ResamplerOptions& resampler, const loss_options& loss, const SpoTrainSection& train,
              std::int64_t resolution, std::uint64_t seed, nlohmann::json resolved)
      : Base(policy, "spo", train.rounds, train.checkpoint_every, train.lr, train.weight_decay, train.max_grad_norm,
             seed, std::move(resolved)),
        reference_(reference),
        scheduler_(scheduler),
        pm_(pm),
        resampler_(resampler),
        loss_(loss),
        train_(train),
        resolution_(resolution) {
    resampler::validate(resampler, scheduler.num_inference_steps());
    validate(loss);
  }

  /// The prompts of a round: prompts_per_round draws (class, template) uniform over the training prompts.
  std::vector<std::string> draw_prompts() {
    return train::draw_prompts(this->gen_, train_.prompts_per_round, train_.templates);
  }

  /// The pair loss on items `order` of the round's pairs; one optimizer step.
  auto train_minibatch(const resampler::StepPairs<T, D>& items, std::span<const std::int64_t> order,
                       double& grad_norm) {
    const auto m = static_cast<std::int64_t>(order.size());
    const std::int64_t per = items.x_t.numel() / std::max<std::int64_t>(items.size(), 1);
    Shape s = items.x_t.shape();
    s[0] = m;
    tensor x_t = tensor::uninitialized(s), x_w = tensor::uninitialized(s),
           x_l = tensor::uninitialized(s);  // [m, C, R, R]
    std::vector<std::int64_t> t;
    std::vector<std::string> prompts;
    Tensor<T, cpu> t_host = Tensor<T, cpu>::uninitialized(Shape{m});  // [m]
    for (std::int64_t i = 0; i < m; ++i) {
      const std::int64_t j = order[static_cast<std::size_t>(i)];
      copy_elements<D>(items.x_t.data() + j * per, per, x_t.data() + i * per);
      copy_elements<D>(items.x_win.data() + j * per, per, x_w.data() + i * per);
      copy_elements<D>(items.x_lose.data() + j * per, per, x_l.data() + i * per);
      t.push_back(items.t[static_cast<std::size_t>(j)]);
      prompts.push_back(items.prompts[static_cast<std::size_t>(j)]);
      t_host[i] = static_cast<T>(t.back());
    }
    const tensor tt = transfer<D>(t_host);  // [m]
    const double g = resampler_.options().guidance_scale, eta = resampler_.options().eta;
    tensor cond, uncond, u_ref;
    {
      nn::no_grad_guard ng;
      const std::vector<std::string> empty(static_cast<std::size_t>(m));
      cond = this->policy_.encode(prompts);
      uncond = this->policy_.encode(empty);
      u_ref = reference_.guided(x_t, tt, cond, uncond, g);  // [m, C, R, R]
    }
    nn::zero_grad(this->policy_);
    const tensor u = this->policy_.guided(x_t, tt, cond, uncond, g);                        // [m, C, R, R]
    const auto lp_w = to_doubles(transfer<cpu>(scheduler_.log_prob(u, t, x_t, x_w, eta)));  // [m]
    const auto lp_l = to_doubles(transfer<cpu>(scheduler_.log_prob(u, t, x_t, x_l, eta)));
    const auto lr_w = to_doubles(transfer<cpu>(scheduler_.log_prob(u_ref, t, x_t, x_w, eta)));
    const auto lr_l = to_doubles(transfer<cpu>(scheduler_.log_prob(u_ref, t, x_t, x_l, eta)));
    const std::int64_t round = this->round_ + 1;
    for (const auto* v : {&lp_w, &lp_l, &lr_w, &lr_l}) check_finite(*v, "step log-probability", round);
    const auto res = Loss::evaluate(lp_w, lr_w, lp_l, lr_l, loss_);
    SPO_CHECK(std::isfinite(res.loss), "non-finite " << Loss::name << " loss " << res.loss << " in round " << round
                                                     << "; stopped before the update, the last checkpoint is intact");
    Tensor<T, cpu> g_w(Shape{m}), g_l(Shape{m});  // [m] the loss gradients, times the loss scale
    const double seed_scale = this->loss_scale();
    for (std::int64_t i = 0; i < m; ++i) {
      g_w[i] = static_cast<T>(res.d_w[static_cast<std::size_t>(i)] * seed_scale);
      g_l[i] = static_cast<T>(res.d_l[static_cast<std::size_t>(i)] * seed_scale);
    }
    auto du = scheduler_.log_prob_backward(u, t, x_t, x_w, eta, transfer<D>(g_w));  // [m, C, R, R]
    const auto du_l = scheduler_.log_prob_backward(u, t, x_t, x_l, eta, transfer<D>(g_l));
    axpy<T>(T(1), du_l.view(), du.view());
    {
      auto sync = this->overlap_gradients();
      this->policy_.guided_backward(du);
    }
    grad_norm = this->clip_and_step();
    return res;
  }

  /// This rank's sampling of a round: prompts_per_round prompts from the trainer's generator, the step-wise resampler
  /// on the current policy.
  resampler::RoundResult<T, D> sample_round() {
    const auto prompts = draw_prompts();
    return resampler_.sample(this->policy_, scheduler_, pm_, prompts, resolution_, 1, this->gen_);
  }

  /// The valid pairs of every rank, concatenated in rank order (one rank: its own), on the policy's device.
  resampler::StepPairs<T, D> gather_pairs(resampler::StepPairs<T, D> local, Shape row_shape) {
    auto& comm = this->comm_;
    if (comm.size() == 1) return local;
    resampler::StepPairs<T, D> all;
    all.x_t = dist::all_gather_rows(comm, local.x_t, row_shape);
    all.x_win = dist::all_gather_rows(comm, local.x_win, row_shape);
    all.x_lose = dist::all_gather_rows(comm, local.x_lose, row_shape);
    all.t = dist::all_gather_values(comm, std::span<const std::int64_t>(local.t));
    all.gap = dist::all_gather_values(comm, std::span<const double>(local.gap));
    all.prompts = dist::all_gather_strings(comm, local.prompts);
    return all;
  }

  /// The items of the round's n gathered pairs this rank trains on, in training order: rank 0 draws a permutation
  /// of [0, n) from its generator and broadcasts it; rank r takes entries [r s, (r + 1) s) with s = floor(n / W)
  /// (the remainder is dropped, as the official code does). One rank: the whole permutation.
  std::vector<std::int64_t> local_order(std::int64_t n) {
    auto& comm = this->comm_;
    std::vector<std::int64_t> order =
        comm.is_root() ? random_permutation(this->gen_, n) : std::vector<std::int64_t>(static_cast<std::size_t>(n));
    if (comm.size() == 1) return order;
    comm.broadcast(std::span<std::int64_t>(order), 0);
    const std::int64_t share = n / comm.size();
    const auto first = order.begin() + comm.rank() * share;
    return std::vector<std::int64_t>(first, first + share);
  }

  /// One round: sample, gather the ranks' pairs, then train on this rank's share in shuffled minibatches (SPO: no
  /// inner epochs, no stored old-policy log-probs).
  RoundRecord run_round() {
    RoundRecord rec;
    rec.round = this->round_ + 1;
    rec.sum_keys = {"items"};
    const auto t0 = std::chrono::steady_clock::now();
    auto r = sample_round();
    const auto t1 = std::chrono::steady_clock::now();
    Shape row{r.final_images.size(1), r.final_images.size(2), r.final_images.size(3)};
    const auto pairs = gather_pairs(std::move(r.pairs), row);
    const auto order = local_order(pairs.size());
    const auto items = static_cast<std::int64_t>(order.size());
    double score_mean = 0, score_sq = 0;
    for (double v : r.final_scores) score_mean += v;
    score_mean /= static_cast<double>(r.final_scores.size());
    for (double v : r.final_scores) score_sq += (v - score_mean) * (v - score_mean);
    const double score_std = std::sqrt(score_sq / static_cast<double>(r.final_scores.size()));
    double loss = 0, ratio_win = 0, ratio_lose = 0, clip_fraction = 0, implicit_accuracy = 0, grad_norm = 0;
    std::int64_t batches = 0;
    for (std::size_t at = 0; at < order.size(); at += static_cast<std::size_t>(train_.batch_size)) {
      const auto len = std::min(static_cast<std::size_t>(train_.batch_size), order.size() - at);
      double norm = 0;
      const auto res = train_minibatch(pairs, std::span(order).subspan(at, len), norm);
      loss += res.loss;
      ratio_win += res.ratio_win_mean;
      ratio_lose += res.ratio_lose_mean;
      clip_fraction += res.clip_fraction;
      implicit_accuracy += res.implicit_accuracy;
      grad_norm += norm;
      ++batches;
    }
    if (batches > 0)
      for (double* v : {&loss, &ratio_win, &ratio_lose, &clip_fraction, &implicit_accuracy, &grad_norm})
        *v /= static_cast<double>(batches);
    nlohmann::json valid = nlohmann::json::object();
    for (const auto& [t, n] : r.valid_per_t) valid[std::to_string(t)] = n;
    rec.metrics = {{"items", items},
                   {"loss", loss},
                   {"ratio_win", ratio_win},
                   {"ratio_lose", ratio_lose},
                   {"clip_fraction", clip_fraction},
                   {"implicit_accuracy", implicit_accuracy},
                   {"grad_norm", grad_norm},
                   {"score_mean", score_mean},
                   {"score_std", score_std},
                   {"valid_per_t", valid}};
    char fields[96];
    std::snprintf(fields, sizeof fields, "loss %.4f items %lld score %.3f", loss, static_cast<long long>(items),
                  score_mean);
    rec.summary = fields;
    rec.sample_s = std::chrono::duration<double>(t1 - t0).count();
    rec.train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    ++this->round_;
    return rec;
  }

 private:
  Reference& reference_;
  const Scheduler& scheduler_;
  PM& pm_;
  resampler::StepwiseResampler<PM, Cmp, Cont> resampler_;
  loss_options loss_;
  SpoTrainSection train_;
  std::int64_t resolution_;
};

}  // namespace spo::train
