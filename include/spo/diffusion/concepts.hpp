// SPDX-License-Identifier: MIT
/// @brief The diffusion module's contracts: the diffusion model, beta schedule, parameterization, sampler policy,
/// scheduler and the scheduler policy an experiment is composed with.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/tensor.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::diffusion {

/*!
  WHAT THIS REPRESENTS
    A text-conditioned diffusion model as the samplers and trainers use it: a noise (or v / x0) predictor with
    classifier-free guidance, on one device and in one scalar type (model::TextConditioned is the one spo ships).
  REQUIRES
    - M::scalar_type (Scalar) and M::device_type (Device): every tensor below is Tensor<scalar_type, device_type>
    - m.encode(prompts) -> [B, L, E] prompt features (an empty string is the unconditional prompt)
    - m.guided(x_t [B, C, H, W], t, cond [B, L, E], uncond [B, L, E], g) -> the guided prediction
      u + g (c - u) [B, C, H, W] at timestep t (one for all rows)
    - m.guided_backward(d out [B, C, H, W]) -> d x_t, after a guided() in grad mode; parameter gradients accumulate
!*/
template <class M>
concept DiffusionModel = Scalar<typename M::scalar_type> && Device<typename M::device_type> &&
    requires(M& m, const Tensor<typename M::scalar_type, typename M::device_type>& x,
             std::span<const std::string> prompts, double t, double g) {
  { m.encode(prompts) } -> std::same_as<Tensor<typename M::scalar_type, typename M::device_type>>;
  { m.guided(x, t, x, x, g) } -> std::same_as<Tensor<typename M::scalar_type, typename M::device_type>>;
  { m.guided_backward(x) } -> std::same_as<Tensor<typename M::scalar_type, typename M::device_type>>;
};

/*!
  WHAT THIS REPRESENTS
    A policy producing the T betas of a diffusion process, in float32 exactly as diffusers computes them
    (Ref: diffusers scheduling_ddim.py, DDIMScheduler.__init__ and betas_for_alpha_bar).
  REQUIRES
    - S::name is the diffusers `beta_schedule` string
    - s.betas(T) returns T values in (0, 1)
!*/
template <class S>
concept BetaSchedule = requires(const S& s, int num_train_timesteps) {
  { S::name } -> std::convertible_to<std::string_view>;
  { s.betas(num_train_timesteps) } -> std::same_as<std::vector<float>>;
};

/// Per-element result of interpreting a model output at noise level abar_t.
struct X0Eps {
  double x0;
  double eps;
};

/*!
  WHAT THIS REPRESENTS
    How the output u of a denoiser at x_t = sqrt(abar) x0 + sqrt(1 - abar) eps is read (Ref: diffusers
    DDIMScheduler.step, prediction_type). All functions are elementwise and linear in (u, x_t).
  REQUIRES
    - P::name is the diffusers prediction_type string
    - P::interpret(u, x_t, abar) returns the predicted (x0, eps)
    - P::jacobian(abar) returns (d x0 / d u, d eps / d u), constant in u and x_t
    - P::target(x0, eps, abar) is the regression target whose MSE trains the model
!*/
template <class P>
concept Parameterization = requires(double u, double x, double a) {
  { P::name } -> std::convertible_to<std::string_view>;
  { P::interpret(u, x, a) } -> std::same_as<X0Eps>;
  { P::jacobian(a) } -> std::same_as<X0Eps>;
  { P::target(u, x, a) } -> std::same_as<double>;
};

/*!
  WHAT THIS REPRESENTS
    A sampler policy of an experiment: how x_{t-1} is drawn from x_t.
  REQUIRES
    - S::name names it; S::eta is DDIM's eta (>= 0); S::stochastic is true iff eta > 0, i.e. the transition
      p(x_{t-1} | x_t) is a Gaussian with positive variance whose log-probability exists
!*/
template <class S>
concept SamplerPolicy = requires {
  { S::name } -> std::convertible_to<std::string_view>;
  { S::eta } -> std::convertible_to<double>;
  { S::stochastic } -> std::convertible_to<bool>;
}
&&(S::eta >= 0.0) && (S::stochastic == (S::eta > 0.0));

/// A sampler whose transitions have a log-probability (what a step-wise preference loss differentiates).
template <class S>
concept StochasticTransition = SamplerPolicy<S> && S::stochastic;

