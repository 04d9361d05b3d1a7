// SPDX-License-Identifier: MIT
/// @brief The data-parallel scenarios every transport must pass (threads in the unit tests, MPI under mpirun): one
/// SPO round and one Diffusion-DPO round on W ranks against one process over the union of the ranks' data, and a
/// resume under W ranks. Each scenario runs on one rank and returns what the caller asserts (so that threads never
/// assert concurrently); every rank computes the single-process reference itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/dist/any_communicator.hpp"
#include "spo/dist/exchange.hpp"
#include "spo/dist/replica_check.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/nn/lora.hpp"
#include "spo/preference/compare.hpp"
#include "spo/resampler/continuation.hpp"
#include "spo/text/prompts.hpp"
#include "spo/train/diffusion_dpo_training.hpp"
#include "spo/train/spo_training.hpp"

#include "support/tiny_model.hpp"

namespace spo::test_support::data_parallel {

using Base = model::FashionModel<double, cpu>;
using Policy = model::FashionModel<double, cpu, nn::LoRA<nn::Linear<double, cpu>>>;
using Ddim = diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction>;

inline constexpr std::uint64_t seed = 7;
inline constexpr std::int64_t batch = 3;  // per rank

/// Prefers bright x0 predictions (10 x the mean), whatever the timestep.
struct BrightnessPM {
  using scalar_type = double;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<double>& x0, std::span<const std::int64_t>, std::span<const std::string>) {
    std::vector<double> s;
    const std::int64_t per = x0.numel() / x0.size(0);
    for (std::int64_t i = 0; i < x0.size(0); ++i) {
      double m = 0;
      for (std::int64_t j = 0; j < per; ++j) m += x0[i * per + j];
      s.push_back(10.0 * m / static_cast<double>(per));
    }
    return s;
  }
};

using SpoTrainer =
    train::SpoTraining<Policy, Base, Ddim, BrightnessPM, preference::BestWorstCompare, resampler::RandomChild>;
using DpoTrainer = train::DiffusionDpoTraining<Policy, Base, Ddim>;

/// What one rank (or the reference process) holds: the tiny base model in double, a LoRA policy on it with
/// adapters off their zero init, DDIM with 4 steps.
struct Replica {
  Base base;
  Policy policy;
  Ddim ddim;
  BrightnessPM pm;

  Replica() : base(make_base()), policy(make_policy(base)), ddim(make_ddim()) {}

  static Base make_base() {
    Generator g{21, 0};
    return model::make_fashion_model<Base>(tiny_unet, tiny_text, g);
  }
  static Policy make_policy(Base& base) {
    Generator init{0, 0};
    auto p = model::make_fashion_model<Policy>(tiny_unet, tiny_text, init);
    std::map<std::string, const Tensor<double>*, std::less<>> weights;
    base.visit_parameters([&](std::string_view name, auto& q) { weights.emplace(std::string(name), &q.value); });
    p.visit_parameters([&](std::string_view name, auto& q) { q.value = *weights.at(std::string(name)); });
    nn::set_trainable(p, false);
    Generator lg{5, 0};
    p.unet().attach_lora(2, 2.0, lg);
    Generator gb{6, 0};
    p.visit_parameters([&](std::string_view name, auto& q) {
      if (std::string(name).find("lora_B") != std::string::npos) fill_uniform(q.value.view(), gb, -0.05, 0.05);
    });
    return p;
  }
  static Ddim make_ddim() {
    auto d = diffusion::make_scheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>(
        diffusion::ScheduleSection{"linear", 1e-4, 0.02, 1000, "epsilon", "leading", 1});
    d.set_timesteps(4);
    return d;
  }

  SpoTrainer spo(std::uint64_t s, std::int64_t batch_size = batch) {
    const resampler::ResamplerOptions rs{3, 1, 0.0, 2.0, 1.0, 0, 1000};
    const train::SpoTrainSection tr{3, 3, {0, 1}, batch_size, 1e-2, 1e-4, 1.0, 1};
    return SpoTrainer(policy, base, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, tr, 8, s, nlohmann::json::object());
  }
  DpoTrainer dpo(std::uint64_t s, std::int64_t batch_size = batch) {
    const train::DiffusionDpoTrainSection tr{3, 2, batch_size, 1e-2, 1e-4, 1.0, 1};
    return DpoTrainer(policy, base, ddim, pairs(), loss::DiffusionDpoOptions{5000.0}, tr, s, nlohmann::json::object());
  }

  /// 10 random win/lose pairs of 8x8 images with class-name prompts.
  static train::WinLosePairs<double> pairs() {
    Generator g{99, 0};
    train::WinLosePairs<double> p{randn<double>(Shape{10, 1, 8, 8}, g), randn<double>(Shape{10, 1, 8, 8}, g), {}, 0};
    for (int i = 0; i < 10; ++i) p.prompts.push_back(text::fashion_prompt(i % 10, 0));
    return p;
  }

  std::vector<double> lora() {
    std::vector<double> w;
    policy.visit_parameters([&](std::string_view name, auto& q) {
      if (name.find("lora_") != std::string_view::npos)
        w.insert(w.end(), q.value.data(), q.value.data() + q.value.numel());
    });
    return w;
  }
};

