// SPDX-License-Identifier: MIT
/// @brief What the baseline trainers (Diffusion-DPO, D3PO, DDPO) share: the round loop with metrics, checkpoints and
/// exact resume, training prompt draws, and DDIM trajectories of the current policy with per-step log-probs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>
#include <nlohmann/json.hpp>

#include "spo/diffusion/concepts.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/dist/any_communicator.hpp"
#include "spo/dist/exchange.hpp"
#include "spo/dist/gradient_reducer.hpp"
#include "spo/dist/replica_check.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/metrics_log.hpp"
#include "spo/io/progress.hpp"
#include "spo/io/resume.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/optim/mixed_precision_step.hpp"
#include "spo/optim/precision.hpp"
#include "spo/tensor/allocator.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/prompts.hpp"
#include "spo/train/common_sections.hpp"
#include "spo/train/compute_budget.hpp"
#include "spo/train/concepts.hpp"
#include "spo/train/data_parallel.hpp"

namespace spo::train {

/// How the on-policy baselines (D3PO, DDPO) sample their trajectories: DDIM over the base model's inference
/// timesteps with classifier-free guidance (the empty prompt as the unconditional input) and noise scale eta.
struct TrajectorySection {
  BOOST_HANA_DEFINE_STRUCT(TrajectorySection, (double, guidance_scale), (double, eta));
};

/// guidance_scale finite and >= 0; eta finite and > 0 (the step log-probs need noise).
inline void validate(const TrajectorySection& s) {
  SPO_CONFIG_CHECK(std::isfinite(s.guidance_scale) && s.guidance_scale >= 0, "sampling.guidance_scale",
                   "must be finite and >= 0, got " << s.guidance_scale);
  SPO_CONFIG_CHECK(std::isfinite(s.eta) && s.eta > 0, "sampling.eta",
                   "must be finite and > 0 (the step log-probs need noise), got " << s.eta);
}

/// The number of training timesteps per trajectory: max(1, floor(N * fraction)) (ddpo/d3po num_train_timesteps).
inline std::int64_t train_timesteps(std::int64_t n, double fraction) {
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(n) * fraction));
}

/// n prompts drawn uniformly over (class, template) of the given training templates, from gen (SpoTraining's draw).
inline std::vector<std::string> draw_prompts(Generator& gen, std::int64_t n, const std::vector<int>& templates) {
  const std::uint64_t first = gen.reserve(static_cast<std::uint64_t>(n));
  const auto m = static_cast<double>(10 * templates.size());
  std::vector<std::string> p;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k =
        std::min(static_cast<std::size_t>(rng::uniform_at(gen.seed, first, static_cast<std::uint64_t>(i)) * m),
                 10 * templates.size() - 1);
    p.push_back(text::fashion_prompt(static_cast<int>(k % 10), static_cast<std::size_t>(templates[k / 10])));
  }
  return p;
}

