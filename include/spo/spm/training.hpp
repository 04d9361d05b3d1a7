// SPDX-License-Identifier: MIT
/// @brief Training a preference-model variant on preference pairs exactly as SPO trains its SPM.
#pragma once

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/data/fashion_mnist.hpp"
#include "spo/dist/any_communicator.hpp"
#include "spo/dist/gradient_reducer.hpp"
#include "spo/dist/replica_check.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/metrics_log.hpp"
#include "spo/io/model_files.hpp"
#include "spo/io/progress.hpp"
#include "spo/loss/pair_preference.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/preference/pairs.hpp"
#include "spo/spm/evaluation.hpp"
#include "spo/spm/noised_prediction.hpp"
#include "spo/spm/variant.hpp"
#include "spo/train/common_sections.hpp"
#include "spo/train/data_parallel.hpp"

namespace spo::spm {

struct SpmPairsSection {
  BOOST_HANA_DEFINE_STRUCT(SpmPairsSection, (std::string, train), (std::string, validation));
};

struct SpmTrainSection {
  BOOST_HANA_DEFINE_STRUCT(SpmTrainSection, (std::int64_t, batch_size), (std::int64_t, steps), (double, lr),
                           (std::int64_t, warmup_steps), (double, weight_decay), (double, max_grad_norm),
                           (std::int64_t, log_every), (std::int64_t, eval_every), (std::int64_t, checkpoint_every));
};

/// A preference-model training run; every key is required except init_from (a preference-model checkpoint of any
/// variant with the same network config, e.g. the clean model the SPM starts from, as SPO's SPM starts from PickScore).
struct SpmConfig {
  BOOST_HANA_DEFINE_STRUCT(SpmConfig, (std::uint64_t, seed), (std::string, output_dir), (io::ModelFiles, base),
                           (SpmPairsSection, pairs), (PreferenceNetworkConfig, network),
                           (std::optional<std::string>, init_from), (std::vector<std::int64_t>, eval_timesteps),
                           (SpmTrainSection, train));
};

inline void validate(const SpmConfig& c) {
  const auto& t = c.train;
  train::validate_positive(t.batch_size, "batch_size");
  train::validate_positive(t.steps, "steps");
  train::validate_positive(t.log_every, "log_every");
  train::validate_positive(t.eval_every, "eval_every");
  train::validate_positive(t.checkpoint_every, "checkpoint_every");
  SPO_CONFIG_CHECK(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0, got " << t.warmup_steps);
  train::validate_optimizer(t.lr, t.weight_decay, t.max_grad_norm);
  validate(c.network);
  SPO_CONFIG_CHECK(!c.eval_timesteps.empty(), "eval_timesteps", "must name at least one timestep, got []");
  for (std::size_t i = 0; i < c.eval_timesteps.size(); ++i)
    SPO_CONFIG_CHECK(c.eval_timesteps[i] >= 0, "eval_timesteps[" + std::to_string(i) + "]",
                     "must be >= 0, got " << c.eval_timesteps[i]);
}

/*!
  WHAT THIS REPRESENTS
    The training of preference-model variant V (variant.hpp) on preference pairs, as SPO's train_spm.py:
      - a minibatch of P pairs (shuffled each epoch); for a noised variant each pair gets t ~ U{0..T-1} and one
        noise draw shared by both images, and the frozen base model with CFG predicts x0 in one step
        (predict_pair_x0); for the clean variant the images themselves at t = 0
      - scores s = net(clamp(x0, -1, 1), t, prompt) of both images; loss = pair_preference_loss (two-way
        cross-entropy with soft tie labels, log 0.5 tie correction, 1/n_prompt weights)
      - AdamW with linear warmup, gradient-norm clipping; JSONL metrics, atomic checkpoints, exact resume
    Validation accuracy by timestep (evaluation.hpp) every eval_every steps and at the end.
!*/
template <class V, class Model, class Scheduler>
class SpmTraining {
 public:
  using T = typename Model::scalar_type;
  using network_type = typename V::template network<T>;

  SpmTraining(network_type& net, Model& base, const Scheduler& ddim, const SpmConfig& config, double guidance,
              nlohmann::json resolved)
      : net_(net),
        base_(base),
        ddim_(ddim),
        config_(config),
        guidance_(guidance),
        resolved_(std::move(resolved)),
        optimizer_(optim::AdamWOptions{config.train.lr, 0.9, 0.999, 1e-8, config.train.weight_decay}),
        gen_{config.seed, 0},
        tokenizer_(text::fashion_tokenizer(static_cast<int>(config.network.text_max_length))) {
    validate(config);
    train_ = preference::load_pairs(config.pairs.train);
    validation_ = preference::load_pairs(config.pairs.validation);
    SPO_CONFIG_CHECK(train_.images_a.size(2) == config.network.image.resolution &&
                         validation_.images_a.shape().numel_from(1) == train_.images_a.shape().numel_from(1),
                     "network.image.resolution",
                     config.network.image.resolution << " does not match the pair images " << train_.images_a.shape()
                                                     << " (pairs.train) / " << validation_.images_a.shape()
                                                     << " (pairs.validation)");
    std::map<std::string, double> count;
    for (std::int64_t i = 0; i < train_.size(); ++i) count[train_.prompt(i)] += 1;
    for (std::int64_t i = 0; i < train_.size(); ++i) per_prompt_.push_back(count[train_.prompt(i)]);
    images_a_ = cast<T>(train_.images_a);
    images_b_ = cast<T>(train_.images_b);
  }

  std::int64_t step() const { return step_; }

  /// Data parallel (train_spm.py on several GPUs): call before the first step and before resume, on every rank.
  /// Rank 0's weights are broadcast; rank r draws (t, noise) from its own generator and trains on its share of each
  /// global minibatch of W batch_size pairs; gradients are averaged over ranks before clipping; rank 0 alone logs,
  /// evaluates and writes (the pair loss has no cross-sample term, so no features are gathered).
  void set_communicator(dist::AnyCommunicator comm) {
    SPO_CHECK(step_ == 0 && gen_.offset == 0, "set_communicator: call it before the first step and before resume");
    comm_ = std::move(comm);
    reducer_.reset();
    gen_ = Generator{train::rank_seed(config_.seed, comm_.rank()), 0};
    dist::broadcast_parameters(comm_, net_);
    dist::verify_replicas(comm_, net_, "after the broadcast from rank 0");
  }

  void resume(const std::filesystem::path& checkpoint) {
    const auto info = io::load_checkpoint(checkpoint, net_, optimizer_);
    step_ = info.step;
    gen_ = train::rank_generator(comm_, info.config, info.rng, checkpoint);
    if (info.config.contains("compute")) meter_ = nn::compute_meter_from_json(info.config.at("compute"));
  }
  /// This rank's metered compute of every training step so far (validations excluded), by network.
  const nn::ComputeMeter& compute() const { return meter_; }
  /// Writes the checkpoint (rank 0; every rank calls it: the replicas are verified and the generators gathered).
  void save(const std::filesystem::path& path) {
    nlohmann::json c = resolved_;
    c["compute"] = nn::to_json(meter_);
    if (comm_.size() > 1) {
      dist::verify_replicas(comm_, net_, "at the checkpoint of step " + std::to_string(step_),
                            static_cast<std::uint64_t>(step_));
      c["rank_generators"] = train::rank_generators(comm_, gen_);
    }
    if (comm_.is_root()) io::save_checkpoint(path, net_, optimizer_, io::CheckpointInfo{step_, c, gen_});
    if (comm_.size() > 1) comm_.barrier();
  }

  /// One optimisation step; returns {loss, batch accuracy, grad norm} of this rank's pairs (rank r of W takes pair
  /// slots (step W + r) batch_size .. (step W + r + 1) batch_size - 1 of the epoch permutations).
  std::array<double, 3> train_step() {
    const auto& tc = config_.train;
    const std::int64_t p = tc.batch_size, n = train_.size(), per = images_a_.numel() / n;
    std::vector<std::int64_t> idx(static_cast<std::size_t>(p));
    for (std::int64_t i = 0; i < p; ++i) {
      const std::int64_t flat = (step_ * comm_.size() + comm_.rank()) * p + i, epoch = flat / n;
      if (order_epoch_ != epoch) {
        order_ = data::shuffled_indices(n, config_.seed, static_cast<std::uint64_t>(epoch));
        order_epoch_ = epoch;
      }
      idx[static_cast<std::size_t>(i)] = order_[static_cast<std::size_t>(flat % n)];
    }
    Shape s = images_a_.shape();
    s[0] = p;
    auto a = Tensor<T, cpu>::uninitialized(s), b = Tensor<T, cpu>::uninitialized(s);  // [P, 1, R, R]
    std::vector<std::string> prompts;
    std::vector<double> ya, yb, weight_n;
    for (std::int64_t i = 0; i < p; ++i) {
      const std::int64_t j = idx[static_cast<std::size_t>(i)];
      std::copy_n(images_a_.data() + j * per, per, a.data() + i * per);
      std::copy_n(images_b_.data() + j * per, per, b.data() + i * per);
      prompts.push_back(train_.prompt(j));
      ya.push_back(train_.labels[static_cast<std::size_t>(j)].y_a);
      yb.push_back(train_.labels[static_cast<std::size_t>(j)].y_b);
      weight_n.push_back(per_prompt_[static_cast<std::size_t>(j)]);
    }
    // Randomness of the step: one uniform per pair for t, then the shared noise (drawn for every variant, so the
    // stream position depends only on the step).
    const std::uint64_t first = gen_.reserve(static_cast<std::uint64_t>(p));
    auto noise = randn<T>(a.shape(), gen_);  // [P, 1, R, R]
    std::vector<std::int64_t> t(static_cast<std::size_t>(p), 0);
    PairPredictions<T> x0{std::move(a), std::move(b)};
    if constexpr (V::training_input::noised) {
      const auto n_train = static_cast<std::int64_t>(ddim_.noise_schedule().alphas_cumprod().size());
      for (std::int64_t i = 0; i < p; ++i)
        t[static_cast<std::size_t>(i)] = std::min<std::int64_t>(
            static_cast<std::int64_t>(rng::uniform_at(gen_.seed, first, static_cast<std::uint64_t>(i)) * n_train),
            n_train - 1);
      x0 = predict_pair_x0(base_, ddim_, x0.x0_a, x0.x0_b, noise, t, prompts, guidance_);
    }
    auto x = Tensor<T, cpu>::uninitialized(Shape{2 * p, s[1], s[2], s[3]});  // [2P, 1, R, R]
    for (std::int64_t i = 0; i < p * per; ++i) {
      x[i] = std::clamp(x0.x0_a[i], T(-1), T(1));
      x[p * per + i] = std::clamp(x0.x0_b[i], T(-1), T(1));
    }
    Tensor<T, cpu> tt(Shape{2 * p});  // [2P]
    std::vector<std::vector<std::int32_t>> ids;
    for (int half = 0; half < 2; ++half)
      for (std::int64_t i = 0; i < p; ++i) {
        tt[half * p + i] = static_cast<T>(t[static_cast<std::size_t>(i)]);
        ids.push_back(tokenizer_.encode(prompts[static_cast<std::size_t>(i)]));
      }
    nn::zero_grad(net_);
    const auto scores = net_.forward(x, tt, ids);  // [2P]
    std::vector<double> la, lb;
    for (std::int64_t i = 0; i < p; ++i) {
      la.push_back(static_cast<double>(scores[i]));
      lb.push_back(static_cast<double>(scores[p + i]));
    }
    const auto l = loss::pair_preference_loss(la, lb, ya, yb, weight_n);
    SPO_CHECK(std::isfinite(l.loss), "non-finite loss " << l.loss << " at step " << step_
                                                        << "; the last checkpoint is intact (lower train.lr)");
    Tensor<T, cpu> ds(Shape{2 * p});  // [2P]
    for (std::int64_t i = 0; i < p; ++i) {
      ds[i] = static_cast<T>(l.d_logit_a[static_cast<std::size_t>(i)]);
      ds[p + i] = static_cast<T>(l.d_logit_b[static_cast<std::size_t>(i)]);
    }
    net_.backward(ds);
    if (comm_.size() > 1) {
      if (!reducer_) reducer_.emplace(net_, comm_);
      reducer_->finish();
    }
    const double norm = optim::clip_grad_norm(net_, tc.max_grad_norm, true);
    const double warm = tc.warmup_steps > 0 ? std::min(1.0, static_cast<double>(step_ + 1) / tc.warmup_steps) : 1.0;
    optimizer_.set_lr(tc.lr * warm);
    optimizer_.step(net_);
    ++step_;
    return {l.loss, l.accuracy, norm};
  }

  /// The validation inputs (computed on first use, shared by every evaluation of the run).
  const ValidationViews<T>& validation_views() {
    if (!views_)
      views_ = make_validation_views(base_, ddim_, validation_, config_.eval_timesteps, config_.seed + 7919, guidance_);
    return *views_;
  }

  std::vector<TimestepAccuracy> evaluate() {
    NetworkPreference<V, T> pm(net_);  // a copy of the current weights
    return accuracy_by_timestep(pm, validation_views());
  }

  /// Runs to train.steps with logs, evaluations and checkpoints (<output>/checkpoint.safetensors).
  void run(const std::filesystem::path& out) {
    const auto& tc = config_.train;
    std::optional<io::MetricsLog> log;
    std::optional<io::ProgressBar> bar;
    if (comm_.is_root()) {
      log.emplace(out / "metrics.jsonl", step_ > 0 ? step_ : -1);
      bar.emplace(std::string(V::name), tc.steps, step_);
    }
    const auto t0 = std::chrono::steady_clock::now();
    double loss_acc = 0, acc_acc = 0;
    int n_acc = 0;
    while (step_ < tc.steps) {
      std::array<double, 3> stepped{};
      {
        const nn::MeterScope metered(meter_);  // the validations below are not charged
        stepped = train_step();
      }
      auto [loss, acc, norm] = stepped;
      if (comm_.size() > 1) {  // the run's loss and accuracy: means over ranks
        double v[2] = {loss, std::isfinite(acc) ? acc : 0.5};
        comm_.all_reduce(std::span<double>(v, 2), dist::ReduceOp::mean);
        loss = v[0];
        acc = v[1];
      }
      loss_acc += loss;
      acc_acc += std::isfinite(acc) ? acc : 0.5;
      ++n_acc;
      char fields[64];
      std::snprintf(fields, sizeof fields, "loss %.4f", loss);
      if (bar) bar->update(step_, fields);
      nlohmann::json rec;
      if (step_ % tc.log_every == 0 || step_ == tc.steps) {
        rec = {{"step", step_},
               {"loss", loss_acc / n_acc},
               {"train_accuracy", acc_acc / n_acc},
               {"grad_norm", norm},
               {"lr", optimizer_.options().lr},
               {"logit_scale", static_cast<double>(net_.logit_scale().value[0])}};
        loss_acc = acc_acc = 0;
        n_acc = 0;
      }
      if (comm_.is_root() && (step_ % tc.eval_every == 0 || step_ == tc.steps)) {
        if (rec.is_null()) rec = {{"step", step_}};
        for (const auto& a : evaluate()) rec["val_accuracy_t" + std::to_string(a.t)] = a.label_accuracy;
      }
      if (!rec.is_null() && log) {
        rec["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (comm_.size() > 1) rec["ranks"] = comm_.size();
        log->write(rec);
      }
      if (step_ % tc.checkpoint_every == 0 || step_ == tc.steps) save(out / "checkpoint.safetensors");
    }
  }

 private:
  network_type& net_;
  Model& base_;
  const Scheduler& ddim_;
  SpmConfig config_;
  double guidance_;
  nlohmann::json resolved_;
  optim::AdamW<T> optimizer_;
  Generator gen_;
  nn::ComputeMeter meter_;
  text::Tokenizer tokenizer_;
  preference::PreferencePairs train_, validation_;
  Tensor<T, cpu> images_a_, images_b_;  // [N, 1, R, R]
  std::vector<double> per_prompt_;
  std::optional<ValidationViews<T>> views_;
  std::int64_t step_ = 0;
  std::vector<std::int64_t> order_;
  std::int64_t order_epoch_ = -1;
  dist::AnyCommunicator comm_;
  std::optional<dist::GradientReducer<T, cpu>> reducer_;
};

}  // namespace spo::spm
