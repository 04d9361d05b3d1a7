// SPDX-License-Identifier: MIT
// Experiment make_pairs: the preference data of the embedded default. For each prompt of a split (every class x the
// split's templates) the base model samples 2 x pairs_per_prompt images (DDIM with the base model's sampling
// settings), image 2i and 2i+1 form pair i, the oracle rater scores both and a Bradley-Terry label is drawn.
// Training and validation pairs use disjoint prompt templates and disjoint seeds.
// With `generators` (a pool of other models or sampling settings, as Pick-a-Pic's images come from many models) the
// pairs are off-policy: image a of pair i comes from generator i mod G, image b from generator floor(i / G) mod G,
// each generator sampling its images of a prompt in one batch from its own seed. The compute of the generation
// (UNet forward-equivalents, the rater's queries) is written to compute.json beside the pairs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/experiment/components.hpp"
#include "spo/io/config.hpp"
#include "spo/io/progress.hpp"
#include "spo/io/run_record.hpp"
#include "spo/preference/generator_pool.hpp"
#include "spo/preference/pairs.hpp"
#include "spo/train/compute_budget.hpp"

using Model = spo::model::FashionModel<float>;
using Scheduler = spo::diffusion::Ddim<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>;

struct SplitSection {
  BOOST_HANA_DEFINE_STRUCT(SplitSection, (std::vector<int>, templates), (std::int64_t, pairs_per_prompt),
                           (std::uint64_t, seed));
};

/// One source of images: a model (default: the base model) and its sampling settings.
struct GeneratorSection {
  BOOST_HANA_DEFINE_STRUCT(GeneratorSection, (std::string, name), (std::optional<spo::io::ModelFiles>, model),
                           (double, guidance_scale), (std::int64_t, num_inference_steps), (double, eta));
};

struct PairsConfig {
  BOOST_HANA_DEFINE_STRUCT(PairsConfig, (std::string, data_dir), (std::string, output_dir), (spo::io::ModelFiles, base),
                           (spo::preference::RaterSection, rater), (spo::preference::LabelConfig, labels),
                           (std::uint64_t, label_seed), (SplitSection, train), (SplitSection, validation),
                           (std::optional<std::vector<GeneratorSection>>, generators));
};

/// A generator ready to sample: its model, scheduler and settings.
struct Source {
  std::string name;
  Model model;
  Scheduler ddim;
  double guidance_scale, eta;
};

