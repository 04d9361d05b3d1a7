// SPDX-License-Identifier: MIT
/// @brief The Diffusion-DPO baseline (Wallace et al. 2023): offline preference pairs, one shared (t, eps) per pair,
/// the DPO loss on the denoising errors of the LoRA policy and the frozen reference.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/loss/diffusion_dpo_loss.hpp"
#include "spo/preference/pairs.hpp"
#include "spo/tensor/per_sample.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/train/round_trainer.hpp"

namespace spo::train {

/// One round = steps_per_round optimizer steps, each on batch_size pairs taken in order from a per-epoch permutation
/// of the non-tie pairs (DiffusionDPO train.py: one optimizer step per batch, no gradient accumulation here).
struct DiffusionDpoTrainSection {
  BOOST_HANA_DEFINE_STRUCT(DiffusionDpoTrainSection, (std::int64_t, rounds), (std::int64_t, steps_per_round),
                           (std::int64_t, batch_size), (double, lr), (double, weight_decay), (double, max_grad_norm),
                           (std::int64_t, checkpoint_every));
};

inline void validate(const DiffusionDpoTrainSection& t) {
  validate_positive(t.rounds, "rounds");
  validate_positive(t.steps_per_round, "steps_per_round");
  validate_positive(t.batch_size, "batch_size");
  validate_positive(t.checkpoint_every, "checkpoint_every");
  validate_optimizer(t.lr, t.weight_decay, t.max_grad_norm);
}

/*!
  WHAT THIS REPRESENTS
    The training view of a preference pair file: the non-tie pairs as (winner image, loser image, prompt).
    Ties (label (0.5, 0.5)) are dropped, as DiffusionDPO train.py drops Pick-a-Pic ties (label_0 not in {0, 1});
    labels (1, 0) make image a the winner, (0, 1) image b.
    The pairs stay on the host whatever the trainer's device: each minibatch moves its rows there.
!*/
template <Scalar T>
struct WinLosePairs {
  Tensor<T, cpu> x_win;   // [M, C, R, R]
  Tensor<T, cpu> x_lose;  // [M, C, R, R]
  std::vector<std::string> prompts;
  std::int64_t ties_dropped = 0;