/*!
  WHAT THIS REPRESENTS
    A stochastic scheduler as the SPO step and the on-policy baselines use it, for tensors of scalar T on device D
    (docs/algorithm.md 1.3 and 2). Batched operations take one timestep per batch row.
  REQUIRES
    - typename S::schedule_type (a BetaSchedule) and S::prediction_type (a Parameterization)
    - set_timesteps(N) chooses the N inference timesteps; timesteps() lists them (descending); num_inference_steps()
    - transitions(t, eta): the Gaussian transitions x_t -> x_{t-1} of the rows' timesteps
    - predict(u, x_t, t): the predicted x0 and eps of the model output u; mean(prediction, transitions): the mean of
      x_{t-1}; sample_children(mu, transitions, k, gen): k draws per row from N(mu, std^2) (rows are repeated k times)
    - log_prob(u, t, x_t, x_prev, eta): log p(x_prev | x_t) per row under the output u, a [B] tensor;
      log_prob_backward(u, t, x_t, x_prev, eta, g): g^T d log_prob / d u, shaped like u
!*/
template <class S, class T = float, class D = cpu>
concept Scheduler = BetaSchedule<typename S::schedule_type> && Parameterization<typename S::prediction_type> &&
    requires(S& ms, const S& s, const Tensor<T, D>& x, std::span<const std::int64_t> t, double eta, int n,
             Generator& gen) {
  ms.set_timesteps(n);
  { s.num_inference_steps() } -> std::convertible_to<int>;
  { s.timesteps() } -> std::convertible_to<std::vector<std::int64_t>>;
  { s.mean(s.predict(x, x, t), s.transitions(t, eta)) } -> std::same_as<Tensor<T, D>>;
  { s.sample_children(x, s.transitions(t, eta), n, gen) } -> std::same_as<Tensor<T, D>>;
  { s.log_prob(x, t, x, x, eta) } -> std::same_as<Tensor<T, D>>;
  { s.log_prob_backward(x, t, x, x, eta, x) } -> std::same_as<Tensor<T, D>>;
};

/*!
  WHAT THIS REPRESENTS
    The scheduler policy of an experiment: which scheduler trains and evaluates (its beta schedule and
    parameterization, which must be those the base model was trained with) and which sampler draws the children.
  REQUIRES
    - typename P::scheduler_type, a Scheduler; typename P::sampler_type, a SamplerPolicy
!*/
template <class P>
concept SchedulerPolicy = Scheduler<typename P::scheduler_type> && SamplerPolicy<typename P::sampler_type>;

/*!
  WHAT THIS REPRESENTS
    Where a stochastic sampling step takes its standard normal noise from: a generator (drawn with
    random_normal, the same stream on every device) or an explicit tensor (the noise a reference drew). Empty
    when the caller has none: a stochastic step then fails with an error naming the scheduler.
!*/
template <Scalar T, Device D = cpu>
class StepNoise {
 public:
  StepNoise() = default;
  StepNoise(Generator& gen) : gen_(&gen) {}                 // NOLINT(google-explicit-constructor)
  StepNoise(const Tensor<T, D>& noise) : noise_(&noise) {}  // NOLINT(google-explicit-constructor)

  Tensor<T, D> draw(const Shape& shape, std::string_view who) const {
    if (noise_) {
      SPO_CHECK(noise_->shape() == shape,
                who << ": noise of shape " << noise_->shape() << " for a sample of shape " << shape);
      return *noise_;
    }
    SPO_CHECK(gen_ != nullptr, who << ": a stochastic step needs a generator or a noise tensor");
    return random_normal<T, D>(shape, *gen_);  // shape
  }
  Generator* generator() const { return gen_; }
  const Tensor<T, D>* tensor() const { return noise_; }

 private:
  Generator* gen_ = nullptr;
  const Tensor<T, D>* noise_ = nullptr;
};

/*!
  WHAT THIS REPRESENTS
    An inference scheduler as a text-to-image pipeline uses it (diffusers' SchedulerMixin: DDIM, Euler, Euler
    ancestral, DPM-Solver++, PNDM), for tensors of scalar T on device D. Multistep state (the step index, previous
    model outputs) lives inside the scheduler; set_timesteps resets it.
  REQUIRES
    - set_timesteps(N) chooses the inference timesteps; timesteps() lists them in the order they are visited (real
      numbers: Karras and linspace schedules have fractional timesteps)
    - init_noise_sigma(): the standard deviation of the initial latents
    - scale_model_input(x, t): the model input at the current step, whose timestep must be t
    - step(model_output, t, x, noise) -> x at the next timestep; advances the step index. Stochastic steps take
      their noise from `noise`, deterministic ones ignore it
!*/
template <class S, class T = double, class D = cpu>
concept SamplingScheduler = requires(S& ms, const S& s, const Tensor<T, D>& x, double t, int n,
                                     const StepNoise<T, D>& noise) {
  ms.set_timesteps(n);
  { s.timesteps() } -> std::convertible_to<std::vector<double>>;
  { s.init_noise_sigma() } -> std::convertible_to<double>;
  { s.scale_model_input(x, t) } -> std::same_as<Tensor<T, D>>;
  { ms.step(x, t, x, noise) } -> std::same_as<Tensor<T, D>>;
};

}  // namespace spo::diffusion
