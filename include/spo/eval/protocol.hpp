// SPDX-License-Identifier: MIT
/// @brief The evaluation protocol: held-out prompts x fixed seeds, the rater's reward, the held-out judge's class
/// accuracy, a Frechet distance to real test images and the win rate against the base model.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/rng.hpp"
#include "spo/data/fashion_mnist.hpp"
#include "spo/eval/frechet.hpp"
#include "spo/eval/statistics.hpp"
#include "spo/io/model_files.hpp"
#include "spo/judge/training.hpp"
#include "spo/model/text_conditioned.hpp"
#include "spo/preference/rater.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::eval {

/// Every key is required. Prompts: every class x `templates` (by default the held-out ones); seeds_per_prompt fixed
/// initial noises per prompt (Generator{seed + prompt index}); the Frechet distance uses the first real_images
/// test images. progress_seeds_per_prompt and progress_every_rounds size the cheaper evaluation run during
/// training (for metric-vs-time curves; 0 rounds: none).
struct EvalSection {
  BOOST_HANA_DEFINE_STRUCT(EvalSection, (std::vector<int>, templates), (std::int64_t, seeds_per_prompt),
                           (std::uint64_t, seed), (io::ModelFiles, held_out_judge), (std::int64_t, real_images),
                           (std::int64_t, progress_seeds_per_prompt), (std::int64_t, progress_every_rounds));
};

inline void validate(const EvalSection& e) {
  SPO_CONFIG_CHECK(!e.templates.empty(), "evaluation.templates", "must name at least one template, got []");
  for (std::size_t i = 0; i < e.templates.size(); ++i)
    SPO_CONFIG_CHECK(e.templates[i] >= 0 && e.templates[i] < static_cast<int>(text::fashion_templates.size()),
                     "evaluation.templates[" + std::to_string(i) + "]",
                     "no template " << e.templates[i] << " (there are " << text::fashion_templates.size() << ")");
  SPO_CONFIG_CHECK(e.seeds_per_prompt >= 2, "evaluation.seeds_per_prompt", "must be >= 2, got " << e.seeds_per_prompt);
  SPO_CONFIG_CHECK(e.real_images >= 2, "evaluation.real_images", "must be >= 2, got " << e.real_images);
  SPO_CONFIG_CHECK(e.progress_seeds_per_prompt >= 1, "evaluation.progress_seeds_per_prompt",
                   "must be >= 1, got " << e.progress_seeds_per_prompt);
  SPO_CONFIG_CHECK(e.progress_every_rounds >= 0, "evaluation.progress_every_rounds",
                   "must be >= 0 (0: no progress evaluations), got " << e.progress_every_rounds);
}

/// The evaluation prompts, each repeated `seeds` times (prompt-major).
inline std::vector<std::string> eval_prompts(const EvalSection& e, std::int64_t seeds) {
  std::vector<std::string> p;
  for (int t : e.templates)
    for (int c = 0; c < 10; ++c)
      for (std::int64_t s = 0; s < seeds; ++s) p.push_back(text::fashion_prompt(c, static_cast<std::size_t>(t)));
  return p;
}

/// Samples of `model` for eval_prompts(e, seeds): DDIM with the given guidance and eta; prompt i's initial noise
/// and step noise come from Generator{e.seed + i}, so two models see the same seeds (paired comparisons).
template <class Model, class Scheduler>
Tensor<typename Model::scalar_type, cpu> generate(Model& model, const Scheduler& ddim, const EvalSection& e,
                                                  std::int64_t seeds, double guidance, double eta,
                                                  std::int64_t resolution) {
  using T = typename Model::scalar_type;
  const auto prompts = eval_prompts(e, seeds);
  const auto n_prompts = static_cast<std::int64_t>(prompts.size()) / seeds;
  const std::int64_t per = resolution * resolution;
  auto out = Tensor<T, cpu>::uninitialized(Shape{n_prompts * seeds, 1, resolution, resolution});  // [P S, 1, R, R]
  for (std::int64_t p = 0; p < n_prompts; ++p) {
    Generator gen{e.seed + static_cast<std::uint64_t>(p), 0};
    using D = typename Model::device_type;
    auto x = random_normal<T, D>(Shape{seeds, 1, resolution, resolution}, gen);  // [S, 1, R, R]
    const std::span<const std::string> ps(prompts.data() + p * seeds, static_cast<std::size_t>(seeds));
    const auto img = transfer<cpu>(model::sample_ddim(model, ddim, std::move(x), ps, guidance, eta, gen));
    std::copy_n(img.data(), seeds * per, out.data() + p * seeds * per);
  }
  return out;
}