  std::int64_t size() const { return static_cast<std::int64_t>(prompts.size()); }
};

template <Scalar T>
WinLosePairs<T> win_lose_pairs(const preference::PreferencePairs& p) {
  std::vector<std::int64_t> keep;
  for (std::int64_t i = 0; i < p.size(); ++i)
    if (!p.labels[static_cast<std::size_t>(i)].is_tie()) keep.push_back(i);
  SPO_CHECK(!keep.empty(), "preference pairs (" << p.split << "): every pair is a tie, nothing to train on");
  const std::int64_t per = p.images_a.numel() / p.images_a.size(0);
  Shape s = p.images_a.shape();
  s[0] = static_cast<std::int64_t>(keep.size());
  WinLosePairs<T> w{Tensor<T, cpu>::uninitialized(s), Tensor<T, cpu>::uninitialized(s), {}, p.size() - s[0]};
  for (std::size_t k = 0; k < keep.size(); ++k) {
    const std::int64_t i = keep[k];
    const bool a_wins = p.labels[static_cast<std::size_t>(i)] == preference::label_a;
    const float* win = (a_wins ? p.images_a : p.images_b).data() + i * per;
    const float* lose = (a_wins ? p.images_b : p.images_a).data() + i * per;
    for (std::int64_t e = 0; e < per; ++e) {
      w.x_win[static_cast<std::int64_t>(k) * per + e] = static_cast<T>(win[e]);
      w.x_lose[static_cast<std::int64_t>(k) * per + e] = static_cast<T>(lose[e]);
    }
    w.prompts.push_back(p.prompt(i));
  }
  return w;
}

/*!
  WHAT THIS REPRESENTS
    Diffusion-DPO fine-tuning (SalesforceAIResearch/DiffusionDPO train.py, train_method 'dpo'; docs/algorithm.md
    3.1) of a LoRA policy against a frozen reference (the base model), pixel space (no VAE), no CFG in training:
      per pair: t ~ U{0 .. T-1} and eps ~ N(0, I) shared by winner and loser; x^{w,l}_t = add_noise(x^{w,l}, eps, t)
      err = mean_CHW (eps_model(x_t, t, c) - eps)^2 for the policy and the reference, on both images
      loss = -log sigmoid(-beta/2 ((err_w - err_l) - (err_ref_w - err_ref_l)))  (loss::diffusion_dpo_loss)
    Scale of beta: err is the per-element MEAN squared error, as in the reference (F.mse_loss(reduction='none')
    .mean over all non-batch dims, SD latents 4x64x64) where beta_dpo = 5000. The mean makes beta independent of the
    image size (a per-element change of the prediction moves err by the same amount whatever C H W is), so the
    reference's 5000 carries over to the 1x32x32 images here unchanged; a sum-of-squares convention would instead
    need beta / (C H W).
    Pair order: pair slot p = (round * steps_per_round + step) * batch_size + i lies in epoch e = p / M and is pair
    perm_e[p % M] (W ranks: rank r takes slots ((round * steps_per_round + step) W + r) batch_size + i, its share of
    one process's minibatch of W batch_size pairs, with (t, eps) from its own generator), with perm_e a permutation
drawn from Generator{seed ^ 0xd1ff, e * ceil(M / 4)} (a pure function of the position: resuming needs only the round).
(t, eps) come from the trainer's generator. Devices: the pairs stay on the host (the data store); each minibatch is
noised there (x_t, eps: data preparation, the same numbers on every device) and moved to the policy's device
(Policy::device_type), where both models run and the denoising errors and their gradient are computed; only the 4B
errors and the loss's per-pair gradients pass back through the host.
  REQUIRES
    - Policy, Reference: models on one device with forward(x_t, t, context) / encode(prompts) (the policy also
      backward(d u, train_text_encoder)); Scheduler: noise_schedule() and config() of the DDIM training schedule
!*/
template <class Policy, class Reference, class Scheduler, precision::Policy Precision = precision::fp32>
class DiffusionDpoTraining
    : public RoundTrainer<DiffusionDpoTraining<Policy, Reference, Scheduler, Precision>, Policy, Precision> {
  using Base = RoundTrainer<DiffusionDpoTraining, Policy, Precision>;

 public:
  using typename Base::D;
  using typename Base::T;
  using typename Base::tensor;

  DiffusionDpoTraining(Policy& policy, Reference& reference, const Scheduler& ddim, WinLosePairs<T> pairs,
                       const loss::DiffusionDpoOptions& loss, const DiffusionDpoTrainSection& train, std::uint64_t seed,
                       nlohmann::json resolved)
      : Base(policy, "diffusion_dpo", train.rounds, train.checkpoint_every, train.lr, train.weight_decay,
             train.max_grad_norm, seed, std::move(resolved)),
        reference_(reference),
        ddim_(ddim),
        pairs_(std::move(pairs)),
        loss_(loss),
        train_(train),
        order_seed_(seed ^ 0xd1ffull) {
    validate(train);
    loss::validate(loss);
    SPO_CHECK(pairs_.size() >= 1, "Diffusion-DPO needs at least one non-tie pair");
  }

  const WinLosePairs<T>& pairs() const { return pairs_; }

  /// The pair indices this rank trains on at optimizer step `step` (counted from the start of training): pair slots
  /// (step W + rank) b .. (step W + rank + 1) b - 1 with W ranks of batch_size b, so that the W ranks together take
  /// the slots of one process with batch size W b (DistributedSampler's contiguous shards of the global batch).
  std::vector<std::int64_t> batch_indices(std::int64_t step) {
    const std::int64_t m = pairs_.size(), world = this->comm_.size(), rank = this->comm_.rank();
    std::vector<std::int64_t> idx;
    for (std::int64_t i = 0; i < train_.batch_size; ++i) {
      const std::int64_t p = (step * world + rank) * train_.batch_size + i, epoch = p / m;
      if (epoch != perm_epoch_) {
        Generator g{order_seed_, static_cast<std::uint64_t>(epoch) * static_cast<std::uint64_t>((m + 3) / 4)};
        perm_ = random_permutation(g, m);
        perm_epoch_ = epoch;
      }
      idx.push_back(perm_[static_cast<std::size_t>(p % m)]);
    }
    return idx;
  }

  /// The (t, eps) of b pairs: one draw each, shared by a pair's winner and loser.
  struct NoiseDraw {
    std::vector<std::int64_t> t;  ///< [b] timesteps
    Tensor<T, cpu> noise;         ///< [b, C, R, R]
  };

  /// The (t, eps) of the next b pairs from the trainer's generator: b uniform timesteps, then b noise images.
  NoiseDraw draw_noise(std::int64_t b) {
    const std::int64_t n_train = ddim_.config().num_train_timesteps;
    const std::uint64_t first = this->gen_.reserve(static_cast<std::uint64_t>(b));
    NoiseDraw d;
    for (std::int64_t i = 0; i < b; ++i)
      d.t.push_back(std::min<std::int64_t>(
          static_cast<std::int64_t>(rng::uniform_at(this->gen_.seed, first, static_cast<std::uint64_t>(i)) *
                                    static_cast<double>(n_train)),
          n_train - 1));
    Shape s = pairs_.x_win.shape();
    s[0] = b;
    d.noise = randn<T>(s, this->gen_);  // [b, C, R, R]
    return d;
  }

  /*!
    ENSURES
      - one Diffusion-DPO optimizer step on pairs `idx` (t and eps from the trainer's generator); returns the loss
        result and sets grad_norm (before clipping)
      - throws spo::error, before any parameter changes, when a denoising error or the loss is not finite
  !*/
  loss::DiffusionDpoResult train_minibatch(std::span<const std::int64_t> idx, double& grad_norm) {
    return train_minibatch(idx, draw_noise(static_cast<std::int64_t>(idx.size())), grad_norm);
  }

  /// The same with the pairs' (t, eps) given (draw.t.size() == idx.size()).
  loss::DiffusionDpoResult train_minibatch(std::span<const std::int64_t> idx, const NoiseDraw& draw,
                                           double& grad_norm) {
    const auto b = static_cast<std::int64_t>(idx.size());
    SPO_CHECK(static_cast<std::int64_t>(draw.t.size()) == b && draw.noise.size(0) == b,
              "Diffusion-DPO minibatch: " << b << " pairs, " << draw.t.size() << " noise draws");
    const std::int64_t per = pairs_.x_win.numel() / pairs_.size();
    // t and eps: one draw per pair, shared by its winner and loser (timesteps.chunk(2)[0].repeat(2)).
    std::vector<std::int64_t> t2(static_cast<std::size_t>(2 * b));
    for (std::int64_t i = 0; i < b; ++i)
      t2[static_cast<std::size_t>(i)] = t2[static_cast<std::size_t>(b + i)] = draw.t[static_cast<std::size_t>(i)];
    using host_tensor = Tensor<T, cpu>;
    const auto& noise = draw.noise;  // [B, C, R, R]
    Shape s = pairs_.x_win.shape();
    s[0] = 2 * b;
    // [2B, C, R, R] each: rows 0..B-1 the winners, B..2B-1 the losers (with the same noise as their winners).
    auto x0 = host_tensor::uninitialized(s), eps_host = host_tensor::uninitialized(s);
    std::vector<std::string> prompts(static_cast<std::size_t>(2 * b));
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int64_t j = idx[static_cast<std::size_t>(i)];
      std::copy_n(pairs_.x_win.data() + j * per, per, x0.data() + i * per);
      std::copy_n(pairs_.x_lose.data() + j * per, per, x0.data() + (b + i) * per);
      std::copy_n(noise.data() + i * per, per, eps_host.data() + i * per);
      std::copy_n(noise.data() + i * per, per, eps_host.data() + (b + i) * per);
      prompts[static_cast<std::size_t>(i)] = prompts[static_cast<std::size_t>(b + i)] =
          pairs_.prompts[static_cast<std::size_t>(j)];
    }
    const tensor x_t = transfer<D>(ddim_.noise_schedule().add_noise(x0, eps_host, t2));  // [2B, C, R, R]
    const tensor eps = transfer<D>(eps_host);                                            // [2B, C, R, R]
    const tensor tt = scalars_on<T, D>(t2);                                              // [2B]
    tensor ctx, u_ref;
    {
      nn::no_grad_guard ng;
      ctx = this->policy_.encode(prompts);       // [2B, L, D]
      u_ref = reference_.forward(x_t, tt, ctx);  // [2B, C, R, R]
    }
    nn::zero_grad(this->policy_);
    const tensor u = this->policy_.forward(x_t, tt, ctx);  // [2B, C, R, R]
    // err = mean_CHW (u - eps)^2 per row: rows 0..B-1 the winners, B..2B-1 the losers.
    const auto err = per_sample_mean_squared_error(u, eps), ref = per_sample_mean_squared_error(u_ref, eps);  // [2B]
    const auto half = static_cast<std::size_t>(b);
    const std::vector<double> err_w(err.begin(), err.begin() + half), err_l(err.begin() + half, err.end());
    const std::vector<double> ref_w(ref.begin(), ref.begin() + half), ref_l(ref.begin() + half, ref.end());
    for (const auto* v : {&err_w, &err_l, &ref_w, &ref_l}) check_finite(*v, "denoising error", this->round_ + 1);
    auto res = loss::diffusion_dpo_loss(err_w, ref_w, err_l, ref_l, loss_);
    SPO_CHECK(std::isfinite(res.loss), "non-finite Diffusion-DPO loss "
                                           << res.loss << " in round " << this->round_ + 1
                                           << "; stopped before the update, the last checkpoint is intact");
    // d err_r / d u = 2 (u - eps) / CHW; the loss gradients times the loss scale.
    std::vector<double> g(static_cast<std::size_t>(2 * b));
    const double seed_scale = this->loss_scale();
    for (std::int64_t r = 0; r < 2 * b; ++r)
      g[static_cast<std::size_t>(r)] =
          2.0 / static_cast<double>(per) *
          (r < b ? res.d_w[static_cast<std::size_t>(r)] : res.d_l[static_cast<std::size_t>(r - b)]) * seed_scale;
    const tensor du = per_sample_scaled_difference(u, eps, std::span<const double>(g));  // [2B, C, R, R]
    {
      auto sync = this->overlap_gradients();
      this->policy_.backward(du, false);
    }
    grad_norm = this->clip_and_step();
    return res;
  }