/// A uniformly random permutation of [0, n) (Fisher-Yates) from n draws of gen.
inline std::vector<std::int64_t> random_permutation(Generator& gen, std::int64_t n) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const std::uint64_t first = gen.reserve(order.size());
  for (std::size_t i = order.size(); i > 1; --i) {
    const auto j =
        std::min(static_cast<std::size_t>(rng::uniform_at(gen.seed, first, i - 1) * static_cast<double>(i)), i - 1);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

/*!
  WHAT THIS REPRESENTS
    B DDIM trajectories x_T -> x_0 of the current policy (no gradients), as DDPO / D3PO sample them
    (ddim_step_with_logprob, docs/algorithm.md 2): level 0 is x_T ~ N(0, I), level j + 1 = mu_j + std_j z_j with the
    clamped previous timestep, and logp[j] = log p(x_{j+1} | x_j) under the guided policy output at sampling time.
    The levels live on the policy's device D; the step log-probs are host scalars.
!*/
template <Scalar T, Device D = cpu>
struct Trajectories {
  std::vector<Tensor<T, D>> x;            ///< N + 1 levels, each [B, C, R, R]; x.back() is the final image
  std::vector<std::int64_t> t;            ///< N timesteps; step j maps level j (at t[j]) to level j + 1
  std::vector<std::vector<double>> logp;  ///< [N][B] sampling-time step log-probabilities
  std::vector<std::string> prompts;       ///< B prompts

  std::int64_t size() const { return static_cast<std::int64_t>(prompts.size()); }
  std::int64_t steps() const { return static_cast<std::int64_t>(t.size()); }
};

template <Scalar T>
std::vector<double> to_doubles(const Tensor<T, cpu>& v) {
  return std::vector<double>(v.data(), v.data() + v.numel());
}

/*!
  REQUIRES
    - Model: encode(prompts), guided(x, t, cond, uncond, g); ddim.set_timesteps() done; eta > 0
  ENSURES
    - samples one trajectory per prompt on the model's device; randomness (initial noise, then each step's noise)
      from gen, in that order (the same numbers on every device)
!*/
template <diffusion::DiffusionModel Model, class Scheduler>
Trajectories<typename Model::scalar_type, typename Model::device_type> sample_trajectories(
    Model& policy, const Scheduler& ddim, const std::vector<std::string>& prompts, std::int64_t channels,
    std::int64_t resolution, const TrajectorySection& s, Generator& gen) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  nn::no_grad_guard no_grad;
  const auto b = static_cast<std::int64_t>(prompts.size());
  const std::vector<std::string> empty(prompts.size());
  const auto cond = policy.encode(prompts), uncond = policy.encode(empty);  // [B, L, D]
  Trajectories<T, D> out;
  out.prompts = prompts;
  out.x.push_back(random_normal<T, D>(Shape{b, channels, resolution, resolution}, gen));  // [B, C, R, R] x_T
  for (const std::int64_t t : ddim.timesteps()) {
    const Tensor<T, D>& x = out.x.back();
    const std::vector<std::int64_t> ts(static_cast<std::size_t>(b), t);
    auto u = policy.guided(x, static_cast<double>(t), cond, uncond, s.guidance_scale);  // [B, C, R, R]
    const auto tr = ddim.transitions(ts, s.eta);
    auto next = ddim.mean(ddim.predict(u, x, ts), tr);      // [B, C, R, R] mu
    const auto z = random_normal<T, D>(next.shape(), gen);  // [B, C, R, R]
    axpy<T>(static_cast<T>(tr[0].std), z.view(), next.view());
    out.logp.push_back(to_doubles(transfer<cpu>(ddim.log_prob(u, ts, x, next, s.eta))));  // [B]
    out.t.push_back(t);
    out.x.push_back(std::move(next));
  }
  return out;
}

/// Row rows[i] of level levels[i] of the trajectories' levels x (each [B, C, R, R]) for every i, stacked:
/// [rows.size(), C, R, R], on the levels' device (one level's rows: spo::gather_rows(x[level], rows)).
template <Scalar T, Device D>
Tensor<T, D> gather_rows(const std::vector<Tensor<T, D>>& x, std::span<const std::int64_t> levels,
                         std::span<const std::int64_t> rows) {
  SPO_CHECK(levels.size() == rows.size(), "gather_rows: " << levels.size() << " levels for " << rows.size() << " rows");
  std::vector<const Tensor<T, D>*> sources(levels.size());
  for (std::size_t i = 0; i < levels.size(); ++i) sources[i] = &x.at(static_cast<std::size_t>(levels[i]));
  return spo::gather_rows<T, D>(sources, rows);
}

/// The values as a [n] tensor of T on device D (host scalars such as timesteps or per-sample loss gradients, each
/// rounded to T once, moved to D).
template <Scalar T, Device D, class V>
Tensor<T, D> scalars_on(const std::vector<V>& v) {
  auto h = Tensor<T, cpu>::uninitialized(Shape{static_cast<std::int64_t>(v.size())});  // [n]
  for (std::size_t i = 0; i < v.size(); ++i) h[static_cast<std::int64_t>(i)] = static_cast<T>(v[i]);
  return transfer<D>(h);
}

