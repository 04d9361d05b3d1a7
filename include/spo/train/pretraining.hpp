// SPDX-License-Identifier: MIT
/// @brief Pretraining of the base text-to-image model: DDPM denoising loss, condition dropout, AdamW, EMA, resume.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/data/fashion_mnist.hpp"
#include "spo/diffusion/denoising_loss.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/metrics_log.hpp"
#include "spo/io/png.hpp"
#include "spo/io/progress.hpp"
#include "spo/io/run_record.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/model/text_conditioned.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/optim/ema.hpp"
#include "spo/text/prompts.hpp"
#include "spo/text/text_encoder.hpp"
#include "spo/train/common_sections.hpp"

namespace spo::train {

struct PretrainSection {
  BOOST_HANA_DEFINE_STRUCT(PretrainSection, (std::int64_t, batch_size), (std::int64_t, steps), (double, lr),
                           (std::int64_t, warmup_steps), (double, weight_decay), (double, max_grad_norm),
                           (double, cond_dropout), (double, ema_decay), (std::int64_t, log_every),
                           (std::int64_t, checkpoint_every), (std::int64_t, sample_every));
};

struct PretrainConfig {
  BOOST_HANA_DEFINE_STRUCT(PretrainConfig, (std::uint64_t, seed), (std::string, data_dir), (std::string, output_dir),
                           (std::int64_t, resolution), (model::UNetConfig, unet), (model::TextSection, text),
                           (diffusion::ScheduleSection, schedule), (diffusion::SamplingSection, sampling),
                           (PretrainSection, train));
};

inline void validate(const PretrainConfig& c) {
  const auto& t = c.train;
  SPO_CONFIG_CHECK(c.resolution >= 28, "resolution",
                   "must be >= 28 (Fashion-MNIST is 28x28, padded), got " << c.resolution);
  model::validate(c.unet);
  const auto multiple = std::int64_t{1} << (c.unet.block_out_channels.size() - 1);
  SPO_CONFIG_CHECK(
      c.resolution % multiple == 0, "resolution",
      c.resolution << " is not divisible by " << multiple << " (one 2x downsampling per UNet level but the last)");
  validate_positive(t.batch_size, "batch_size");
  validate_positive(t.steps, "steps");
  validate_positive(t.log_every, "log_every");
  validate_positive(t.checkpoint_every, "checkpoint_every");
  validate_positive(t.sample_every, "sample_every");
  SPO_CONFIG_CHECK(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0, got " << t.warmup_steps);
  validate_optimizer(t.lr, t.weight_decay, t.max_grad_norm);
  SPO_CONFIG_CHECK(t.cond_dropout >= 0 && t.cond_dropout < 1, "train.cond_dropout",
                   "must be in [0, 1), got " << t.cond_dropout);
  SPO_CONFIG_CHECK(t.ema_decay >= 0 && t.ema_decay < 1, "train.ema_decay", "must be in [0, 1), got " << t.ema_decay);
  SPO_CONFIG_CHECK(c.text.max_length >= 1, "text.max_length", "must be >= 1, got " << c.text.max_length);
  diffusion::validate(c.sampling, c.schedule.num_train_timesteps);
}

/// The parameters a pretraining checkpoint holds: the model and its EMA shadow ("ema.*").
template <class Model, class EmaT>
struct ModelWithEma {
  Model& model;
  EmaT& ema;
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix = {}) {
    model.visit_parameters(f, prefix);
    ema.visit_parameters(f, nn::join_name(prefix, "ema"));
  }
};

/*!
  WHAT THIS REPRESENTS
    The pretraining recipe of the base model: for a batch of Fashion-MNIST images x0 with prompts from the training
    templates (replaced by "" with probability cond_dropout, for classifier-free guidance), t ~ U{0..T-1},
    eps ~ N(0, I), x_t = add_noise(x0, eps, t); loss = mse(u(x_t, t, prompt), target_P(x0, eps, t)); AdamW with
    linear warm-up, global grad-norm clipping, EMA of the weights. One Philox generator drives all randomness and is
    checkpointed with the step, so a resumed run reproduces the uninterrupted one exactly.
!*/
template <class Model, diffusion::BetaSchedule S, diffusion::Parameterization P>
class Pretraining {
 public:
  using T = typename Model::scalar_type;
  using tensor = Tensor<T, cpu>;

