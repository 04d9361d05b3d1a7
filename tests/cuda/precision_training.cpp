// SPDX-License-Identifier: MIT
// SPO under the 16-bit precision policies on spo::cuda, the composition an experiment names with
// FashionDiffusionOn<cuda, precision::bf16 or fp16>: the UNet and its LoRA adapters in 16 bits behind model::Autocast,
// the sampler, log-probs and loss in FP32, the LoRA weights trained as FP32 masters (fp16: dynamic loss scaling).
//   - the 16-bit model's guided output and its input gradient against the FP32 model on the device with the same
//     (rounded) weights: max |a - b| <= tol max |b| with tol = 2^-6 for half and 2^-3 for bfloat16 (a few units of
//     the format's rounding through the UNet's depth; the per-op bounds are the layer tests');
//   - two SPO rounds: finite losses, items trained, the LoRA weights moved; fp16 with a loss scale of 2^10 skips
//     nothing;
//   - a checkpoint after round 1 holds the masters and the scaler: the resumed second round equals the uninterrupted
//     one, bitwise (with the 16-bit weights alone in the checkpoint, the masters would restart from their rounding
//     and the second round's updates would differ);
//   - fp16 on two thread ranks of one GPU: each rank samples its own pairs, the FP32 masters' gradients are averaged
//     before the scaler reads them, and the replicas (16-bit weights and masters) stay identical, which the
//     checkpoint verifies (without the averaging they drift apart and the checkpoint stops the run).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/dist/thread_group.hpp"
#include "spo/experiment/spo_experiment.hpp"

#include "support/train_fixtures.hpp"
#include <unistd.h>

using namespace spo;

namespace {

using test_support::tiny_text;
using test_support::tiny_unet;
using Ddim = diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction>;

/// Prefers bright x0 predictions; scores float images on the device.
struct Brightness {
  using scalar_type = float;
  using device_type = cuda;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<float, cuda>& x0, std::span<const std::int64_t>,
                            std::span<const std::string>) {
    return test_support::brightness(to_host(x0));
  }
};

template <class P>
using Composition = experiment::FashionDiffusionOn<cuda, P>;
template <class P>
using Training = train::SpoTraining<typename Composition<P>::policy_model, typename Composition<P>::base_model, Ddim,
                                    Brightness, preference::BestWorstCompare, resampler::RandomChild, loss::SpoLoss, P>;

const resampler::ResamplerOptions rs{3, 1, 0.0, 2.0, 1.0, 0, 1000};
const train::SpoTrainSection section{2, 3, {0, 1}, 4, 1e-2, 1e-4, 1.0, 1};

Ddim scheduler() {
  auto d = diffusion::make_scheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>(
      diffusion::ScheduleSection{"linear", 1e-4, 0.02, 1000, "epsilon", "leading", 1});
  d.set_timesteps(4);
  return d;
}

/// The composition's base model with the weights of the float CPU model `from` (rounded into its storage).
template <class M, class From>
M base_like(From& from) {
  Generator g{0, 0};
  auto m = model::make_fashion_model<M>(tiny_unet, tiny_text, g);
  io::load_state_dict(m, io::state_dict(from));
  nn::set_trainable(m, false);
  return m;
}

/// The trainable parameters of a policy as doubles, in visiting order.
template <class M>
std::vector<double> trainable_values(M& m) {
  std::vector<double> out;
  m.visit_parameters(
      [&](std::string_view, auto& p) {
        if (!p.trainable) return;
        const auto h = to_host(p.value);
        for (std::int64_t i = 0; i < h.numel(); ++i) out.push_back(static_cast<double>(static_cast<float>(h[i])));
      },
      {});
  return out;
}

double scaled_gap(const Tensor<float, cuda>& a, const Tensor<float, cuda>& b) {
  const auto ha = to_host(a), hb = to_host(b);
  double gap = 0, scale = 0;
  for (std::int64_t i = 0; i < hb.numel(); ++i) {
    gap = std::max(gap, std::abs(static_cast<double>(ha[i]) - static_cast<double>(hb[i])));
    scale = std::max(scale, std::abs(static_cast<double>(hb[i])));
  }
  return gap / std::max(scale, 1e-30);
}