/*!
  WHAT THIS REPRESENTS
    The state and round loop every trainer shares, SPO's and the baselines' (CRTP; Derived is a RoundMethod:
    `RoundRecord run_round()`, and optionally `void save_state(nlohmann::json&) const` /
    `void load_state(const nlohmann::json&)` for extra state that must survive a resume): the LoRA policy, AdamW
    (betas 0.9 / 0.999, eps 1e-8), the generator, the round counter and the training wall-clock. Checkpoints
    (policy, optimizer, generator, round, wall-clock, compute, extra state) are written atomically between rounds, so
    a resumed run repeats exactly what an uninterrupted one does.
    Compute: every round runs under a nn::ComputeMeter; with set_compute() the rounds' charged compute in UNet
    forward-equivalents (fe_round, and fe: the charged inputs plus every round so far, summed over ranks) and the
    rater's queries are logged, and a budget stops the loop after the round that reaches it.
    Everything lives on the policy's device (Policy::device_type): the optimizer state, the cached blocks returned
    after each round.
    Precision (precision::Policy, fp32 by default): the update is optim::MixedPrecisionStep's. A method seeds its
    backward with loss_scale() times its loss gradients (exactly 1 without loss scaling); clip_and_step() then
    unscales, skips the update and backs the scale off when a gradient is not finite (fp16), or stops the run with an
    error (fp32, tf32, bf16), and otherwise clips and steps the FP32 masters. Under loss scaling each round's record
    adds skipped_steps and loss_scale, and its grad_norm is the mean over the updates taken. The checkpoint holds the
    masters (the model's own parameters when they are float), the optimizer state and the precision with its scaler
    state; a resume under another precision is refused.
    Data parallel (set_communicator, before the first round or resume): rank 0's parameters are broadcast to every
    rank and checked identical; each rank draws from its own generator (rank_seed); the trainable gradients are
    averaged over ranks before clipping (dist::GradientReducer, buckets started during the last backward when the
    method opens overlap_gradients()), so the norm is the global one; a 16-bit model averages its FP32 masters'
    gradients once they are gathered, still scaled under fp16, so every rank skips or steps alike. The round records
    are reduced (reduce_record); rank 0 alone writes metrics and checkpoints, after the ranks' parameters are verified
    identical (a hash) and every rank's generator is stored, so a resume under the same number of ranks continues
    exactly.
!*/
template <class Derived, class Policy, precision::Policy Precision = precision::fp32>
class RoundTrainer {
 public:
  using T = typename Policy::scalar_type;
  using D = typename Policy::device_type;
  using tensor = Tensor<T, D>;
  using precision_type = Precision;
  /// The scalar of the policy's parameters (16-bit behind a model::Autocast; the trainer's tensors are T).
  using parameter_scalar = optim::parameter_scalar_t<Policy>;
  using step_type = optim::MixedPrecisionStep<Policy, Precision>;
  using optimizer_type = typename step_type::optimizer_type;
  static_assert(optim::Optimizer<optimizer_type, optim::MasterWeights<Policy>>);

  RoundTrainer(Policy& policy, std::string label, std::int64_t rounds, std::int64_t checkpoint_every, double lr,
               double weight_decay, double max_grad_norm, std::uint64_t seed, nlohmann::json resolved)
      : policy_(policy),
        label_(std::move(label)),
        rounds_(rounds),
        checkpoint_every_(checkpoint_every),
        max_grad_norm_(max_grad_norm),
        resolved_(std::move(resolved)),
        step_(policy, optim::AdamWOptions{lr, 0.9, 0.999, 1e-8, weight_decay}),
        gen_{seed, 0},
        seed_(seed) {
    validate_optimizer(lr, weight_decay, max_grad_norm);
    validate_positive(rounds, "rounds");
    validate_positive(checkpoint_every, "checkpoint_every");
  }

  std::int64_t round() const { return round_; }
  Generator& generator() { return gen_; }

  /// The factor a method multiplies its loss gradients by before the backward (1 without loss scaling).
  double loss_scale() const { return step_.loss_scale(); }
  /// Replaces the loss scaling's options and state (before the first round; the policy must scale losses).
  void set_loss_scaling(const optim::LossScaleOptions& o) {
    SPO_CHECK(round_ == 0, "set_loss_scaling: call it before the first round and before resume");
    step_.set_loss_scaling(o);
  }
  /// Optimizer updates taken so far.
  std::int64_t updates() const { return step_.optimizer().step_count(); }
  /// Updates skipped for a non-finite gradient so far (always 0 without loss scaling).
  std::int64_t skipped_steps() const { return skipped_; }