  Pretraining(Model& model, const PretrainConfig& config, nlohmann::json resolved_config)
      : model_(model),
        config_(config),
        resolved_(std::move(resolved_config)),
        ddim_(diffusion::make_scheduler<S, P>(config.schedule)),
        optimizer_(optim::AdamWOptions{config.train.lr, 0.9, 0.999, 1e-8, config.train.weight_decay}),
        ema_(model, config.train.ema_decay),
        gen_{config.seed, 0} {
    validate(config);
    ddim_.set_timesteps(config.sampling.num_inference_steps);
  }

  const diffusion::Ddim<S, P>& scheduler() const { return ddim_; }
  optim::Ema<T>& ema() { return ema_; }
  std::int64_t step() const { return step_; }

  /// Restores model, EMA, optimizer, RNG and step from a checkpoint.
  void resume(const std::filesystem::path& checkpoint) {
    ModelWithEma<Model, optim::Ema<T>> state{model_, ema_};
    const auto info = io::load_checkpoint(checkpoint, state, optimizer_);
    step_ = info.step;
    gen_ = info.rng;
    ema_.set_updates(step_);
  }

  void save(const std::filesystem::path& path) {
    ModelWithEma<Model, optim::Ema<T>> state{model_, ema_};
    io::save_checkpoint(path, state, optimizer_, io::CheckpointInfo{step_, resolved_, gen_});
  }

  /// One optimisation step on a batch; returns {loss, grad_norm}.
  std::pair<double, double> train_step(const data::FashionMnist& data) {
    const auto& tc = config_.train;
    const std::int64_t b = tc.batch_size;
    std::vector<std::int64_t> idx(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int64_t flat = step_ * b + i;
      const std::int64_t epoch = flat / data.count, pos = flat % data.count;
      if (order_epoch_ != epoch) {
        order_ = data::shuffled_indices(data.count, config_.seed, static_cast<std::uint64_t>(epoch));
        order_epoch_ = epoch;
      }
      idx[static_cast<std::size_t>(i)] = order_[static_cast<std::size_t>(pos)];
    }
    auto x0 = data::to_tensor<T>(data, idx, config_.resolution);  // [B, 1, R, R]
    // Per-sample randomness: timestep, template, dropout (3 uniforms each), then the noise.
    const std::uint64_t first = gen_.reserve(static_cast<std::uint64_t>(3 * b));
    std::vector<std::int64_t> t(static_cast<std::size_t>(b));
    std::vector<std::string> prompts(static_cast<std::size_t>(b));
    const int n_train = config_.schedule.num_train_timesteps;
    for (std::int64_t i = 0; i < b; ++i) {
      const double u_t = rng::uniform_at(gen_.seed, first, static_cast<std::uint64_t>(3 * i));
      const double u_p = rng::uniform_at(gen_.seed, first, static_cast<std::uint64_t>(3 * i + 1));
      const double u_d = rng::uniform_at(gen_.seed, first, static_cast<std::uint64_t>(3 * i + 2));
      t[static_cast<std::size_t>(i)] = std::min<std::int64_t>(static_cast<std::int64_t>(u_t * n_train), n_train - 1);
      const auto tmpl = std::min<std::size_t>(static_cast<std::size_t>(u_p * text::fashion_train_templates),
                                              text::fashion_train_templates - 1);
      prompts[static_cast<std::size_t>(i)] =
          u_d < tc.cond_dropout ? std::string{} : text::fashion_prompt(data.labels[idx[i]], tmpl);
    }
    auto noise = randn<T>(x0.shape(), gen_);  // [B, 1, R, R]
    auto x_t = ddim_.noise_schedule().add_noise(x0, noise, t);
    tensor tt(Shape{b});
    for (std::int64_t i = 0; i < b; ++i) tt[i] = static_cast<T>(t[static_cast<std::size_t>(i)]);

    nn::zero_grad(model_);
    auto u = model_.forward(x_t, tt, std::span<const std::string>(prompts));  // [B, 1, R, R]
    auto target = diffusion::training_target<P>(ddim_.noise_schedule(), x0, noise, t);
    auto lg = diffusion::mse_loss(u, target);
    SPO_CHECK(std::isfinite(lg.loss), "non-finite loss "
                                          << lg.loss << " at step " << step_
                                          << "; the last checkpoint is intact (lower train.lr or check the data)");
    model_.backward(lg.grad, true);
    const double norm = optim::clip_grad_norm(model_, tc.max_grad_norm, true);
    const double warm = tc.warmup_steps > 0 ? std::min(1.0, static_cast<double>(step_ + 1) / tc.warmup_steps) : 1.0;
    optimizer_.set_lr(tc.lr * warm);
    optimizer_.step(model_);
    ema_.update(model_);
    ++step_;
    return {lg.loss, norm};
  }