  RoundRecord run_round() {
    const auto t0 = std::chrono::steady_clock::now();
    double loss = 0, acc = 0, model_err = 0, ref_err = 0, norm_sum = 0;
    for (std::int64_t s = 0; s < train_.steps_per_round; ++s) {
      const auto idx = batch_indices(this->round_ * train_.steps_per_round + s);
      double norm = 0;
      const auto r = train_minibatch(idx, norm);
      loss += r.loss;
      acc += r.implicit_accuracy;
      model_err += r.model_error_mean;
      ref_err += r.ref_error_mean;
      norm_sum += norm;
    }
    const auto n = static_cast<double>(train_.steps_per_round);
    ++this->round_;
    RoundRecord rec;
    rec.round = this->round_;
    rec.sum_keys = {"pairs"};
    rec.train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rec.metrics = {{"pairs", train_.steps_per_round * train_.batch_size},
                   {"loss", loss / n},
                   {"implicit_accuracy", acc / n},
                   {"model_error", model_err / n},
                   {"ref_error", ref_err / n},
                   {"grad_norm", norm_sum / n}};
    char buf[96];
    std::snprintf(buf, sizeof buf, "loss %.4f acc %.3f", loss / n, acc / n);
    rec.summary = buf;
    return rec;
  }

 private:
  Reference& reference_;
  const Scheduler& ddim_;
  WinLosePairs<T> pairs_;
  loss::DiffusionDpoOptions loss_;
  DiffusionDpoTrainSection train_;
  std::uint64_t order_seed_;
  std::vector<std::int64_t> perm_;
  std::int64_t perm_epoch_ = -1;
};

}  // namespace spo::train
