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
#include "spo/diffusion/sampler_policy.hpp"
#include "spo/diffusion/timesteps.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/per_sample.hpp"
#include "spo/tensor/transfer.hpp"

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

template <Scalar T, Device D = cpu>
struct DdimPrediction {
  Tensor<T, D> x0;   // model_output.shape
  Tensor<T, D> eps;  // model_output.shape
};

template <Scalar T, Device D = cpu>
struct DdimStepOutput {
  Tensor<T, D> prev_sample;           // x_t.shape
  Tensor<T, D> pred_original_sample;  // x_t.shape
};

/*!
  WHAT THIS REPRESENTS
    diffusers' DDIMScheduler (Song et al. 2021) for beta schedule S and parameterization P, plus the
    log-probability of a transition as DDPO/D3PO/SPO compute it (docs/algorithm.md sections 1.3 and 2):
      log p(x_prev | x_t) = mean_CHW[ -(x_prev - mu)^2 / (2 std^2) - log std - log sqrt(2 pi) ]
    with the previous timestep clamped to [0, T-1], constants included, mean (not sum) over non-batch axes.
    Every operation takes tensors of any device D: the host computes per-sample coefficients (all parameterizations
    are linear in (u, x_t)), a device that is not host-accessible applies them through per_sample_affine /
    gaussian_log_prob (diffusion/cuda/ddim_kernels.hpp) and draws its noise from the same generator stream as the CPU.
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
  template <Scalar T, Device D>
  DdimPrediction<T, D> predict(const Tensor<T, D>& model_output, const Tensor<T, D>& x_t,
                               std::span<const std::int64_t> t) const {
    check_same_shape(model_output.shape(), x_t.shape(), "Ddim::predict (model_output vs x_t)");
    const auto split = split_batch(x_t, t);
    const std::int64_t batch = split.first, per = split.second;  // plain variables: lambdas capture them portably
    DdimPrediction<T, D> p{Tensor<T, D>::uninitialized(x_t.shape()), Tensor<T, D>::uninitialized(x_t.shape())};
    if constexpr (!D::host_accessible) {
      std::vector<SampleWeights> w_x0, w_eps;  // x0 = w.a u + w.b x_t, likewise eps
      for (std::int64_t b = 0; b < batch; ++b) {
        const double a = schedule_.alpha_cumprod(t[static_cast<std::size_t>(b)]);
        const X0Eps du = P::interpret(1.0, 0.0, a), dx = P::interpret(0.0, 1.0, a);
        w_x0.push_back({du.x0, dx.x0});
        w_eps.push_back({du.eps, dx.eps});
      }
      per_sample_affine(model_output.view(), x_t.view(), std::span<const SampleWeights>(w_x0), p.x0.view());
      per_sample_affine(model_output.view(), x_t.view(), std::span<const SampleWeights>(w_eps), p.eps.view());
      if (config_.clip_sample)
        clamp_inplace(p.x0, static_cast<T>(-config_.clip_sample_range), static_cast<T>(config_.clip_sample_range));
      return p;
    } else {
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
  }

  /// mu = sqrt(abar_prev) x0 + dir * eps per batch element.                  Ref: "prev_sample_mean"
  template <Scalar T, Device D>
  Tensor<T, D> mean(const DdimPrediction<T, D>& p, std::span<const Transition> tr) const {
    const std::int64_t batch = p.x0.size(0), per = p.x0.numel() / std::max<std::int64_t>(batch, 1);
    SPO_CHECK(static_cast<std::int64_t>(tr.size()) == batch, tr.size() << " transitions for batch " << batch);
    auto mu = Tensor<T, D>::uninitialized(p.x0.shape());  // x0.shape
    if constexpr (!D::host_accessible) {
      std::vector<SampleWeights> w;
      for (const auto& x : tr) w.push_back({std::sqrt(x.alpha_prev), x.dir});
      per_sample_affine(p.x0.view(), p.eps.view(), std::span<const SampleWeights>(w), mu.view());
      return mu;
    } else {
      parallel_for(0, batch, [&](std::int64_t b) {
        const double ca = std::sqrt(tr[b].alpha_prev), cd = tr[b].dir;
        for (std::int64_t i = b * per; i < (b + 1) * per; ++i) mu[i] = static_cast<T>(ca * p.x0[i] + cd * p.eps[i]);
      });
      return mu;
    }
  }

  /// One diffusers DDIMScheduler.step at timestep t (the same for the whole batch). When eta > 0 the noise is
  /// `variance_noise` if given, else drawn from gen.
  template <Scalar T, Device D>
  DdimStepOutput<T, D> step(const Tensor<T, D>& model_output, std::int64_t t, const Tensor<T, D>& x_t, double eta,
                            Generator* gen, const Tensor<T, D>* variance_noise = nullptr) const {
    const std::int64_t batch = x_t.size(0);
    std::vector<std::int64_t> ts(static_cast<std::size_t>(batch), t);
    auto pred = predict(model_output, x_t, ts);
    std::vector<Transition> tr(static_cast<std::size_t>(batch), transition(t, eta, PrevTimestepRule::diffusers));
    auto prev = mean(pred, tr);  // x_t.shape
    if (eta > 0.0) {
      Tensor<T, D> z;
      if (variance_noise) {
        check_same_shape(variance_noise->shape(), x_t.shape(), "Ddim::step variance_noise");
        z = *variance_noise;
      } else {
        SPO_CHECK(gen != nullptr, "Ddim::step with eta > 0 needs a generator or variance_noise");
        z = random_normal<T, D>(x_t.shape(), *gen);
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
  template <Scalar T, Device D>
  Tensor<T, D> sample_children(const Tensor<T, D>& mu, std::span<const Transition> tr, int k, Generator& gen) const {
    SPO_CHECK(k >= 1, "number of children must be >= 1, got " << k);
    const std::int64_t batch = mu.size(0), per = mu.numel() / std::max<std::int64_t>(batch, 1);
    SPO_CHECK(static_cast<std::int64_t>(tr.size()) == batch, tr.size() << " transitions for batch " << batch);
    Shape s;
    s.push_back(k);
    for (auto d : mu.shape()) s.push_back(d);
    auto children = random_normal<T, D>(s, gen);  // [k, B, ...]
    if constexpr (!D::host_accessible) {
      std::vector<SampleWeights> w;
      for (const auto& x : tr) w.push_back({1.0, x.std});
      for (int c = 0; c < k; ++c) {
        auto z = children.view().slice(c, 1).reshaped(mu.shape());  // [B, ...]
        per_sample_affine(mu.view(), TensorView<const T, D>(z), std::span<const SampleWeights>(w), z);
      }
      return children;
    } else {
      for (int c = 0; c < k; ++c)
        for (std::int64_t b = 0; b < batch; ++b) {
          T* z = children.data() + (c * batch + b) * per;
          const T sd = static_cast<T>(tr[b].std);
          for (std::int64_t i = 0; i < per; ++i) z[i] = mu[b * per + i] + sd * z[i];
        }
      return children;
    }
  }

  /// log p(x_prev | x_t) per batch element [B] (DDPO/SPO ddim_step_with_logprob), eta > 0 required.
  template <Scalar T, Device D>
  Tensor<T, D> log_prob(const Tensor<T, D>& model_output, std::span<const std::int64_t> t, const Tensor<T, D>& x_t,
                        const Tensor<T, D>& x_prev, double eta) const {
    check_same_shape(x_prev.shape(), x_t.shape(), "Ddim::log_prob (x_prev vs x_t)");
    SPO_CHECK(eta > 0.0, "Ddim::log_prob needs eta > 0 (std = 0 makes the density degenerate), got " << eta);
    const auto tr = transitions(t, eta);
    const auto mu = mean(predict(model_output, x_t, t), tr);  // x_t.shape
    if constexpr (!D::host_accessible) {
      std::vector<double> sd;
      for (const auto& x : tr) sd.push_back(x.std);
      return gaussian_log_prob(x_prev, mu, std::span<const double>(sd));  // [B]
    } else {
      const std::int64_t batch = x_t.size(0), per = x_t.numel() / batch;
      Tensor<T, cpu> lp(Shape{batch});  // [B]
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
  }

  /// d(sum_b g_b log p_b) / d model_output for upstream gradients g [B]; x_prev is treated as data (detached).
  /// d logp_b / d mu_i = (x_prev_i - mu_i) / (std^2 CHW); d mu / d u = sqrt(abar_prev) dx0/du + dir deps/du,
  /// where dx0/du = 0 for elements clipped by clip_sample.
  template <Scalar T, Device D>
  Tensor<T, D> log_prob_backward(const Tensor<T, D>& model_output, std::span<const std::int64_t> t,
                                 const Tensor<T, D>& x_t, const Tensor<T, D>& x_prev, double eta,
                                 const Tensor<T, D>& grad_log_prob) const {
    const auto tr = transitions(t, eta);
    const auto pred = predict(model_output, x_t, t);
    const auto mu = mean(pred, tr);
    const std::int64_t batch = x_t.size(0), per = x_t.numel() / batch;
    SPO_CHECK(grad_log_prob.numel() == batch,
              "log_prob_backward: " << grad_log_prob.shape() << " gradient for batch " << batch);
    if constexpr (!D::host_accessible) {
      // grad_b = c_b (x_prev_b - mu_b) with c_b = g_b dmu_b / (std_b^2 CHW), dmu_b = sqrt(abar_prev) dx0/du + dir
      // deps/du
      SPO_CHECK(!config_.clip_sample,
                "Ddim::log_prob_backward on a device: clip_sample makes d x0 / d u depend on "
                "each element; it is implemented on the CPU only");
      const auto g = transfer<cpu>(grad_log_prob);  // [B]
      std::vector<SampleWeights> w;
      for (std::int64_t b = 0; b < batch; ++b) {
        const X0Eps jac = P::jacobian(tr[b].alpha_t);
        const double dmu = std::sqrt(tr[b].alpha_prev) * jac.x0 + tr[b].dir * jac.eps;
        const double c = static_cast<double>(g[b]) * dmu / (tr[b].std * tr[b].std * static_cast<double>(per));
        w.push_back({c, -c});
      }
      auto grad = Tensor<T, D>::uninitialized(x_t.shape());  // model_output.shape
      per_sample_affine(x_prev.view(), mu.view(), std::span<const SampleWeights>(w), grad.view());
      return grad;
    } else {
      auto grad = Tensor<T, cpu>::uninitialized(x_t.shape());  // model_output.shape
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
  }

 private:
  template <Scalar T, Device D>
  std::pair<std::int64_t, std::int64_t> split_batch(const Tensor<T, D>& x, std::span<const std::int64_t> t) const {
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
/// On a device that is not host-accessible: (1 - g) eps_u + g eps_c in double, rounded once.
template <Scalar T, Device D>
Tensor<T, D> guide(const Tensor<T, D>& eps_uncond, const Tensor<T, D>& eps_cond, double g) {
  check_same_shape(eps_uncond.shape(), eps_cond.shape(), "classifier-free guidance");
  auto out = Tensor<T, D>::uninitialized(eps_cond.shape());  // eps_cond.shape
  if constexpr (!D::host_accessible) {
    const Shape flat{1, out.numel()};
    const SampleWeights w{1.0 - g, g};
    per_sample_affine(eps_uncond.view().reshaped(flat), eps_cond.view().reshaped(flat),
                      std::span<const SampleWeights>(&w, 1), out.view().reshaped(flat));
  } else {
    as_array(out.view()) =
        as_array(eps_uncond.view()) + static_cast<T>(g) * (as_array(eps_cond.view()) - as_array(eps_uncond.view()));
  }
  return out;
}

/// The scheduler policy of an experiment (diffusion::SchedulerPolicy): DDIM with beta schedule S and
/// parameterization P trains and evaluates, and Sampler draws the children.
template <BetaSchedule S, Parameterization P, SamplerPolicy Sampler = AncestralDdim>
struct DdimScheduler {
  using scheduler_type = Ddim<S, P>;
  using sampler_type = Sampler;
};

}  // namespace spo::diffusion
