// SPDX-License-Identifier: MIT
// Preference pairs on disk, variant checkpoints, the noised x0 views and the SPM training loop (exact resume).
#include "spo/spm/training.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <doctest/doctest.h>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/preference/pairs.hpp"
#include "spo/spm/variant.hpp"

#include <unistd.h>

using namespace spo;
namespace fs = std::filesystem;
using Model = model::FashionModel<float>;
using Scheduler = diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction>;

namespace {
fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("spo_spm_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

preference::PreferencePairs tiny_pairs(std::int64_t n, std::uint64_t seed, int tmpl) {
  preference::PreferencePairs p;
  p.split = "train";
  Generator g{seed, 0};
  p.images_a = randn<float>(Shape{n, 1, 8, 8}, g);
  p.images_b = randn<float>(Shape{n, 1, 8, 8}, g);
  for (std::int64_t i = 0; i < n; ++i) {
    p.label.push_back(static_cast<int>(i % 10));
    p.template_index.push_back(tmpl);
    p.seed.push_back(seed);
    p.reward_a.push_back(0.1 * static_cast<double>(i));
    p.reward_b.push_back(0.05 * static_cast<double>(i % 3));
    p.labels.push_back(i % 3 == 0 ? preference::label_a : i % 3 == 1 ? preference::label_b : preference::label_tie);
  }
  return p;
}

/// The variants of Table 5 for the 8 x 8 test network.
using TinyClean = spm::Variant<spm::Unconditioned, spm::CleanImage, ImageFormat<1, 8>>;
using TinyStepAware = spm::Variant<spm::StepConditioned, spm::NoisedPrediction, ImageFormat<1, 8>>;
using TinyNoStep = spm::Variant<spm::Unconditioned, spm::NoisedPrediction, ImageFormat<1, 8>>;

spm::PreferenceNetworkConfig tiny_network() {
  spm::PreferenceNetworkConfig c;
  c.image = {8, 1, 4, 16, 1, 2, 8};
  c.text_width = 16;
  c.text_heads = 2;
  c.text_max_length = 6;
  c.init_logit_scale = std::log(1 / 0.07);
  return c;
}

Model tiny_base() {
  Generator g{21, 0};
  model::UNetConfig u{.block_out_channels = {8, 16},
                      .attention = {false, true},
                      .layers_per_block = 1,
                      .attention_heads = 2,
                      .cross_attention_dim = 8,
                      .norm_num_groups = 4};
  return model::make_fashion_model<Model>(u, model::TextSection{6}, g);
}

Scheduler tiny_scheduler() {
  auto d = diffusion::make_scheduler<diffusion::LinearBetas, diffusion::EpsilonPrediction>(
      diffusion::ScheduleSection{"linear", 1e-4, 0.02, 1000, "epsilon", "leading", 1});
  d.set_timesteps(4);
  return d;
}
}  // namespace

TEST_CASE("preference pairs: round trip and clear errors for bad files") {
  const auto dir = scratch("pairs");
  auto p = tiny_pairs(6, 1, 0);
  p.generation = {{"note", "unit test"}};
  preference::save_pairs(dir / "p.safetensors", p);
  const auto q = preference::load_pairs(dir / "p.safetensors");
  CHECK(q.size() == 6);
  CHECK(q.labels == p.labels);
  CHECK(q.reward_a == p.reward_a);
  CHECK(q.prompt(3) == text::fashion_prompt(3, 0));
  CHECK(q.generation["note"] == "unit test");
  CHECK(max_abs_diff<float>(q.images_a.view(), p.images_a.view()) < 2e-3);  // F16 storage

  // Mismatched pair counts: one image fewer in b.
  io::NamedTensors t = io::load_safetensors(dir / "p.safetensors");
  auto b = t.get<float>("images_b");
  Tensor<float> b5(Shape{5, 1, 8, 8});
  std::copy_n(b.data(), b5.numel(), b5.data());
  t.set<float>("images_b", b5);
  io::save_safetensors(dir / "bad_count.safetensors", t);
  CHECK_THROWS_WITH_AS(preference::load_pairs(dir / "bad_count.safetensors"), doctest::Contains("images_b"),
                       spo::error);
  // A label outside [0, 1].
  t = io::load_safetensors(dir / "p.safetensors");
  auto labels = t.get<double>("labels");
  labels[0] = 1.5;
  labels[1] = -0.5;
  t.set<double>("labels", labels);
  io::save_safetensors(dir / "bad_label.safetensors", t);
  CHECK_THROWS_WITH_AS(preference::load_pairs(dir / "bad_label.safetensors"), doctest::Contains("outside [0, 1]"),
                       spo::error);
  // A file of another kind.
  t.metadata.erase("format");
  io::save_safetensors(dir / "not_pairs.safetensors", t);
  CHECK_THROWS_WITH_AS(preference::load_pairs(dir / "not_pairs.safetensors"),
                       doctest::Contains("not a preference pair file"), spo::error);
  fs::remove_all(dir);
}

TEST_CASE("preference accuracy counts non-tie pairs, equal scores as half") {
  std::vector<preference::PreferenceLabel> y{preference::label_a, preference::label_b, preference::label_tie,
                                             preference::label_a};
  std::vector<double> sa{1, 1, 5, 2}, sb{0, 0, 0, 2};
  CHECK(preference::preference_accuracy(y, sa, sb) == doctest::Approx((1 + 0 + 0.5) / 3.0));
}

TEST_CASE("variant checkpoints: a checkpoint of one variant loaded as another is an error; init from clean") {
  const auto dir = scratch("variant");
  Generator g{4, 0};
  auto clean = spm::make_preference_network<TinyClean::network<double>>(tiny_network(), g);
  spm::save_preference_model<TinyClean>(dir / "clean.safetensors", clean);
  CHECK_NOTHROW(spm::load_preference_model<TinyClean, double>(dir / "clean.safetensors"));
  CHECK_THROWS_WITH_AS((spm::load_preference_model<TinyStepAware, double>(dir / "clean.safetensors")),
                       doctest::Contains("\"clean\", but this program expects \"step_aware\""), spo::error);
  CHECK_THROWS_WITH_AS((spm::load_preference_model<TinyNoStep, double>(dir / "clean.safetensors")),
                       doctest::Contains("expects \"no_step_condition\""), spo::error);
  // The variant's image format is checked at load: the Fashion-MNIST policy (1 x 32 x 32) refuses an 8 x 8 network.
  CHECK_THROWS_WITH_AS((spm::load_preference_model<spm::CleanPM, double>(dir / "clean.safetensors")),
                       doctest::Contains("scores images of 1 x 8 x 8, but this program's preference policy is built "
                                         "for 1 x 32 x 32"),
                       spo::error);
  io::save_state_dict(dir / "plain.safetensors", clean);
  CHECK_THROWS_WITH_AS((spm::load_preference_model<TinyClean, double>(dir / "plain.safetensors")),
                       doctest::Contains("not a preference-model checkpoint"), spo::error);

  // The SPM initialised from the clean model scores exactly like it at every t (adaLN-Zero identity).
  Generator g2{5, 0};
  auto spm_net = spm::make_preference_network<spm::StepAwarePM::network<double>>(tiny_network(), g2);
  spm::init_from_preference_model(spm_net, dir / "clean.safetensors");
  spm::NetworkPreference<spm::CleanPM, double> pm_clean(clean);
  spm::NetworkPreference<spm::StepAwarePM, double> pm_step(spm_net);
  Generator gx{6, 0};
  const auto x = randn<double>(Shape{3, 1, 8, 8}, gx);
  const std::vector<std::string> prompts{text::fashion_prompt(0, 0), text::fashion_prompt(5, 1), ""};
  for (std::int64_t t : {0, 251, 951}) {
    const std::vector<std::int64_t> ts(3, t);
    const auto a = pm_clean.score(x, ts, prompts), b = pm_step.score(x, ts, prompts);
    for (int i = 0; i < 3; ++i)
      CHECK(b[static_cast<std::size_t>(i)] == doctest::Approx(a[static_cast<std::size_t>(i)]).epsilon(1e-12));
  }
  // A network of another size is refused as an init.
  auto other = tiny_network();
  other.image.width = 8;
  Generator g3{7, 0};
  auto wrong = spm::make_preference_network<spm::StepAwarePM::network<double>>(other, g3);
  CHECK_THROWS_AS(spm::init_from_preference_model(wrong, dir / "clean.safetensors"), spo::error);
  fs::remove_all(dir);
}

TEST_CASE("noised x0 predictions: shared noise, exact DDIM inversion of the guided output") {
  auto base = tiny_base();
  const auto ddim = tiny_scheduler();
  Generator g{8, 0};
  const auto a = randn<float>(Shape{2, 1, 8, 8}, g);
  const auto noise = randn<float>(Shape{2, 1, 8, 8}, g);
  const std::vector<std::int64_t> t{501, 20};
  const std::vector<std::string> prompts{text::fashion_prompt(1, 0), text::fashion_prompt(2, 0)};
  const auto r = spm::predict_pair_x0(base, ddim, a, a, noise, t, prompts, 3.0);
  // Same image, same noise, same t -> the same prediction, up to float rounding: the two rows sit at different
  // positions of one batch, where oneDNN's AVX2 kernels take different blocking paths (bitwise equal on AVX-512
  // and with ONEDNN_MAX_CPU_ISA=SSE41; 2.4e-7 apart on an AVX2-only CPU).
  double scale = 0;
  for (std::int64_t i = 0; i < r.x0_a.numel(); ++i) scale = std::max(scale, std::abs(double(r.x0_a[i])));
  CHECK(max_abs_diff<float>(r.x0_a.view(), r.x0_b.view()) <= 1e-6 * (1.0 + scale));
  // By hand for row 0: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps; x0_pred = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab).
  nn::no_grad_guard ng;
  const auto x_t = ddim.noise_schedule().add_noise(a, noise, t);
  Tensor<float> tt(Shape{2}, {501.0f, 20.0f});
  const auto u = base.guided(x_t, tt, base.encode(prompts), base.encode(std::vector<std::string>(2)), 3.0);
  for (std::int64_t b = 0; b < 2; ++b) {
    const double ab = ddim.noise_schedule().alpha_cumprod(t[static_cast<std::size_t>(b)]);
    for (std::int64_t i = b * 64; i < (b + 1) * 64; i += 13)
      CHECK(r.x0_a[i] == doctest::Approx((x_t[i] - std::sqrt(1 - ab) * u[i]) / std::sqrt(ab)).epsilon(1e-4));
  }
}

TEST_CASE("SPM training: finite loss, and 2 + 2 steps resumed == 4 steps bitwise") {
  const auto dir = scratch("train");
  preference::save_pairs(dir / "train.safetensors", tiny_pairs(12, 2, 0));
  auto val = tiny_pairs(6, 3, 3);
  val.split = "validation";
  preference::save_pairs(dir / "val.safetensors", val);
  spm::SpmConfig c;
  c.seed = 9;
  c.output_dir = (dir / "out").string();
  c.pairs = {(dir / "train.safetensors").string(), (dir / "val.safetensors").string()};
  c.network = tiny_network();
  c.eval_timesteps = {0, 501};
  c.train = {4, 4, 1e-3, 1, 0.01, 1.0, 1, 2, 2};
  auto base = tiny_base();
  const auto ddim = tiny_scheduler();
  using Run = spm::SpmTraining<spm::StepAwarePM, Model, Scheduler>;
  auto make_net = [&] {
    Generator g{10, 0};
    return spm::make_preference_network<spm::StepAwarePM::network<float>>(c.network, g);
  };
  auto net_a = make_net();
  Run ra(net_a, base, ddim, c, 3.0, io::to_json(c));
  for (int i = 0; i < 4; ++i) {
    const auto [loss, acc, norm] = ra.train_step();
    CHECK(std::isfinite(loss));
    CHECK(norm > 0);
  }
  const auto acc = ra.evaluate();
  REQUIRE(acc.size() == 2);
  CHECK(acc[0].label_accuracy >= 0.0);
  CHECK(acc[0].label_accuracy <= 1.0);

  auto net_b = make_net();
  {
    Run rb(net_b, base, ddim, c, 3.0, io::to_json(c));
    rb.train_step();
    rb.train_step();
    rb.save(dir / "ckpt.safetensors");
  }
  auto net_c = make_net();
  Run rc(net_c, base, ddim, c, 3.0, io::to_json(c));
  rc.resume(dir / "ckpt.safetensors");
  CHECK(rc.step() == 2);
  rc.train_step();
  rc.train_step();
  std::vector<float> wa, wc;
  net_a.visit_parameters(
      [&](std::string_view, nn::Parameter<float>& p) {
        wa.insert(wa.end(), p.value.data(), p.value.data() + p.value.numel());
      },
      {});
  net_c.visit_parameters(
      [&](std::string_view, nn::Parameter<float>& p) {
        wc.insert(wc.end(), p.value.data(), p.value.data() + p.value.numel());
      },
      {});
  CHECK(wa == wc);
  fs::remove_all(dir);
}