  /// A grid with one row per class prompt (template 0) and `columns` seeds, sampled with the EMA weights.
  tensor sample_grid(int columns, std::uint64_t seed) {
    Model ema_model = model_;
    ema_.copy_to(ema_model);
    std::vector<std::string> prompts;
    for (int c = 0; c < 10; ++c)
      for (int j = 0; j < columns; ++j) prompts.push_back(text::fashion_prompt(c, 0));
    Generator g{seed, 0};
    auto x = randn<T>(Shape{static_cast<std::int64_t>(prompts.size()), 1, config_.resolution, config_.resolution}, g);
    return model::sample_ddim(ema_model, ddim_, std::move(x), prompts, config_.sampling.guidance_scale,
                              config_.sampling.eta, g);
  }

  /// Runs to config.train.steps with logs, checkpoints (<output>/checkpoint.safetensors) and sample grids.
  void run(const data::FashionMnist& data, const std::filesystem::path& out) {
    const auto& tc = config_.train;
    io::MetricsLog log(out / "metrics.jsonl", step_ > 0 ? step_ : -1);
    io::ProgressBar bar("pretrain", tc.steps, step_);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_acc = 0;
    int loss_n = 0;
    while (step_ < tc.steps) {
      const auto [loss, norm] = train_step(data);
      loss_acc += loss;
      ++loss_n;
      char fields[64];
      std::snprintf(fields, sizeof fields, "loss %.4f", loss);
      bar.update(step_, fields);
      if (step_ % tc.log_every == 0 || step_ == tc.steps) {
        log.write({{"step", step_},
                   {"loss", loss_acc / loss_n},
                   {"grad_norm", norm},
                   {"lr", optimizer_.options().lr},
                   {"wall_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});
        loss_acc = 0;
        loss_n = 0;
      }
      if (step_ % tc.checkpoint_every == 0 || step_ == tc.steps) save(out / "checkpoint.safetensors");
      if (step_ % tc.sample_every == 0 || step_ == tc.steps)
        io::write_image_grid(out / ("samples_" + std::to_string(step_) + ".png"), sample_grid(8, config_.seed + 1), 8,
                             2);
    }
  }

 private:
  Model& model_;
  PretrainConfig config_;
  nlohmann::json resolved_;
  diffusion::Ddim<S, P> ddim_;
  optim::AdamW<T> optimizer_;
  optim::Ema<T> ema_;
  Generator gen_;
  std::int64_t step_ = 0;
  std::vector<std::int64_t> order_;
  std::int64_t order_epoch_ = -1;
};

}  // namespace spo::train
