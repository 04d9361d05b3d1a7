// SPDX-License-Identifier: MIT
/// @brief DDIM sampler with eta, the SPO split (x0 / eps, Gaussian mean and std, k children) and per-step log-probs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <span>
#include <vector>

#include "spo/core/parallel.hpp"
#include "spo/core/rng.hpp"
#include "spo/diffusion/noise_schedule.hpp"
#include "spo/diffusion/prediction.hpp"
#include "spo/diffusion/timesteps.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::diffusion {

struct DdimConfig {
  int num_train_timesteps = 1000;
  TimestepSpacing timestep_spacing = TimestepSpacing::leading;
  int steps_offset = 0;
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  bool set_alpha_to_one = false;
};

/// Where the previous timestep's abar comes from when t - T/N < 0.
enum class PrevTimestepRule {
  diffusers,  ///< final_alpha_cumprod (DDIMScheduler.step)
  clamped     ///< abar[clamp(t - T/N, 0, T-1)] (ddim_step_with_logprob of DDPO, D3PO and SPO)
};

/// The Gaussian transition x_{t-1} ~ N(sqrt(abar_prev) x0 + dir * eps, std^2) of one DDIM step.
struct Transition {
  std::int64_t t = 0, t_prev = 0;
  double alpha_t = 0, alpha_prev = 0;
  double std = 0;  ///< eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
  double dir = 0;  ///< sqrt(1 - abar_prev - std^2)
};

template <Scalar T>
struct DdimPrediction {
  Tensor<T, cpu> x0;   // model_output.shape
  Tensor<T, cpu> eps;  // model_output.shape
};

template <Scalar T>
struct DdimStepOutput {
  Tensor<T, cpu> prev_sample;           // x_t.shape
  Tensor<T, cpu> pred_original_sample;  // x_t.shape
};

/*!
  WHAT THIS REPRESENTS
    diffusers' DDIMScheduler (Song et al. 2021) for beta schedule S and parameterization P, plus the
    log-probability of a transition as DDPO/D3PO/SPO compute it (algorithm.md sections 1.3 and 2):
      log p(x_prev | x_t) = mean_CHW[ -(x_prev - mu)^2 / (2 std^2) - log std - log sqrt(2 pi) ]
    with the previous timestep clamped to [0, T-1], constants included, mean (not sum) over non-batch axes.
!*/
template <BetaSchedule S, Parameterization P>
class Ddim {
 public:
  using schedule_type = S;
  using prediction_type = P;

  Ddim() = default;
  Ddim(const S& schedule, DdimConfig config)
      : config_(config), schedule_(schedule, config.num_train_timesteps, config.set_alpha_to_one) {}

  void set_timesteps(int num_inference_steps) {
    timesteps_ = make_timesteps(config_.timestep_spacing, num_inference_steps, config_.num_train_timesteps,
                                config_.steps_offset);
    num_inference_steps_ = num_inference_steps;
  }
  const std::vector<std::int64_t>& timesteps() const { return timesteps_; }
  int num_inference_steps() const { return num_inference_steps_; }
  const DdimConfig& config() const { return config_; }
  const NoiseSchedule& noise_schedule() const { return schedule_; }

  Transition transition(std::int64_t t, double eta, PrevTimestepRule rule) const {
    SPO_CHECK(num_inference_steps_ > 0, "Ddim: set_timesteps() must be called first");
    SPO_CHECK(eta >= 0.0, "Ddim: eta must be >= 0, got " << eta);
    const int n_train = config_.num_train_timesteps;
    Transition tr;
    tr.t = t;
    tr.t_prev = t - n_train / num_inference_steps_;  // always T // N, whatever the spacing
    tr.alpha_t = schedule_.alpha_cumprod(t);
    if (rule == PrevTimestepRule::clamped) {
      tr.t_prev = std::clamp<std::int64_t>(tr.t_prev, 0, n_train - 1);
      tr.alpha_prev = schedule_.alpha_cumprod(tr.t_prev);
    } else {
      tr.alpha_prev = tr.t_prev >= 0 ? schedule_.alpha_cumprod(tr.t_prev) : schedule_.final_alpha_cumprod();
    }
    const double variance = (1.0 - tr.alpha_prev) / (1.0 - tr.alpha_t) * (1.0 - tr.alpha_t / tr.alpha_prev);
    tr.std = eta * std::sqrt(std::max(variance, 0.0));
    tr.dir = std::sqrt(std::max(1.0 - tr.alpha_prev - tr.std * tr.std, 0.0));
    return tr;
  }