namespace {

/// Sampling 2 x pairs_per_prompt images of a prompt takes one batch of about 13 MB per 32x32 image.
constexpr std::int64_t max_pairs_per_prompt = 512;

void validate(const PairsConfig& c) {
  spo::preference::validate(c.labels);
  spo::preference::validate(c.rater.weights);
  SPO_CONFIG_CHECK(!c.output_dir.empty(), "output_dir", "must not be empty");
  for (const auto& [key, s] :
       {std::pair{std::string("train"), &c.train}, std::pair{std::string("validation"), &c.validation}}) {
    SPO_CONFIG_CHECK(!s->templates.empty(), key + ".templates", "must name at least one prompt template, got []");
    SPO_CONFIG_CHECK(s->pairs_per_prompt >= 1 && s->pairs_per_prompt <= max_pairs_per_prompt, key + ".pairs_per_prompt",
                     "must be in [1, " << max_pairs_per_prompt << "], got " << s->pairs_per_prompt);
    for (std::size_t i = 0; i < s->templates.size(); ++i)
      SPO_CONFIG_CHECK(s->templates[i] >= 0 && s->templates[i] < static_cast<int>(spo::text::fashion_templates.size()),
                       key + ".templates[" + std::to_string(i) + "]",
                       "must be a template index in [0, " << spo::text::fashion_templates.size() - 1 << "], got "
                                                          << s->templates[i]);
  }
  for (std::size_t i = 0; i < c.validation.templates.size(); ++i)
    for (int a : c.train.templates)
      SPO_CONFIG_CHECK(a != c.validation.templates[i], "validation.templates[" + std::to_string(i) + "]",
                       "template " << a << " is in train.templates too; the split is by prompt");
  SPO_CONFIG_CHECK(c.train.seed != c.validation.seed, "validation.seed",
                   "must differ from train.seed (" << c.train.seed << ")");
  if (!c.generators) return;
  SPO_CONFIG_CHECK(!c.generators->empty(), "generators", "must name at least one generator (or leave the key out)");
  for (std::size_t i = 0; i < c.generators->size(); ++i) {
    const auto& g = (*c.generators)[i];
    const std::string key = "generators[" + std::to_string(i) + "]";
    SPO_CONFIG_CHECK(!g.name.empty(), key + ".name", "must not be empty");
    SPO_CONFIG_CHECK(std::isfinite(g.guidance_scale) && g.guidance_scale >= 0, key + ".guidance_scale",
                     "must be finite and >= 0, got " << g.guidance_scale);
    SPO_CONFIG_CHECK(g.num_inference_steps >= 1 && g.num_inference_steps <= 1000, key + ".num_inference_steps",
                     "must be in [1, 1000], got " << g.num_inference_steps);
    SPO_CONFIG_CHECK(std::isfinite(g.eta) && g.eta >= 0, key + ".eta", "must be finite and >= 0, got " << g.eta);
    for (std::size_t j = 0; j < i; ++j)
      SPO_CONFIG_CHECK((*c.generators)[j].name != g.name, key + ".name", "\"" << g.name << "\" is used twice");
  }
}

/// The 2P images of one prompt from the pool (preference::pool_rows): generator g samples all of its images of the
/// prompt in one batch from preference::pool_seed(seed, g) (the on-policy set uses `seed` itself).
spo::Tensor<float> sample_from_pool(std::vector<Source>& pool, std::int64_t per, const std::string& prompt,
                                    std::uint64_t seed, std::int64_t res) {
  const auto rows = spo::preference::pool_rows(per, static_cast<std::int64_t>(pool.size()));
  const std::int64_t px = res * res;
  auto images = spo::Tensor<float>::uninitialized(spo::Shape{2 * per, 1, res, res});  // [2P, 1, R, R]
  for (std::size_t g = 0; g < pool.size(); ++g) {
    const auto n = static_cast<std::int64_t>(rows[g].size());
    if (n == 0) continue;
    auto& s = pool[g];
    spo::Generator gen{spo::preference::pool_seed(seed, g), 0};
    const std::vector<std::string> prompts(static_cast<std::size_t>(n), prompt);
    auto x = spo::randn<float>(spo::Shape{n, 1, res, res}, gen);  // [n, 1, R, R]
    const auto y = spo::model::sample_ddim(s.model, s.ddim, std::move(x), prompts, s.guidance_scale, s.eta, gen);
    for (std::int64_t r = 0; r < n; ++r)
      std::copy_n(y.data() + r * px, px, images.data() + rows[g][static_cast<std::size_t>(r)] * px);
  }
  return images;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string config_path;
  spo::experiment::ArgumentParser args(
      "make_pairs",
      "The preference pairs: for each prompt of a split (every class x the split's templates) the base model samples "
      "2 x pairs_per_prompt images, the oracle rater scores them and a Bradley-Terry label is drawn per pair. Writes "
      "train.safetensors and validation.safetensors to the config's output_dir.");
  args.positional("config.json", "the pairs' config (e.g. configs/preference_pairs.json)", config_path);
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;

  // Every check and every load that can fail comes before the output directory.
  const auto config = spo::io::load_config<PairsConfig>(config_path);
  spo::io::in_config_file(config_path, [&] { validate(config); });
  auto base = spo::experiment::load_base_model<Model>(config.base);
  auto make_ddim = [&](std::int64_t steps) {
    auto d = spo::diffusion::make_scheduler<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>(
        base.config.schedule);
    d.set_timesteps(static_cast<int>(steps));
    return d;
  };
  auto ddim = make_ddim(base.config.sampling.num_inference_steps);
  // The pool of generators (none: the base model with its own sampling settings, on-policy pairs).
  std::vector<Source> pool;
  if (config.generators)
    for (std::size_t i = 0; i < config.generators->size(); ++i) {
      const auto& g = (*config.generators)[i];
      const std::string key = "generators[" + std::to_string(i) + "].model";
      auto loaded = spo::io::in_config_file(config_path, [&] {
        if (g.model) {
          SPO_CONFIG_CHECK(std::filesystem::is_regular_file(g.model->weights), key + ".weights",
                           "no such file: \"" << g.model->weights << "\"");
          return spo::experiment::load_base_model<Model>(*g.model).model;
        }
        return spo::experiment::load_base_model<Model>(config.base).model;
      });
      pool.push_back(Source{g.name, std::move(loaded), make_ddim(g.num_inference_steps), g.guidance_scale, g.eta});
    }
  auto rater = spo::io::in_config_file(config_path, [&] {
    return spo::experiment::load_oracle_rater<float>(config.rater, config.data_dir, base.config.resolution);
  });
  const std::int64_t res = base.config.resolution;
  const std::filesystem::path out = config.output_dir;
  std::filesystem::create_directories(out);
  spo::io::write_run_record(out, "make_pairs", spo::io::to_json(config), config.train.seed, SPO_SOURCE_DIR, 0);

  const double unit_flops = spo::train::unet_row_flops(base.model, 1, base.config.resolution);
  spo::nn::ComputeMeter meter;
  const spo::nn::MeterScope metered(meter);
  spo::Generator label_gen{config.label_seed, 0};
  for (const auto& [name, split] :
       {std::pair{std::string("train"), config.train}, std::pair{std::string("validation"), config.validation}}) {
    spo::preference::PreferencePairs pairs;
    pairs.split = name;
    const std::int64_t per = split.pairs_per_prompt;
    const std::int64_t n = 10 * static_cast<std::int64_t>(split.templates.size()) * per;
    pairs.images_a = spo::Tensor<float>::uninitialized(spo::Shape{n, 1, res, res});
    pairs.images_b = spo::Tensor<float>::uninitialized(spo::Shape{n, 1, res, res});
    spo::io::ProgressBar progress(name + " pairs", n);
    std::int64_t at = 0;
    for (int tmpl : split.templates)
      for (int c = 0; c < 10; ++c) {
        const std::string prompt = spo::text::fashion_prompt(c, static_cast<std::size_t>(tmpl));
        const std::uint64_t seed = split.seed + static_cast<std::uint64_t>(tmpl * 10 + c);
        const std::vector<std::string> prompts(static_cast<std::size_t>(2 * per), prompt);
        spo::Tensor<float> images;  // [2P, 1, R, R]: images 2i and 2i + 1 form pair i
        if (pool.empty()) {
          spo::Generator gen{seed, 0};
          auto x = spo::randn<float>(spo::Shape{2 * per, 1, res, res}, gen);  // [2P, 1, R, R]
          images = spo::model::sample_ddim(base.model, ddim, std::move(x), prompts, base.config.sampling.guidance_scale,
                                           base.config.sampling.eta, gen);
        } else {
          images = sample_from_pool(pool, per, prompt, seed, res);
        }
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
    if (config.generators) {
      pairs.generation["generators"] = spo::io::to_json(*config.generators);
      pairs.generation["pairing"] = "image a of pair i from generator i mod G, image b from floor(i / G) mod G";
    }
    pairs.generation.update({{"base", spo::io::to_json(config.base)},
                             {"sampling", spo::io::to_json(base.config.sampling)},
                             {"rater", spo::io::to_json(config.rater)},
                             {"labels", spo::io::to_json(config.labels)},
                             {"label_seed", config.label_seed},
                             {"templates", split.templates},
                             {"pairs_per_prompt", per},
                             {"seed", split.seed}});
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
    std::printf(
        "%s: %lld pairs, mean |r_a - r_b| %.4f, ties %lld (%.1f%%), labels agreeing with the reward order %.1f%%\n",
        name.c_str(), static_cast<long long>(n), gap / static_cast<double>(n), static_cast<long long>(ties),
        100.0 * static_cast<double>(ties) / static_cast<double>(n), 100.0 * agree / static_cast<double>(counted));
  }
  spo::train::ComputeRecord record;
  record.what = "make_pairs";
  record.unit_flops = unit_flops;
  record.own = meter;
  spo::train::save_compute_record(out, record);
  std::printf("compute: %.0f UNet forward-equivalents, %lld rater queries (compute.json)\n",
              record.forward_equivalents(), static_cast<long long>(record.rater_queries()));
  return 0;
} catch (const std::exception& e) {
  std::cerr << "make_pairs: error: " << e.what() << "\n";
  return 1;
}