template <class P>
void check_policy(double tol) {
  Generator g{21, 0};
  auto host = model::make_fashion_model<experiment::BaseModelType>(tiny_unet, tiny_text, g);
  auto base16 = base_like<typename Composition<P>::base_model>(host);
  auto base32 = base_like<typename Composition<precision::fp32>::base_model>(base16);  // the rounded weights
  auto pol16 = experiment::make_policy<Composition<P>>(tiny_unet, tiny_text, base16, train::LoraSection{2, 2.0}, 3);
  auto pol32 = experiment::make_policy<Composition<precision::fp32>>(tiny_unet, tiny_text, base32,
                                                                     train::LoraSection{2, 2.0}, 3);
  io::load_state_dict(pol32, io::state_dict(pol16));  // the same (16-bit) LoRA initialisation

  SUBCASE("the 16-bit model's passes against FP32 on the same weights") {
    Generator gx{4, 0};
    const auto x = random_normal<float, cuda>(Shape{2, 1, 8, 8}, gx);  // [2, 1, 8, 8]
    const std::vector<std::string> prompts{"a dress", "a bag"}, empty(2);
    const auto c32 = pol32.encode(prompts), u32 = pol32.encode(empty);  // [2, L, E]
    const auto y16 = pol16.guided(x, 501.0, c32, u32, 3.0), y32 = pol32.guided(x, 501.0, c32, u32, 3.0);
    MESSAGE(P::name << " guided: scaled gap " << scaled_gap(y16, y32));
    CHECK(scaled_gap(y16, y32) <= tol);
    const auto dy = random_normal<float, cuda>(y32.shape(), gx);
    const auto dx16 = pol16.guided_backward(dy), dx32 = pol32.guided_backward(dy);
    MESSAGE(P::name << " guided_backward: scaled gap " << scaled_gap(dx16, dx32));
    CHECK(scaled_gap(dx16, dx32) <= tol);
  }

  SUBCASE("two SPO rounds, and a resumed second round equals the uninterrupted one bitwise") {
    const auto ddim = scheduler();
    Brightness pm;
    const loss::SpoLossOptions lo{10.0, 0.1};
    const auto w0 = trainable_values(pol16);
    Training<P> a(pol16, base16, ddim, pm, rs, lo, section, 8, 7, nlohmann::json::object());
    if constexpr (P::loss_scaling) a.set_loss_scaling({1024.0, 2.0, 0.5, 2000});
    const auto dir = std::filesystem::temp_directory_path() / ("spo_cuda_precision_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    for (int round = 1; round <= 2; ++round) {
      const auto m = a.run_round();
      CHECK(m.metrics.at("items").template get<std::int64_t>() > 0);
      CHECK(std::isfinite(m.metrics.at("loss").template get<double>()));
      if (round == 1) a.save(dir / "checkpoint.safetensors");
    }
    CHECK(a.skipped_steps() == 0);
    CHECK(a.updates() > 0);
    CHECK(trainable_values(pol16) != w0);

    auto pol_r = experiment::make_policy<Composition<P>>(tiny_unet, tiny_text, base16, train::LoraSection{2, 2.0}, 3);
    Training<P> r(pol_r, base16, ddim, pm, rs, lo, section, 8, 7, nlohmann::json::object());
    r.resume(dir / "checkpoint.safetensors");
    CHECK(r.round() == 1);
    CHECK(r.loss_scale() == (P::loss_scaling ? 1024.0 : 1.0));
    r.run_round();
    CHECK(trainable_values(pol_r) == trainable_values(pol16));
    std::filesystem::remove_all(dir);
  }
}

}  // namespace

TEST_CASE("SPO under precision::fp16 on cuda: a half UNet behind FP32 tensors, masters and loss scaling") {
  check_policy<precision::fp16>(0x1p-6);
}

TEST_CASE("SPO under precision::bf16 on cuda: a bfloat16 UNet behind FP32 tensors and FP32 masters") {
  check_policy<precision::bf16>(0x1p-3);
}

TEST_CASE("SPO under precision::fp16 on 2 thread ranks of one GPU: masters averaged, replicas identical") {
  std::vector<std::vector<double>> weights(2);
  std::vector<double> scales(2);
  std::vector<std::int64_t> updates(2);
  const auto dir = std::filesystem::temp_directory_path() / ("spo_cuda_precision_dp_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  dist::run_ranks(2, [&](dist::AnyCommunicator comm) {
    using P = precision::fp16;
    Generator g{21, 0};  // the same base model on every rank, as loaded from one checkpoint
    auto host = model::make_fashion_model<experiment::BaseModelType>(tiny_unet, tiny_text, g);
    auto base16 = base_like<typename Composition<P>::base_model>(host);
    // Adapters initialised from another seed on each rank: rank 0's are broadcast, and the masters taken again.
    auto pol16 = experiment::make_policy<Composition<P>>(tiny_unet, tiny_text, base16, train::LoraSection{2, 2.0},
                                                         3 + static_cast<std::uint64_t>(comm.rank()));
    const auto ddim = scheduler();
    Brightness pm;
    Training<P> t(pol16, base16, ddim, pm, rs, loss::SpoLossOptions{10.0, 0.1}, section, 8, 7,
                  nlohmann::json::object());
    t.set_loss_scaling({1024.0, 2.0, 0.5, 2000});
    t.set_communicator(comm);
    for (int round = 1; round <= 2; ++round) t.run_round();
    t.save(dir / "checkpoint.safetensors");  // verifies the weights and the masters across the ranks
    const auto r = static_cast<std::size_t>(comm.rank());
    weights[r] = trainable_values(pol16);
    scales[r] = t.loss_scale();
    updates[r] = t.updates();
  });
  std::filesystem::remove_all(dir);
  CHECK(weights[0] == weights[1]);
  CHECK(scales[0] == scales[1]);
  CHECK(updates[0] == updates[1]);
  CHECK(updates[0] > 0);
}
