// SPDX-License-Identifier: MIT
/// @brief The SPO training loop: step-wise resampler rounds, then SPO-loss minibatches on the LoRA policy.
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
#include "spo/io/checkpoint.hpp"
#include "spo/loss/spo_loss.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/resampler/stepwise.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/prompts.hpp"
#include "spo/train/common_sections.hpp"
#include "spo/train/metrics_log.hpp"
#include "spo/train/progress.hpp"

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

/// Metrics of one round.
struct RoundMetrics {
  std::int64_t round = 0;
  std::int64_t items = 0;
  double loss = 0, ratio_win = 0, ratio_lose = 0, clip_fraction = 0, implicit_accuracy = 0, grad_norm = 0;
  double score_mean = 0, score_std = 0;
  std::map<std::int64_t, std::int64_t> valid_per_t;
  double sample_s = 0, train_s = 0;
};

/*!
  WHAT THIS REPRESENTS
    SPO fine-tuning (train_spo.py) of a LoRA policy against a frozen reference (the base model), both with CFG:
      per round: prompts -> StepwiseResampler (the current policy, no gradients) -> items (x_t, x^w, x^l, t, c)
      -> shuffled -> minibatches: lp = log p(x^{w,l} | x_t) under the policy and the reference (Ddim::log_prob on
      the guided outputs; the two children share x_t, so one guided pass per model serves both), loss = spo_loss
      (clipped ratios, beta), d lp -> Ddim::log_prob_backward -> guided_backward -> LoRA gradients; grad-norm
      clipping; AdamW.
    Checkpoints are taken between rounds (policy, optimizer, generator, round), so a resumed run repeats exactly
    what an uninterrupted one does. Everything runs on the policy's device (Policy::device_type); only per-item
    scalars (log-probs, the loss and its gradients, the gradient norm) pass through the host. A non-finite loss stops the run with an error before any update, leaving the
    last checkpoint intact.
!*/
template <class Policy, class Reference, class Scheduler, preference::PreferenceModel PM, preference::ComparePolicy Cmp,
          resampler::ContinuationRule Cont>
class SpoTraining {
 public:
  using T = typename Policy::scalar_type;
  using D = typename Policy::device_type;
  using tensor = Tensor<T, D>;

  SpoTraining(Policy& policy, Reference& reference, const Scheduler& ddim, PM& pm,
              const resampler::ResamplerOptions& resampler, const loss::SpoLossOptions& loss,
              const SpoTrainSection& train, std::int64_t resolution, std::uint64_t seed, nlohmann::json resolved)
      : policy_(policy), reference_(reference), ddim_(ddim), pm_(pm), resampler_(resampler), loss_(loss),
        train_(train), resolution_(resolution), resolved_(std::move(resolved)),
        optimizer_(optim::AdamWOptions{train.lr, 0.9, 0.999, 1e-8, train.weight_decay}), gen_{seed, 0} {
    resampler::validate(resampler, ddim.num_inference_steps());
    loss::validate(loss);
  }

  std::int64_t round() const { return round_; }
  Generator& generator() { return gen_; }

  void resume(const std::filesystem::path& checkpoint) {
    const auto info = io::load_checkpoint(checkpoint, policy_, optimizer_);
    round_ = info.step;
    gen_ = info.rng;
    wall_offset_ = info.config.value("train_wall_s", 0.0);
  }
  void save(const std::filesystem::path& path) {
    nlohmann::json c = resolved_;
    c["train_wall_s"] = wall_offset_;
    io::save_checkpoint(path, policy_, optimizer_, io::CheckpointInfo{round_, c, gen_});
  }