  /*!
    REQUIRES
      - unit_flops > 0 (train::unet_row_flops of the base model); charged_fe, budget_fe >= 0 (budget_fe 0: none)
    ENSURES
      - the compute so far counts from charged_fe (the method's inputs, e.g. its preference model) and
        charged_queries rater labels; run() stops once forward_equivalents() >= budget_fe
  !*/
  void set_compute(double unit_flops, double charged_fe, std::int64_t charged_queries, double budget_fe) {
    SPO_CHECK(unit_flops > 0 && charged_fe >= 0 && charged_queries >= 0 && budget_fe >= 0,
              "set_compute: unit " << unit_flops << ", charged " << charged_fe << ", budget " << budget_fe);
    unit_flops_ = unit_flops;
    charged_fe_ = charged_fe;
    charged_queries_ = charged_queries;
    budget_fe_ = budget_fe;
  }
  /// Charged compute so far in UNet forward-equivalents: the inputs' plus every round's, summed over ranks.
  double forward_equivalents() const { return charged_fe_ + fe_; }
  /// Rater labels so far (the inputs' and every round's, summed over ranks).
  std::int64_t rater_queries() const { return charged_queries_ + queries_; }
  /// This rank's metered compute of every round so far, by network.
  const nn::ComputeMeter& compute() const { return meter_; }
  bool budget_spent() const { return budget_fe_ > 0 && forward_equivalents() >= budget_fe_; }
  /// Training wall-clock seconds so far (sampling and updates; restored on resume).
  double wall_s() const { return wall_offset_; }
  /// CPU seconds of this process (all its threads) spent in rounds so far (restored on resume). Unlike wall_s it
  /// does not count the time the process waited for a core or was stopped, so runs that shared a machine stay
  /// comparable; with one thread and a core to itself the two agree.
  double cpu_s() const { return cpu_offset_; }

  /*!
    REQUIRES
      - called before the first round and before resume(), on every rank with the same arguments otherwise
    ENSURES
      - the trainer runs as rank comm.rank() of comm.size(): rank 0's parameters are broadcast to all and verified
        identical; this rank's generator is {rank_seed(seed, rank), 0}
  !*/
  void set_communicator(dist::AnyCommunicator comm) {
    SPO_CHECK(round_ == 0 && gen_.offset == 0, "set_communicator: call it before the first round and before resume");
    comm_ = std::move(comm);
    reducer_.reset();
    gen_ = Generator{rank_seed(seed_, comm_.rank()), 0};
    if (comm_.size() == 1) return;
    dist::broadcast_parameters(comm_, policy_);
    // The FP32 masters of 16-bit weights were taken from this rank's own values: take them again from rank 0's.
    if constexpr (HalfScalar<parameter_scalar>) step_.masters().refresh();
    dist::verify_replicas(comm_, policy_, "after the broadcast from rank 0");
  }
  const dist::AnyCommunicator& communicator() const { return comm_; }
  dist::AnyCommunicator& communicator() { return comm_; }

  void resume(const std::filesystem::path& checkpoint) {
    // Refused before anything changes: a checkpoint of another precision (one without the key is fp32's).
    const auto recorded = io::checkpoint_config(checkpoint).value("precision", nlohmann::json::object());
    const std::string name = recorded.value("policy", std::string("fp32"));
    if (name != Precision::name)
      throw input_error(checkpoint.string() + ": --resume refused: the checkpoint was trained under precision " + name +
                        ", this binary trains under " + std::string(Precision::name));
    const auto info = io::load_checkpoint(checkpoint, step_.masters(), step_.optimizer());
    try {
      step_.load_state(recorded.value("loss_scaler", nlohmann::json::object()));
    } catch (const error& e) {
      throw input_error(checkpoint.string() + ": " + e.what());
    }
    step_.masters().publish();
    skipped_ = recorded.value("skipped_steps", std::int64_t{0});
    round_ = info.step;
    gen_ = rank_generator(comm_, info.config, info.rng, checkpoint);
    wall_offset_ = info.config.value("train_wall_s", 0.0);
    cpu_offset_ = info.config.value("train_cpu_s", 0.0);
    if (info.config.contains("compute")) {
      const auto& c = info.config.at("compute");
      meter_ = nn::compute_meter_from_json(c.at("meter"));
      fe_ = c.at("forward_equivalents").template get<double>();
      queries_ = c.at("rater_queries").template get<std::int64_t>();
    }
    if constexpr (requires(Derived & d, const nlohmann::json& j) { d.load_state(j); })
      self().load_state(info.config.value("trainer_state", nlohmann::json::object()));
  }

