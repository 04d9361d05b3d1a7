// SPDX-License-Identifier: MIT
/// @brief What the baseline trainers (Diffusion-DPO, D3PO, DDPO) share: the round loop with metrics, checkpoints and
/// exact resume, training prompt draws, and DDIM trajectories of the current policy with per-step log-probs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>
#include <nlohmann/json.hpp>

#include "spo/diffusion/concepts.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/metrics_log.hpp"
#include "spo/io/progress.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/tensor/allocator.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/prompts.hpp"
#include "spo/train/common_sections.hpp"
#include "spo/train/concepts.hpp"

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
    (policy, optimizer, generator, round, wall-clock, extra state) are written atomically between rounds, so a
    resumed run repeats exactly what an uninterrupted one does.
    Everything lives on the policy's device (Policy::device_type): the optimizer state, the cached blocks returned
    after each round.
!*/
template <class Derived, class Policy>
class RoundTrainer {
 public:
  using T = typename Policy::scalar_type;
  using D = typename Policy::device_type;
  using tensor = Tensor<T, D>;
  using optimizer_type = optim::AdamW<T, D>;
  static_assert(optim::Optimizer<optimizer_type, Policy>);

  RoundTrainer(Policy& policy, std::string label, std::int64_t rounds, std::int64_t checkpoint_every, double lr,
               double weight_decay, double max_grad_norm, std::uint64_t seed, nlohmann::json resolved)
      : policy_(policy),
        label_(std::move(label)),
        rounds_(rounds),
        checkpoint_every_(checkpoint_every),
        max_grad_norm_(max_grad_norm),
        resolved_(std::move(resolved)),
        optimizer_(optim::AdamWOptions{lr, 0.9, 0.999, 1e-8, weight_decay}),
        gen_{seed, 0} {
    validate_optimizer(lr, weight_decay, max_grad_norm);
    validate_positive(rounds, "rounds");
    validate_positive(checkpoint_every, "checkpoint_every");
  }

  std::int64_t round() const { return round_; }
  Generator& generator() { return gen_; }
  /// Training wall-clock seconds so far (sampling and updates; restored on resume).
  double wall_s() const { return wall_offset_; }

  void resume(const std::filesystem::path& checkpoint) {
    const auto info = io::load_checkpoint(checkpoint, policy_, optimizer_);
    round_ = info.step;
    gen_ = info.rng;
    wall_offset_ = info.config.value("train_wall_s", 0.0);
    if constexpr (requires(Derived & d, const nlohmann::json& j) { d.load_state(j); })
      self().load_state(info.config.value("trainer_state", nlohmann::json::object()));
  }

  void save(const std::filesystem::path& path) {
    nlohmann::json c = resolved_;
    c["train_wall_s"] = wall_offset_;
    if constexpr (requires(const Derived& d, nlohmann::json& j) { d.save_state(j); }) {
      nlohmann::json state = nlohmann::json::object();
      self().save_state(state);
      c["trainer_state"] = std::move(state);
    }
    io::save_checkpoint(path, policy_, optimizer_, io::CheckpointInfo{round_, c, gen_});
  }

  /// Runs to `rounds` with JSONL metrics (<out>/metrics.jsonl: the round's record plus step, sample_s, train_s,
  /// wall_s), checkpoints (<out>/checkpoint.safetensors) and `on_round(round, wall_s)` after each round.
  void run(const std::filesystem::path& out,
           const std::function<void(std::int64_t, double)>& on_round = {}) requires RoundMethod<Derived> {
    io::MetricsLog log(out / "metrics.jsonl", round_ > 0 ? round_ : -1);
    io::ProgressBar bar(label_, rounds_, round_);
    while (round_ < rounds_) {
      auto m = self().run_round();
      wall_offset_ += m.sample_s + m.train_s;  // training time only: callbacks (evaluations) are not counted
      m.metrics["step"] = m.round;
      m.metrics["sample_s"] = m.sample_s;
      m.metrics["train_s"] = m.train_s;
      m.metrics["wall_s"] = wall_offset_;
      log.write(m.metrics);
      bar.update(round_, m.summary);
      if (round_ % checkpoint_every_ == 0 || round_ == rounds_) save(out / "checkpoint.safetensors");
      if (on_round) on_round(round_, wall_offset_);
      // A round's last minibatch has its own size: return cached blocks so that sizes do not pile up over rounds.
      caching_allocator<D>::instance().release_all();
    }
  }

 protected:
  /// Clips the policy's gradient norm to max_grad_norm, takes one AdamW step and returns the norm before clipping.
  double clip_and_step() {
    const double norm = optim::clip_grad_norm(policy_, max_grad_norm_, true);
    optimizer_.step(policy_);
    return norm;
  }

  Policy& policy_;
  std::string label_;
  std::int64_t rounds_, checkpoint_every_;
  double max_grad_norm_;
  nlohmann::json resolved_;
  optimizer_type optimizer_;
  Generator gen_;
  std::int64_t round_ = 0;
  double wall_offset_ = 0;

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