  /// The prompts of a round: prompts_per_round draws (class, template) uniform over the training prompts.
  std::vector<std::string> draw_prompts() {
    const auto n = static_cast<std::uint64_t>(train_.prompts_per_round);
    const std::uint64_t first = gen_.reserve(n);
    const auto m = static_cast<double>(10 * train_.templates.size());
    std::vector<std::string> p;
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto k = std::min(static_cast<std::size_t>(rng::uniform_at(gen_.seed, first, i) * m),
                              10 * train_.templates.size() - 1);
      p.push_back(text::fashion_prompt(static_cast<int>(k % 10), static_cast<std::size_t>(train_.templates[k / 10])));
    }
    return p;
  }

  /// SPO loss on items [begin, end) of the round's pairs (in `order`); one optimizer step.
  loss::PairLossResult train_minibatch(const resampler::StepPairs<T, D>& items, std::span<const std::int64_t> order,
                                       double& grad_norm) {
    const auto m = static_cast<std::int64_t>(order.size());
    const std::int64_t per = items.x_t.numel() / std::max<std::int64_t>(items.size(), 1);
    Shape s = items.x_t.shape();
    s[0] = m;
    tensor x_t = tensor::uninitialized(s), x_w = tensor::uninitialized(s), x_l = tensor::uninitialized(s);  // [m, C, R, R]
    std::vector<std::int64_t> t;
    std::vector<std::string> prompts;
    Tensor<T, cpu> t_host = Tensor<T, cpu>::uninitialized(Shape{m});         // [m]
    for (std::int64_t i = 0; i < m; ++i) {
      const std::int64_t j = order[static_cast<std::size_t>(i)];
      copy_elements<D>(items.x_t.data() + j * per, per, x_t.data() + i * per);
      copy_elements<D>(items.x_win.data() + j * per, per, x_w.data() + i * per);
      copy_elements<D>(items.x_lose.data() + j * per, per, x_l.data() + i * per);
      t.push_back(items.t[static_cast<std::size_t>(j)]);
      prompts.push_back(items.prompts[static_cast<std::size_t>(j)]);
      t_host[i] = static_cast<T>(t.back());
    }
    const tensor tt = transfer<D>(t_host);                                   // [m]
    const double g = resampler_.options().guidance_scale, eta = resampler_.options().eta;
    tensor cond, uncond, u_ref;
    {
      nn::no_grad_guard ng;
      const std::vector<std::string> empty(static_cast<std::size_t>(m));
      cond = policy_.encode(prompts);
      uncond = policy_.encode(empty);
      u_ref = reference_.guided(x_t, tt, cond, uncond, g);                  // [m, C, R, R]
    }
    nn::zero_grad(policy_);
    const tensor u = policy_.guided(x_t, tt, cond, uncond, g);               // [m, C, R, R]
    const auto lp_w = transfer<cpu>(ddim_.log_prob(u, t, x_t, x_w, eta));      // [m]
    const auto lp_l = transfer<cpu>(ddim_.log_prob(u, t, x_t, x_l, eta));
    const auto lr_w = transfer<cpu>(ddim_.log_prob(u_ref, t, x_t, x_w, eta));
    const auto lr_l = transfer<cpu>(ddim_.log_prob(u_ref, t, x_t, x_l, eta));
    auto to_vec = [](const Tensor<T, cpu>& v) { return std::vector<double>(v.data(), v.data() + v.numel()); };
    for (const auto* v : {&lp_w, &lp_l, &lr_w, &lr_l})
      for (std::int64_t i = 0; i < m; ++i)
        SPO_CHECK(std::isfinite(static_cast<double>((*v)[i])),
                  "non-finite step log-probability in round " << round_ + 1 << " (item at t = " << t[static_cast<std::size_t>(i)]
                  << "); stopped before the update, the last checkpoint is intact");
    const auto res = loss::spo_loss(to_vec(lp_w), to_vec(lr_w), to_vec(lp_l), to_vec(lr_l), loss_);
    SPO_CHECK(std::isfinite(res.loss), "non-finite SPO loss " << res.loss << " in round " << round_
                                       << "; stopped before the update, the last checkpoint is intact");
    Tensor<T, cpu> g_w(Shape{m}), g_l(Shape{m});                             // [m]
    for (std::int64_t i = 0; i < m; ++i) {
      g_w[i] = static_cast<T>(res.d_lp_w[static_cast<std::size_t>(i)]);
      g_l[i] = static_cast<T>(res.d_lp_l[static_cast<std::size_t>(i)]);
    }
    auto du = ddim_.log_prob_backward(u, t, x_t, x_w, eta, transfer<D>(g_w));  // [m, C, R, R]
    const auto du_l = ddim_.log_prob_backward(u, t, x_t, x_l, eta, transfer<D>(g_l));
    axpy<T>(T(1), du_l.view(), du.view());
    policy_.guided_backward(du);
    grad_norm = optim::clip_grad_norm(policy_, train_.max_grad_norm, true);
    optimizer_.step(policy_);
    return res;
  }

  /// One round: sample, then train on the round's items.
  RoundMetrics run_round() {
    RoundMetrics rm;
    rm.round = round_ + 1;
    const auto t0 = std::chrono::steady_clock::now();
    const auto prompts = draw_prompts();
    auto r = resampler_.sample(policy_, ddim_, pm_, prompts, resolution_, 1, gen_);
    const auto t1 = std::chrono::steady_clock::now();
    rm.valid_per_t = r.valid_per_t;
    rm.items = r.pairs.size();
    double sum = 0, sq = 0;
    for (double v : r.final_scores) sum += v;
    rm.score_mean = sum / static_cast<double>(r.final_scores.size());
    for (double v : r.final_scores) sq += (v - rm.score_mean) * (v - rm.score_mean);
    rm.score_std = std::sqrt(sq / static_cast<double>(r.final_scores.size()));
    // Shuffle the items (one permutation per round from the generator) and train in minibatches.
    std::vector<std::int64_t> order(static_cast<std::size_t>(rm.items));
    std::iota(order.begin(), order.end(), 0);
    const std::uint64_t first = gen_.reserve(order.size());
    for (std::size_t i = order.size(); i > 1; --i) {
      const auto j = std::min(static_cast<std::size_t>(rng::uniform_at(gen_.seed, first, i - 1) * static_cast<double>(i)), i - 1);
      std::swap(order[i - 1], order[j]);
    }
    std::int64_t batches = 0;
    for (std::size_t at = 0; at < order.size(); at += static_cast<std::size_t>(train_.batch_size)) {
      const auto len = std::min(static_cast<std::size_t>(train_.batch_size), order.size() - at);
      double norm = 0;
      const auto res = train_minibatch(r.pairs, std::span(order).subspan(at, len), norm);
      rm.loss += res.loss;
      rm.ratio_win += res.ratio_win_mean;
      rm.ratio_lose += res.ratio_lose_mean;
      rm.clip_fraction += res.clip_fraction;
      rm.implicit_accuracy += res.implicit_accuracy;
      rm.grad_norm += norm;
      ++batches;
    }
    if (batches > 0)
      for (double* v : {&rm.loss, &rm.ratio_win, &rm.ratio_lose, &rm.clip_fraction, &rm.implicit_accuracy, &rm.grad_norm})
        *v /= static_cast<double>(batches);
    rm.sample_s = std::chrono::duration<double>(t1 - t0).count();
    rm.train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    ++round_;
    return rm;
  }

  /// Runs to train.rounds with JSONL metrics (<out>/metrics.jsonl), checkpoints (<out>/checkpoint.safetensors)
  /// and `on_round(metrics, wall_s)` after each round (for periodic evaluations).
  void run(const std::filesystem::path& out, const std::function<void(const RoundMetrics&, double)>& on_round = {}) {
    MetricsLog log(out / "metrics.jsonl", round_ > 0 ? round_ : -1);
    ProgressBar bar("spo", train_.rounds, round_);
    while (round_ < train_.rounds) {
      const auto m = run_round();
      wall_offset_ += m.sample_s + m.train_s;  // training time only: callbacks (evaluations) are not counted
      const double wall = wall_offset_;
      nlohmann::json valid = nlohmann::json::object();
      for (const auto& [t, n] : m.valid_per_t) valid[std::to_string(t)] = n;
      log.write({{"step", m.round}, {"items", m.items}, {"loss", m.loss}, {"ratio_win", m.ratio_win},
                 {"ratio_lose", m.ratio_lose}, {"clip_fraction", m.clip_fraction},
                 {"implicit_accuracy", m.implicit_accuracy}, {"grad_norm", m.grad_norm},
                 {"score_mean", m.score_mean}, {"score_std", m.score_std}, {"valid_per_t", valid},
                 {"sample_s", m.sample_s}, {"train_s", m.train_s}, {"wall_s", wall}});
      char fields[96];
      std::snprintf(fields, sizeof fields, "loss %.4f items %lld score %.3f", m.loss, static_cast<long long>(m.items),
                    m.score_mean);
      bar.update(round_, fields);
      if (round_ % train_.checkpoint_every == 0 || round_ == train_.rounds) save(out / "checkpoint.safetensors");
      if (on_round) on_round(m, wall);
      // Each round's last minibatch has its own size, so cached blocks of other sizes would pile up over rounds:
      // return them (the first minibatch of the next round re-faults its pages, about 1% of a round here).
      caching_allocator<D>::instance().release_all();
    }
  }

  /// Training wall-clock seconds so far (sampling and minibatches; restored on resume).
  double wall_s() const { return wall_offset_; }

 private:
  Policy& policy_;
  Reference& reference_;
  const Scheduler& ddim_;
  PM& pm_;
  resampler::StepwiseResampler<PM, Cmp, Cont> resampler_;
  loss::SpoLossOptions loss_;
  SpoTrainSection train_;
  std::int64_t resolution_;
  nlohmann::json resolved_;
  optim::AdamW<T, D> optimizer_;
  Generator gen_;
  std::int64_t round_ = 0;
  double wall_offset_ = 0;
};

}  // namespace spo::train