  /// Writes the checkpoint (rank 0; every rank calls it: the replicas are verified and the generators gathered).
  void save(const std::filesystem::path& path) {
    nlohmann::json c = resolved_;
    c["train_wall_s"] = wall_offset_;
    c["train_cpu_s"] = cpu_offset_;
    c["compute"] = {{"meter", nn::to_json(meter_)}, {"forward_equivalents", fe_}, {"rater_queries", queries_}};
    c["precision"] = {{"policy", std::string(Precision::name)}};
    if constexpr (Precision::loss_scaling) {
      c["precision"]["loss_scaler"] = step_.state();
      c["precision"]["skipped_steps"] = skipped_;
    }
    if constexpr (requires(const Derived& d, nlohmann::json& j) { d.save_state(j); }) {
      nlohmann::json state = nlohmann::json::object();
      self().save_state(state);
      c["trainer_state"] = std::move(state);
    }
    if (comm_.size() > 1) {
      dist::verify_replicas(comm_, policy_, "at the checkpoint of round " + std::to_string(round_),
                            static_cast<std::uint64_t>(round_));
      if constexpr (HalfScalar<parameter_scalar>)  // what the checkpoint stores of the trainable weights
        dist::verify_replicas(comm_, step_.masters(),
                              "in the FP32 masters at the checkpoint of round " + std::to_string(round_));
      c["rank_generators"] = rank_generators(comm_, gen_);
    }
    if (comm_.is_root())
      io::save_checkpoint(path, step_.masters(), step_.optimizer(), io::CheckpointInfo{round_, c, gen_});
    if (comm_.size() > 1) comm_.barrier();  // no rank reads the checkpoint before rank 0 wrote it
  }

  /// Runs to `rounds` (or until the budget of set_compute is spent) with JSONL metrics (<out>/metrics.jsonl: the
  /// round's record plus step, sample_s, train_s, wall_s, cpu_s, rater_queries_round, flops_round and, with
  /// set_compute, fe_round and fe), checkpoints (<out>/checkpoint.safetensors) and `on_round(round, wall_s)` after each
  /// round.
  void run(const std::filesystem::path& out,
           const std::function<void(std::int64_t, double)>& on_round = {}) requires RoundMethod<Derived> {
    std::optional<io::MetricsLog> log;
    std::optional<io::ProgressBar> bar;
    if (comm_.is_root()) {
      log.emplace(out / "metrics.jsonl", round_ > 0 ? round_ : -1);
      bar.emplace(label_, rounds_, round_);
    }
    while (round_ < rounds_ && !budget_spent()) {
      nn::ComputeMeter round_meter;
      RoundRecord m;
      round_updates_ = round_skipped_ = 0;
      round_norm_sum_ = 0;
      const std::clock_t cpu_start = std::clock();
      {
        const nn::MeterScope metered(round_meter);
        m = self().run_round();
      }
      const double cpu_round = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
      meter_ += round_meter;
      if constexpr (Precision::loss_scaling) {
        m.metrics["skipped_steps"] = round_skipped_;
        m.metrics["loss_scale"] = step_.loss_scale();
        m.metrics["grad_norm"] = round_updates_ > 0
                                     ? nlohmann::json(round_norm_sum_ / static_cast<double>(round_updates_))
                                     : nlohmann::json();  // null: every update of the round skipped
      }
      nlohmann::json flops = nlohmann::json::object();
      for (const auto& [name, c] : round_meter.networks) flops[name] = c.flops();
      m.metrics["flops_round"] = flops;
      m.metrics["rater_queries_round"] = train::rater_queries(round_meter);
      m.sum_keys.push_back("rater_queries_round");
      if (unit_flops_ > 0) {
        m.metrics["fe_round"] = train::forward_equivalents(round_meter, unit_flops_);
        m.sum_keys.push_back("fe_round");
      }
      reduce_record(comm_, m);
      queries_ += m.metrics["rater_queries_round"].get<std::int64_t>();
      if (unit_flops_ > 0) {
        fe_ += m.metrics["fe_round"].get<double>();
        m.metrics["fe"] = forward_equivalents();
      }
      m.metrics["rater_queries"] = rater_queries();
      wall_offset_ += m.sample_s + m.train_s;  // training time only: callbacks (evaluations) are not counted
      m.metrics["step"] = m.round;
      m.metrics["sample_s"] = m.sample_s;
      m.metrics["train_s"] = m.train_s;
      m.metrics["wall_s"] = wall_offset_;
      cpu_offset_ += cpu_round;
      m.metrics["cpu_s"] = cpu_offset_;
      if (comm_.size() > 1) m.metrics["ranks"] = comm_.size();
      if (log) log->write(m.metrics);
      if (bar) bar->update(round_, m.summary);
      if (round_ % checkpoint_every_ == 0 || round_ == rounds_ || budget_spent()) save(out / "checkpoint.safetensors");
      if (on_round && comm_.is_root()) on_round(round_, wall_offset_);
      // A round's last minibatch has its own size: return cached blocks so that sizes do not pile up over rounds.
      caching_allocator<D>::instance().release_all();
    }
  }