  /// Predicted x0 (clipped when clip_sample) and eps from a model output; t per batch element.
  /// Ref: DDIMScheduler.step steps 3-4; SPO ddim_step_fetch_x0.
  template <Scalar T>
  DdimPrediction<T> predict(const Tensor<T, cpu>& model_output, const Tensor<T, cpu>& x_t,
                            std::span<const std::int64_t> t) const {
    check_same_shape(model_output.shape(), x_t.shape(), "Ddim::predict (model_output vs x_t)");
    const auto [batch, per] = split_batch(x_t, t);
    DdimPrediction<T> p{Tensor<T, cpu>::uninitialized(x_t.shape()), Tensor<T, cpu>::uninitialized(x_t.shape())};
    parallel_for(0, batch, [&](std::int64_t b) {
      const double a = schedule_.alpha_cumprod(t[static_cast<std::size_t>(b)]);
      const std::int64_t o = b * per;
      for (std::int64_t i = 0; i < per; ++i) {
        X0Eps r = P::interpret(model_output[o + i], x_t[o + i], a);
        if (config_.clip_sample) r.x0 = std::clamp(r.x0, -config_.clip_sample_range, config_.clip_sample_range);
        p.x0[o + i] = static_cast<T>(r.x0);
        p.eps[o + i] = static_cast<T>(r.eps);
      }
    });
    return p;
  }

  /// mu = sqrt(abar_prev) x0 + dir * eps per batch element.                  Ref: "prev_sample_mean"
  template <Scalar T>
  Tensor<T, cpu> mean(const DdimPrediction<T>& p, std::span<const Transition> tr) const {
    const std::int64_t batch = p.x0.size(0), per = p.x0.numel() / std::max<std::int64_t>(batch, 1);
    SPO_CHECK(static_cast<std::int64_t>(tr.size()) == batch, tr.size() << " transitions for batch " << batch);
    auto mu = Tensor<T, cpu>::uninitialized(p.x0.shape());                  // x0.shape
    parallel_for(0, batch, [&](std::int64_t b) {
      const double ca = std::sqrt(tr[b].alpha_prev), cd = tr[b].dir;
      for (std::int64_t i = b * per; i < (b + 1) * per; ++i)
        mu[i] = static_cast<T>(ca * p.x0[i] + cd * p.eps[i]);
    });
    return mu;
  }

  /// One diffusers DDIMScheduler.step at timestep t (the same for the whole batch). When eta > 0 the noise is
  /// `variance_noise` if given, else drawn from gen.
  template <Scalar T>
  DdimStepOutput<T> step(const Tensor<T, cpu>& model_output, std::int64_t t, const Tensor<T, cpu>& x_t, double eta,
                         Generator* gen, const Tensor<T, cpu>* variance_noise = nullptr) const {
    const std::int64_t batch = x_t.size(0);
    std::vector<std::int64_t> ts(static_cast<std::size_t>(batch), t);
    auto pred = predict(model_output, x_t, ts);
    std::vector<Transition> tr(static_cast<std::size_t>(batch), transition(t, eta, PrevTimestepRule::diffusers));
    auto prev = mean(pred, tr);                                               // x_t.shape
    if (eta > 0.0) {
      Tensor<T, cpu> z;
      if (variance_noise) {
        check_same_shape(variance_noise->shape(), x_t.shape(), "Ddim::step variance_noise");
        z = *variance_noise;
      } else {
        SPO_CHECK(gen != nullptr, "Ddim::step with eta > 0 needs a generator or variance_noise");
        z = randn<T>(x_t.shape(), *gen);
      }
      axpy<T>(static_cast<T>(tr[0].std), z.view(), prev.view());
    }
    return {std::move(prev), std::move(pred.x0)};
  }

  /// Transitions of the log-prob convention (clamped previous timestep), one per batch element.
  std::vector<Transition> transitions(std::span<const std::int64_t> t, double eta) const {
    std::vector<Transition> tr;
    for (auto ti : t) tr.push_back(transition(ti, eta, PrevTimestepRule::clamped));
    return tr;
  }

  /// k children x_{t-1}^(s) = mu + std * z^(s) of one mean, sample-major: [k, B, ...]. Ref: SPO ddim_step_fetch_x_t_1
  template <Scalar T>
  Tensor<T, cpu> sample_children(const Tensor<T, cpu>& mu, std::span<const Transition> tr, int k, Generator& gen) const {
    SPO_CHECK(k >= 1, "number of children must be >= 1, got " << k);
    const std::int64_t batch = mu.size(0), per = mu.numel() / std::max<std::int64_t>(batch, 1);
    SPO_CHECK(static_cast<std::int64_t>(tr.size()) == batch, tr.size() << " transitions for batch " << batch);
    Shape s;
    s.push_back(k);
    for (auto d : mu.shape()) s.push_back(d);
    auto children = randn<T>(s, gen);                                          // [k, B, ...]
    for (int c = 0; c < k; ++c)
      for (std::int64_t b = 0; b < batch; ++b) {
        T* z = children.data() + (c * batch + b) * per;
        const T sd = static_cast<T>(tr[b].std);
        for (std::int64_t i = 0; i < per; ++i) z[i] = mu[b * per + i] + sd * z[i];
      }
    return children;
  }

