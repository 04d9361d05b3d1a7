// SPDX-License-Identifier: MIT
// SPO's two hot loops at the embedded defaults (configs/pretrain_base.json, configs/spo.json, configs/spm.json), with
// random weights: one branching level of the step-wise resampler (B = 10 prompts, k = 4 children), one SPO training
// minibatch of 10 items (SpoTraining::train_minibatch), and a whole resampler round (StepwiseResampler::sample) as a
// cross-check of the level. The PyTorch peer is bench/torch_spo_peer.py; bench/run_spo.sh runs both.
#include <benchmark/benchmark.h>

#include "spo/experiment/spo_experiment.hpp"
#include "spo/model/fashion_default.hpp"

using namespace spo;

namespace {
using Base = experiment::BaseModelType;
using Policy = experiment::PolicyModelType;
using Scheduler = diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction>;
using Pm = spm::NetworkPreference<spm::StepAwarePM, float>;
using Compare = preference::BestWorstCompare;
using Continuation = resampler::RandomChild;
using Training = train::SpoTraining<Policy, Base, Scheduler, Pm, Compare, Continuation>;

constexpr std::int64_t prompts_per_round = 10, resolution = 32, channels = 1;

/// configs/pretrain_base.json "unet" and "text".
model::UNetConfig unet_section() {
  model::UNetConfig u;
  u.block_out_channels = {32, 64, 128};
  u.attention = {false, true, true};
  u.layers_per_block = 1;
  u.attention_heads = 4;
  u.cross_attention_dim = 64;
  u.norm_num_groups = 16;
  u.use_linear_projection = false;
  return u;
}
model::TextSection text_section() { return model::TextSection{8}; }

/// configs/pretrain_base.json "schedule" and "sampling.num_inference_steps": t_i = 951 - 50 i.
Scheduler make_ddim() {
  Scheduler ddim(diffusion::LinearBetas{1e-4, 0.02},
                 diffusion::DdimConfig{1000, diffusion::TimestepSpacing::leading, 1});
  ddim.set_timesteps(20);
  return ddim;
}

/// configs/spo.json "resampler", "loss", "train", "lora".
resampler::ResamplerOptions resampler_options() { return {4, 4, 0.3, 3.0, 1.0, 0, 1000}; }
loss::SpoLossOptions loss_options() { return {10.0, 0.1}; }
train::SpoTrainSection train_section() { return {20, prompts_per_round, {0, 1, 2, 3}, 10, 1e-3, 1e-4, 1.0, 1}; }
const train::LoraSection lora{4, 4.0};

/// configs/spm.json "network": the default step-aware SPM (ViT 32/4, width 64, depth 4, 4 heads; text width 64).
spm::PreferenceNetworkConfig spm_config() {
  spm::PreferenceNetworkConfig c;
  c.image = {32, 1, 4, 64, 4, 4, 64};
  c.text_width = 64;
  c.text_heads = 4;
  c.text_max_length = 8;
  c.init_logit_scale = 2.659260036932778;
  return c;
}

/// The pieces of an SPO experiment (experiment::run_spo_experiment) with random weights: the base (reference), the
/// policy as a copy of it with rank-4 LoRA adapters (experiment::make_policy), the scheduler, the
/// step-aware preference model, and one prompt of each class.
struct Setup {
  Base base;
  Policy policy;
  Scheduler ddim = make_ddim();
  Pm pm;
  std::vector<std::string> prompts;

  Setup()
      : base(make_base()),
        policy(experiment::make_policy(unet_section(), text_section(), base, lora, 42)),
        pm(make_pm()) {
    for (int c = 0; c < prompts_per_round; ++c) prompts.push_back(text::fashion_prompt(c, 0));
  }