/// The held-out judge's penultimate ("pool") features [N, F] of images (clamped to [-1, 1], as displayed).
template <Scalar T>
Tensor<double, cpu> judge_pool_features(judge::Classifier<T>& judge, const Tensor<T, cpu>& images,
                                        std::int64_t batch = 256) {
  const std::int64_t n = images.size(0), per = images.numel() / std::max<std::int64_t>(n, 1);
  Tensor<double, cpu> out;
  std::int64_t f = 0;
  for (std::int64_t i = 0; i < n; i += batch) {
    const std::int64_t m = std::min(batch, n - i);
    Shape s = images.shape();
    s[0] = m;
    auto x = Tensor<T, cpu>::uninitialized(s);  // [m, 1, R, R]
    for (std::int64_t j = 0; j < m * per; ++j) x[j] = std::clamp(images[i * per + j], T(-1), T(1));
    const auto o = preference::judge_forward(judge, x);
    f = o.depths.back();
    const std::int64_t all = o.features.size(1), first = all - f;
    if (out.numel() == 0) out = Tensor<double, cpu>(Shape{n, f});  // [N, F]
    for (std::int64_t r = 0; r < m; ++r)
      for (std::int64_t k = 0; k < f; ++k) out[(i + r) * f + k] = static_cast<double>(o.features[r * all + first + k]);
  }
  return out;
}

/// Feature statistics of the first `count` real test images under the held-out judge.
template <Scalar T>
GaussianStats real_feature_stats(judge::Classifier<T>& judge, const std::filesystem::path& data_dir, std::int64_t count,
                                 std::int64_t resolution) {
  const auto test = data::load_fashion_mnist(data::Split::test, data_dir);
  SPO_CONFIG_CHECK(count <= test.count, "evaluation.real_images",
                   count << " exceeds the " << test.count << " test images in " << data_dir.string());
  std::vector<std::int64_t> idx(static_cast<std::size_t>(count));
  std::iota(idx.begin(), idx.end(), 0);
  const auto x = data::to_tensor<T>(test, idx, resolution);  // [count, 1, R, R]
  return gaussian_stats(judge_pool_features(judge, x));
}

/// The metrics of one model's evaluation images.
struct Metrics {
  Summary reward;                        ///< the rater's reward over images, with its 95% t interval
  std::vector<double> rewards;           ///< per image (prompt-major, paired with other models' by seed)
  double alignment = 0, quality = 0;     ///< means of the reward's parts
  double class_accuracy = 0;             ///< held-out judge's argmax == prompt class
  double frechet = 0;                    ///< Frechet distance to the real test images (held-out judge features)
  std::array<double, 2> frechet_ci95{};  ///< +- 1.96 bootstrap s.d. over the generated images (real statistics fixed)
};

/// A bootstrap interval of the Frechet distance: `resamples` draws of N rows with replacement from the generated
/// features [N, F] (Generator{seed}), each against the fixed real statistics, give the standard deviation s of the
/// distance; the interval is fd +- 1.96 s. (Percentiles of the resampled distances are not used: rows drawn twice
/// shrink the sample's diversity and bias every resampled distance upwards, about +0.5 at N = 320 here.)
inline std::array<double, 2> frechet_bootstrap(const Tensor<double, cpu>& features, const GaussianStats& real,
                                               double fd, int resamples = 200, std::uint64_t seed = 0x5eed) {
  const std::int64_t n = features.size(0), f = features.size(1);
  Generator gen{seed, 0};
  double sum = 0, sq = 0;
  Tensor<double, cpu> x(features.shape());  // [N, F]
  for (int r = 0; r < resamples; ++r) {
    const std::uint64_t first = gen.reserve(static_cast<std::uint64_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      const auto j = std::min<std::int64_t>(
          static_cast<std::int64_t>(rng::uniform_at(gen.seed, first, static_cast<std::uint64_t>(i)) *
                                    static_cast<double>(n)),
          n - 1);
      std::copy_n(features.data() + j * f, f, x.data() + i * f);
    }
    const double d = frechet_distance(gaussian_stats(x), real);
    sum += d;
    sq += d * d;
  }
  const double mean = sum / resamples, sd = std::sqrt(std::max(0.0, sq / resamples - mean * mean));
  return {fd - normal_quantile_975 * sd, fd + normal_quantile_975 * sd};
}

template <preference::Rater R, Scalar T>
Metrics measure(R& rater, judge::Classifier<T>& held_out, const GaussianStats& real, const Tensor<T, cpu>& images,
                std::span<const std::string> prompts) {
  Metrics m;
  const auto parts = rater.score_parts(images, prompts);
  m.rewards = parts.reward;
  m.reward = summarize(m.rewards);
  for (std::size_t i = 0; i < parts.reward.size(); ++i) {
    m.alignment += parts.alignment[i] / static_cast<double>(parts.reward.size());
    m.quality += parts.quality[i] / static_cast<double>(parts.reward.size());
  }
  const auto pred = judge::predict(held_out, images);
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == preference::prompt_class(prompts[i]);
  m.class_accuracy = static_cast<double>(correct) / static_cast<double>(pred.size());
  const auto features = judge_pool_features(held_out, images);  // [N, F]
  m.frechet = frechet_distance(gaussian_stats(features), real);
  m.frechet_ci95 = frechet_bootstrap(features, real, m.frechet);
  return m;
}

inline nlohmann::json to_json(const Metrics& m) {
  return {{"reward_mean", m.reward.mean},
          {"reward_ci95", {m.reward.ci95_low, m.reward.ci95_high}},
          {"reward_std", m.reward.std},
          {"images", m.reward.n},
          {"alignment", m.alignment},
          {"quality", m.quality},
          {"class_accuracy", m.class_accuracy},
          {"frechet", m.frechet},
          {"frechet_ci95", {m.frechet_ci95[0], m.frechet_ci95[1]}}};
}

}  // namespace spo::eval
