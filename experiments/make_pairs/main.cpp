// SPDX-License-Identifier: MIT
// Experiment make_pairs: the preference data of the embedded default. For each prompt of a split (every class x the
// split's templates) the base model samples 2 x pairs_per_prompt images (DDIM with the base model's sampling
// settings), image 2i and 2i+1 form pair i, the oracle rater scores both and a Bradley-Terry label is drawn.
// Training and validation pairs use disjoint prompt templates and disjoint seeds.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "spo/config/components.hpp"
#include "spo/preference/pairs.hpp"
#include "spo/train/progress.hpp"
#include "spo/train/run_record.hpp"

using Model = spo::model::FashionModel<float>;
using Scheduler = spo::diffusion::Ddim<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>;

struct SplitSection {
  BOOST_HANA_DEFINE_STRUCT(SplitSection, (std::vector<int>, templates), (std::int64_t, pairs_per_prompt),
                           (std::uint64_t, seed));
};

struct PairsConfig {
  BOOST_HANA_DEFINE_STRUCT(PairsConfig, (std::string, data_dir), (std::string, output_dir),
                           (spo::config::BaseModelSection, base), (spo::config::RaterSection, rater),
                           (spo::preference::LabelConfig, labels), (std::uint64_t, label_seed),
                           (SplitSection, train), (SplitSection, validation));
};

static void validate(const PairsConfig& c) {
  spo::preference::validate(c.labels);
  for (const auto* s : {&c.train, &c.validation}) {
    SPO_CHECK(!s->templates.empty() && s->pairs_per_prompt >= 1, "each split needs templates and pairs_per_prompt >= 1");
    for (int t : s->templates)
      SPO_CHECK(t >= 0 && t < static_cast<int>(spo::text::fashion_templates.size()), "template index " << t << " out of range");
  }
  for (int a : c.train.templates)
    for (int b : c.validation.templates)
      SPO_CHECK(a != b, "template " << a << " is in both splits; the split is by prompt");
  SPO_CHECK(c.train.seed != c.validation.seed, "the splits need different seeds");
}

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::cerr << "usage: make_pairs <config.json>\n";
    return 2;
  }
  const auto config = spo::io::load_config<PairsConfig>(argv[1]);
  validate(config);
  const std::filesystem::path out = config.output_dir;
  std::filesystem::create_directories(out);
  spo::train::write_run_record(out, "make_pairs", spo::io::to_json(config), config.train.seed, SPO_SOURCE_DIR, 0);

  auto base = spo::config::load_base_model<Model>(config.base);
  auto ddim = spo::config::make_scheduler<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>(base.config.schedule);
  ddim.set_timesteps(base.config.sampling.num_inference_steps);
  auto rater = spo::config::load_oracle_rater<float>(config.rater, config.data_dir, base.config.resolution);
  const std::int64_t res = base.config.resolution;

  spo::Generator label_gen{config.label_seed, 0};
  for (const auto& [name, split] : {std::pair{std::string("train"), config.train},
                                    std::pair{std::string("validation"), config.validation}}) {
    spo::preference::PreferencePairs pairs;
    pairs.split = name;
    const std::int64_t per = split.pairs_per_prompt;
    const std::int64_t n = 10 * static_cast<std::int64_t>(split.templates.size()) * per;
    pairs.images_a = spo::Tensor<float>::uninitialized(spo::Shape{n, 1, res, res});
    pairs.images_b = spo::Tensor<float>::uninitialized(spo::Shape{n, 1, res, res});
    spo::train::ProgressBar progress(name + " pairs", n);
    std::int64_t at = 0;
    for (int tmpl : split.templates)
      for (int c = 0; c < 10; ++c) {
        const std::string prompt = spo::text::fashion_prompt(c, static_cast<std::size_t>(tmpl));
        const std::uint64_t seed = split.seed + static_cast<std::uint64_t>(tmpl * 10 + c);
        spo::Generator gen{seed, 0};
        const std::vector<std::string> prompts(static_cast<std::size_t>(2 * per), prompt);
        auto x = spo::randn<float>(spo::Shape{2 * per, 1, res, res}, gen);  // [2P, 1, R, R]
        auto images = spo::model::sample_ddim(base.model, ddim, std::move(x), prompts,
                                              base.config.sampling.guidance_scale, base.config.sampling.eta, gen);
        const auto rewards = rater.score(images, prompts);
        const std::int64_t px = res * res;
        std::vector<double> ra, rb;
        for (std::int64_t i = 0; i < per; ++i) {
          std::copy_n(images.data() + (2 * i) * px, px, pairs.images_a.data() + (at + i) * px);
          std::copy_n(images.data() + (2 * i + 1) * px, px, pairs.images_b.data() + (at + i) * px);
          ra.push_back(rewards[static_cast<std::size_t>(2 * i)]);
          rb.push_back(rewards[static_cast<std::size_t>(2 * i + 1)]);
          pairs.label.push_back(c);
          pairs.template_index.push_back(tmpl);
          pairs.seed.push_back(seed);
        }
        const auto labels = spo::preference::draw_labels(ra, rb, config.labels, label_gen);
        pairs.labels.insert(pairs.labels.end(), labels.begin(), labels.end());
        pairs.reward_a.insert(pairs.reward_a.end(), ra.begin(), ra.end());
        pairs.reward_b.insert(pairs.reward_b.end(), rb.begin(), rb.end());
        at += per;
        progress.update(at);
      }
    pairs.generation = {{"base", spo::io::to_json(config.base)}, {"sampling", spo::io::to_json(base.config.sampling)},
                        {"rater", spo::io::to_json(config.rater)}, {"labels", spo::io::to_json(config.labels)},
                        {"label_seed", config.label_seed}, {"templates", split.templates},
                        {"pairs_per_prompt", per}, {"seed", split.seed}};
    spo::preference::save_pairs(out / (name + ".safetensors"), pairs);
    // Summary: reward spread and label statistics.
    double gap = 0, agree = 0;
    std::int64_t ties = 0, counted = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      gap += std::abs(pairs.reward_a[k] - pairs.reward_b[k]);
      if (pairs.labels[k].is_tie()) {
        ++ties;
        continue;
      }
      ++counted;
      agree += (pairs.reward_a[k] > pairs.reward_b[k]) == (pairs.labels[k] == spo::preference::label_a);
    }
    std::printf("%s: %lld pairs, mean |r_a - r_b| %.4f, ties %lld (%.1f%%), labels agreeing with the reward order %.1f%%\n",
                name.c_str(), static_cast<long long>(n), gap / static_cast<double>(n), static_cast<long long>(ties),
                100.0 * static_cast<double>(ties) / static_cast<double>(n), 100.0 * agree / static_cast<double>(counted));
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "make_pairs: error: " << e.what() << "\n";
  return 1;
}