  static Base make_base() {
    Generator init{0, 0};
    return model::make_fashion_model<Base>(unet_section(), text_section(), init);
  }
  static Pm make_pm() {
    Generator init{2, 0};
    auto net = spm::make_preference_network<spm::StepAwarePM::network<float>>(spm_config(), init);
    nn::set_trainable(net, false);
    return Pm(std::move(net));
  }
};

/*!
  One level i > d of StepwiseResampler::sample (the body of its loop for a level that is not the last), composed
  of the same library calls in the same order: the policy's guided pass on the k B children at t_level (2 k B UNet
  rows), x0/eps, the preference model's scores of the x0 predictions at t_level, compare + continuation per
  prompt, then mean + k fresh children of each continued child. Left out: the copies that record a valid pair
  (three rows of C R R floats per valid prompt).
!*/
Tensor<float> resampler_level(Policy& policy, const Scheduler& ddim, Pm& pm, const resampler::ResamplerOptions& o,
                              const Tensor<float>& children, std::int64_t t_level, const Tensor<float>& cond_k,
                              const Tensor<float>& uncond_k, std::span<const std::string> prompts_k, Generator& gen,
                              std::int64_t& valid) {
  nn::no_grad_guard no_grad;
  const std::int64_t k = o.k, b = children.size(0) / k, per = children.numel() / children.size(0);
  const std::vector<std::int64_t> t_kb(static_cast<std::size_t>(k * b), t_level);
  auto u = policy.guided(children, static_cast<double>(t_level), cond_k, uncond_k, o.guidance_scale);  // [k B, C, R, R]
  auto pred = ddim.predict(u, children, t_kb);             // x0, eps: [k B, C, R, R]
  const auto scores = pm.score(pred.x0, t_kb, prompts_k);  // k B, sample-major
  diffusion::DdimPrediction<float> next{Tensor<float>::uninitialized(Shape{b, channels, resolution, resolution}),
                                        Tensor<float>::uninitialized(Shape{b, channels, resolution, resolution})};
  std::vector<double> s(static_cast<std::size_t>(k));
  for (std::int64_t j = 0; j < b; ++j) {
    for (std::int64_t c = 0; c < k; ++c) s[static_cast<std::size_t>(c)] = scores[static_cast<std::size_t>(c * b + j)];
    const auto cmp = Compare{}.compare(s, o.threshold, gen);
    valid += cmp.valid;
    const std::int64_t c = Continuation{}.choose(s, cmp, gen);
    std::copy_n(pred.x0.data() + (c * b + j) * per, per, next.x0.data() + j * per);
    std::copy_n(pred.eps.data() + (c * b + j) * per, per, next.eps.data() + j * per);
  }
  const std::vector<std::int64_t> t_b(static_cast<std::size_t>(b), t_level);
  const auto tr = ddim.transitions(t_b, o.eta);
  auto out = ddim.sample_children(ddim.mean(next, tr), tr, static_cast<int>(k), gen);  // [k, B, C, R, R]
  out.reshape(Shape{k * b, channels, resolution, resolution});                         // [k B, C, R, R]
  return out;
}

/// Rows [B, ...] repeated k times, sample-major (as StepwiseResampler::sample does for the prompt features).
Tensor<float> repeat_rows(const Tensor<float>& x, std::int64_t k) {
  Shape s = x.shape();
  s[0] *= k;
  auto out = Tensor<float>::uninitialized(s);  // [k B, ...]
  for (std::int64_t c = 0; c < k; ++c) std::copy_n(x.data(), x.numel(), out.data() + c * x.numel());
  return out;
}

void BM_Spo_ResamplerStep(benchmark::State& state) {
  Setup s;
  const auto o = resampler_options();
  const std::int64_t k = o.k, b = prompts_per_round;
  Generator gen{7, 0};
  Tensor<float> cond_k, uncond_k;
  {
    nn::no_grad_guard no_grad;
    const std::vector<std::string> empty(static_cast<std::size_t>(b));
    cond_k = repeat_rows(s.policy.encode(s.prompts), k);  // [k B, L, D]
    uncond_k = repeat_rows(s.policy.encode(empty), k);    // [k B, L, D]
  }
  std::vector<std::string> prompts_k;
  for (std::int64_t c = 0; c < k; ++c) prompts_k.insert(prompts_k.end(), s.prompts.begin(), s.prompts.end());
  // The first level after the branching: children at t_{d+1} = 701 (parent at t_d = 751).
  const std::int64_t t_level = s.ddim.timesteps()[static_cast<std::size_t>(o.divert_start_step + 1)];
  const auto children = randn<float>(Shape{k * b, channels, resolution, resolution}, gen);  // [k B, C, R, R]
  std::int64_t valid = 0;
  auto level = [&] {
    return resampler_level(s.policy, s.ddim, s.pm, o, children, t_level, cond_k, uncond_k, prompts_k, gen, valid);
  };
  level();  // warm-up: oneDNN primitives and allocator pools
  valid = 0;
  for (auto _ : state) benchmark::DoNotOptimize(level().data());
  state.SetItemsProcessed(state.iterations() * k * b);
  state.counters["valid_per_level"] = static_cast<double>(valid) / static_cast<double>(state.iterations());
}

void BM_Spo_Minibatch(benchmark::State& state) {
  Setup s;
  const auto o = resampler_options();
  const std::int64_t m = train_section().batch_size;
  Training training(s.policy, s.base, s.ddim, s.pm, o, loss_options(), train_section(), resolution, 42,
                    nlohmann::json{});
  // m items as the resampler records them: parents x_t at t_4 .. t_13 (751 .. 301), winner and loser two children of
  // the reference's guided mean (so the policy / reference ratios start at 1, as in a first round).
  Generator gen{11, 0};
  resampler::StepPairs<float> items;
  items.x_t = randn<float>(Shape{m, channels, resolution, resolution}, gen);  // [m, C, R, R]
  for (std::int64_t i = 0; i < m; ++i) {
    items.t.push_back(s.ddim.timesteps()[static_cast<std::size_t>(o.divert_start_step + i)]);
    items.prompts.push_back(s.prompts[static_cast<std::size_t>(i % prompts_per_round)]);
    items.gap.push_back(0.5);
  }
  {
    nn::no_grad_guard no_grad;
    const std::vector<std::string> empty(static_cast<std::size_t>(m));
    Tensor<float> tt(Shape{m});  // [m]
    for (std::int64_t i = 0; i < m; ++i) tt[i] = static_cast<float>(items.t[static_cast<std::size_t>(i)]);
    const auto u = s.base.guided(items.x_t, tt, s.base.encode(items.prompts), s.base.encode(empty), o.guidance_scale);
    const auto tr = s.ddim.transitions(items.t, o.eta);
    const auto mu = s.ddim.mean(s.ddim.predict(u, items.x_t, items.t), tr);  // [m, C, R, R]
    const auto pair = s.ddim.sample_children(mu, tr, 2, gen);                // [2, m, C, R, R]
    items.x_win = Tensor<float>::uninitialized(items.x_t.shape());           // [m, C, R, R]
    items.x_lose = Tensor<float>::uninitialized(items.x_t.shape());          // [m, C, R, R]
    std::copy_n(pair.data(), items.x_t.numel(), items.x_win.data());
    std::copy_n(pair.data() + items.x_t.numel(), items.x_t.numel(), items.x_lose.data());
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(m));
  std::iota(order.begin(), order.end(), 0);
  double grad_norm = 0, loss = 0;
  training.train_minibatch(items, order, grad_norm);  // warm-up: primitives, allocator pools, AdamW state
  for (auto _ : state) loss = training.train_minibatch(items, order, grad_norm).loss;
  state.SetItemsProcessed(state.iterations() * m);
  state.counters["loss"] = loss;
  state.counters["grad_norm"] = grad_norm;
  state.counters["lora_parameters"] = static_cast<double>(nn::parameter_count(s.policy, true));
}

void BM_Spo_ResamplerRound(benchmark::State& state) {
  Setup s;
  const resampler::StepwiseResampler<Pm, Compare, Continuation> sampler(resampler_options());
  Generator gen{13, 0};
  std::int64_t items = 0;
  for (auto _ : state) {
    auto r = sampler.sample(s.policy, s.ddim, s.pm, s.prompts, resolution, channels, gen);
    items += r.pairs.size();
    benchmark::DoNotOptimize(r.final_images.data());
  }
  state.counters["pairs_per_round"] = static_cast<double>(items) / static_cast<double>(state.iterations());
}
}  // namespace

// Iterations are timed on the wall clock; "cpu_time" is the whole process's CPU time (the measure bench/run_spo.sh
// --cpu-time compares, with one thread, when other jobs share the machine).
BENCHMARK(BM_Spo_ResamplerStep)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_Spo_Minibatch)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
// One round is seconds long: a single iteration per repetition (no warm-up outside it).
BENCHMARK(BM_Spo_ResamplerRound)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->Iterations(1);