/// What one rank reports: its LoRA weights after the run, the single-process reference's, its parameter hash, and
/// the run's reduced record.
struct Outcome {
  std::vector<double> weights, reference;
  std::uint64_t hash = 0;
  nlohmann::json metrics;
  std::int64_t union_items = 0;  ///< SPO: the valid pairs of all ranks together
};

/// max |a - b| / max |b|.
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return worst / std::max(scale, 1e-300);
}

template <class T>
void append_rows(Tensor<T>& acc, const Tensor<T>& x) {
  if (x.numel() == 0) return;
  if (acc.numel() == 0) {
    acc = x;
    return;
  }
  Shape s = acc.shape();
  s[0] += x.size(0);
  auto out = Tensor<T>::uninitialized(s);
  std::copy_n(acc.data(), acc.numel(), out.data());
  std::copy_n(x.data(), x.numel(), out.data() + acc.numel());
  acc = std::move(out);
}

/// One round of the trainer `make` builds, on this rank of comm: the rank's weights, hash and reduced record.
template <class Make>
Outcome one_round(dist::AnyCommunicator comm, Make make) {
  Outcome out;
  Replica rank;
  auto t = (rank.*make)(seed, batch);
  t.set_communicator(comm);
  auto rec = t.run_round();
  train::reduce_record(comm, rec);
  out.metrics = rec.metrics;
  out.weights = rank.lora();
  out.hash = dist::parameter_hash(rank.policy);
  return out;
}

/// One SPO round on this rank of comm; the reference: one process samples every rank's prompts with that rank's
/// generator, concatenates the pairs in rank order, takes rank 0's permutation and trains minibatches made of the
/// ranks' k-th minibatches (W x batch items) on the union.
inline Outcome spo_round(dist::AnyCommunicator comm) {
  Outcome out = one_round(comm, &Replica::spo);

  const int w = comm.size();
  Replica ref;
  auto r0 = ref.spo(seed);
  resampler::StepPairs<double> all;
  for (int r = 0; r < w; ++r) {
    auto sampler = ref.spo(train::rank_seed(seed, r));
    auto pairs = (r == 0 ? r0 : sampler).sample_round().pairs;
    append_rows(all.x_t, pairs.x_t);
    append_rows(all.x_win, pairs.x_win);
    append_rows(all.x_lose, pairs.x_lose);
    all.t.insert(all.t.end(), pairs.t.begin(), pairs.t.end());
    all.prompts.insert(all.prompts.end(), pairs.prompts.begin(), pairs.prompts.end());
    all.gap.insert(all.gap.end(), pairs.gap.begin(), pairs.gap.end());
  }
  out.union_items = all.size();
  const auto perm = train::random_permutation(r0.generator(), all.size());
  const std::int64_t share = all.size() / w;
  for (std::int64_t k = 0; k < share; k += batch) {
    std::vector<std::int64_t> idx;
    for (int r = 0; r < w; ++r)
      for (std::int64_t i = k; i < std::min(k + batch, share); ++i)
        idx.push_back(perm[static_cast<std::size_t>(r * share + i)]);
    double norm = 0;
    r0.train_minibatch(all, idx, norm);
  }
  out.reference = ref.lora();
  return out;
}

/// One Diffusion-DPO round (2 steps) on this rank of comm; the reference: one process with batch W x batch, whose
/// minibatch s holds rank r's pairs at slots r batch .. (r + 1) batch - 1 with the (t, eps) rank r drew.
inline Outcome dpo_round(dist::AnyCommunicator comm) {
  Outcome out = one_round(comm, &Replica::dpo);

  const int w = comm.size();
  Replica ref;
  auto whole = ref.dpo(seed, w * batch);
  std::vector<DpoTrainer> ranks;
  for (int r = 0; r < w; ++r) ranks.push_back(ref.dpo(train::rank_seed(seed, r)));
  for (std::int64_t s = 0; s < 2; ++s) {
    typename DpoTrainer::NoiseDraw all;
    for (auto& g : ranks) {
      auto d = g.draw_noise(batch);
      all.t.insert(all.t.end(), d.t.begin(), d.t.end());
      append_rows(all.noise, d.noise);
    }
    double norm = 0;
    whole.train_minibatch(whole.batch_indices(s), all, norm);
  }
  out.reference = ref.lora();
  return out;
}

/// Two SPO rounds straight, and one round + checkpoint + resume (into a fresh replica) + one round, under comm:
/// {weights straight, weights resumed}. `dir` is the same on every rank.
inline std::pair<std::vector<double>, std::vector<double>> spo_resume(dist::AnyCommunicator comm,
                                                                      const std::filesystem::path& dir) {
  Replica a;
  auto ta = a.spo(seed);
  ta.set_communicator(comm);
  ta.run_round();
  ta.run_round();
  {
    Replica b;
    auto tb = b.spo(seed);
    tb.set_communicator(comm);
    tb.run_round();
    tb.save(dir / "checkpoint.safetensors");
  }
  Replica c;
  auto tc = c.spo(seed);
  tc.set_communicator(comm);
  tc.resume(dir / "checkpoint.safetensors");
  tc.run_round();
  return {a.lora(), c.lora()};
}

}  // namespace spo::test_support::data_parallel