  /// log p(x_prev | x_t) per batch element [B] (DDPO/SPO ddim_step_with_logprob), eta > 0 required.
  template <Scalar T>
  Tensor<T, cpu> log_prob(const Tensor<T, cpu>& model_output, std::span<const std::int64_t> t, const Tensor<T, cpu>& x_t,
                          const Tensor<T, cpu>& x_prev, double eta) const {
    check_same_shape(x_prev.shape(), x_t.shape(), "Ddim::log_prob (x_prev vs x_t)");
    SPO_CHECK(eta > 0.0, "Ddim::log_prob needs eta > 0 (std = 0 makes the density degenerate), got " << eta);
    const auto tr = transitions(t, eta);
    const auto mu = mean(predict(model_output, x_t, t), tr);                  // x_t.shape
    const std::int64_t batch = x_t.size(0), per = x_t.numel() / batch;
    Tensor<T, cpu> lp(Shape{batch});                                          // [B]
    constexpr double log_sqrt_2pi = 0.91893853320467274178;
    for (std::int64_t b = 0; b < batch; ++b) {
      const double sd = tr[b].std, inv2var = 1.0 / (2.0 * sd * sd);
      double acc = 0.0;
      for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
        const double d = static_cast<double>(x_prev[i]) - static_cast<double>(mu[i]);
        acc += d * d;
      }
      lp[b] = static_cast<T>(-acc * inv2var / static_cast<double>(per) - std::log(sd) - log_sqrt_2pi);
    }
    return lp;
  }

  /// d(sum_b g_b log p_b) / d model_output for upstream gradients g [B]; x_prev is treated as data (detached).
  /// d logp_b / d mu_i = (x_prev_i - mu_i) / (std^2 CHW); d mu / d u = sqrt(abar_prev) dx0/du + dir deps/du,
  /// where dx0/du = 0 for elements clipped by clip_sample.
  template <Scalar T>
  Tensor<T, cpu> log_prob_backward(const Tensor<T, cpu>& model_output, std::span<const std::int64_t> t,
                                   const Tensor<T, cpu>& x_t, const Tensor<T, cpu>& x_prev, double eta,
                                   const Tensor<T, cpu>& grad_log_prob) const {
    const auto tr = transitions(t, eta);
    const auto pred = predict(model_output, x_t, t);
    const auto mu = mean(pred, tr);
    const std::int64_t batch = x_t.size(0), per = x_t.numel() / batch;
    SPO_CHECK(grad_log_prob.numel() == batch, "log_prob_backward: " << grad_log_prob.shape() << " gradient for batch " << batch);
    auto grad = Tensor<T, cpu>::uninitialized(x_t.shape());                  // model_output.shape
    parallel_for(0, batch, [&](std::int64_t b) {
      const X0Eps jac = P::jacobian(tr[b].alpha_t);
      const double ca = std::sqrt(tr[b].alpha_prev), cd = tr[b].dir;
      const double scale = static_cast<double>(grad_log_prob[b]) / (tr[b].std * tr[b].std * static_cast<double>(per));
      const double r = config_.clip_sample_range;
      for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
        const double x0 = P::interpret(model_output[i], x_t[i], tr[b].alpha_t).x0;
        const bool clipped = config_.clip_sample && (x0 < -r || x0 > r);
        const double dmu = (clipped ? 0.0 : ca * jac.x0) + cd * jac.eps;
        grad[i] = static_cast<T>(scale * (static_cast<double>(x_prev[i]) - static_cast<double>(mu[i])) * dmu);
      }
    });
    return grad;
  }

 private:
  template <Scalar T>
  std::pair<std::int64_t, std::int64_t> split_batch(const Tensor<T, cpu>& x, std::span<const std::int64_t> t) const {
    SPO_CHECK(x.rank() >= 1, "expected a batched tensor, got shape " << x.shape());
    const std::int64_t batch = x.size(0);
    SPO_CHECK(static_cast<std::int64_t>(t.size()) == batch, t.size() << " timesteps for batch shape " << x.shape());
    return {batch, batch == 0 ? 0 : x.numel() / batch};
  }

  DdimConfig config_;
  NoiseSchedule schedule_;
  std::vector<std::int64_t> timesteps_;
  int num_inference_steps_ = 0;
};

/// Classifier-free guidance eps = eps_u + g (eps_c - eps_u) (Ho & Salimans 2022); backward: d eps_c = g d,
/// d eps_u = (1 - g) d.
template <Scalar T>
Tensor<T, cpu> guide(const Tensor<T, cpu>& eps_uncond, const Tensor<T, cpu>& eps_cond, double g) {
  check_same_shape(eps_uncond.shape(), eps_cond.shape(), "classifier-free guidance");
  auto out = Tensor<T, cpu>::uninitialized(eps_cond.shape());
  as_array(out.view()) = as_array(eps_uncond.view()) + static_cast<T>(g) * (as_array(eps_cond.view()) - as_array(eps_uncond.view()));
  return out;
}

}  // namespace spo::diffusion