 protected:
  /// The gradients' scalar the reducer averages: the masters' (FP32 for 16-bit weights, the model's own otherwise).
  using reduced_scalar = compute_type_t<parameter_scalar>;
  /// The gradient averaging of a data-parallel run (built on first use), over the trainable parameters as the
  /// optimizer sees them: step_.masters(), which for float and double models are the model's own parameters.
  dist::GradientReducer<reduced_scalar, D>& reducer() {
    if (!reducer_) reducer_.emplace(step_.masters(), comm_);
    return *reducer_;
  }
  /// The scope around the last backward before clip_and_step(): gradient buckets start their all-reduce as soon as
  /// backward completes them (a one-rank run does nothing). The layers of a 16-bit model report their 16-bit
  /// parameters, which are not the reduced FP32 masters: its buckets all start in clip_and_step(), after the
  /// gradients are gathered into the masters.
  nn::gradient_ready_scope overlap_gradients() { return reducer().overlap(); }

  /// One update under the precision policy (see above): the gradients gathered into the masters and averaged over
  /// ranks, then unscaled, clipped to max_grad_norm (the global norm), one AdamW step on the masters. Returns the
  /// unscaled norm before clipping, which is not finite for a skipped update.
  double clip_and_step() {
    const auto r = step_.step(max_grad_norm_, [&](auto&) {
      if (comm_.size() > 1) reducer().finish();
    });
    if (r.skipped) {
      ++skipped_;
      ++round_skipped_;
    } else {
      ++round_updates_;
      round_norm_sum_ += r.grad_norm;
    }
    return r.grad_norm;
  }

  Policy& policy_;
  std::string label_;
  std::int64_t rounds_, checkpoint_every_;
  double max_grad_norm_;
  nlohmann::json resolved_;
  step_type step_;
  Generator gen_;
  std::int64_t round_ = 0;
  double wall_offset_ = 0;
  double cpu_offset_ = 0;
  nn::ComputeMeter meter_;
  double unit_flops_ = 0, charged_fe_ = 0, budget_fe_ = 0, fe_ = 0;
  std::int64_t charged_queries_ = 0, queries_ = 0;
  std::int64_t skipped_ = 0, round_skipped_ = 0, round_updates_ = 0;
  double round_norm_sum_ = 0;
  std::uint64_t seed_;
  dist::AnyCommunicator comm_;
  std::optional<dist::GradientReducer<reduced_scalar, D>> reducer_;

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

/// Throws spo::error (a non-finite value stops the run before the update, leaving the last checkpoint intact).
inline void check_finite(std::span<const double> v, const char* what, std::int64_t round) {
  for (std::size_t i = 0; i < v.size(); ++i)
    SPO_CHECK(std::isfinite(v[i]), "non-finite " << what << " (" << v[i] << " at item " << i << ") in round " << round
                                                 << "; stopped before the update, the last checkpoint is intact");
}

}  // namespace spo::train
