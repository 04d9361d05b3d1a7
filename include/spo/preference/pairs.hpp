// SPDX-License-Identifier: MIT
/// @brief Preference pair files: image pairs under one prompt with the rater's rewards and drawn labels.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/json.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/preference/labels.hpp"
#include "spo/tensor/tensor.hpp"
#include "spo/text/prompts.hpp"

namespace spo::preference {

/*!
  WHAT THIS REPRESENTS
    A set of preference pairs, the counterpart of Pick-a-Pic in the embedded default: pair i shows images_a[i] and
    images_b[i], both generated for the prompt text::fashion_prompt(label[i], template_index[i]), the rater's
    rewards of each, and the label drawn from them (labels.hpp: (1, 0), (0, 1) or the tie (0.5, 0.5)).
    `split` names the part ("train" or "validation"); `generation` records how the pairs were made (model, seeds,
    sampler, rater and label settings) and is stored in the file's metadata.
  INVARIANTS
    - images_a and images_b have the same shape [N, 1, R, R]; every per-pair vector has N entries
    - labels are (1, 0), (0, 1) or (0.5, 0.5); classes in [0, 10); template indices name text::fashion_templates
!*/
struct PreferencePairs {
  std::string split;
  Tensor<float, cpu> images_a;  // [N, 1, R, R]
  Tensor<float, cpu> images_b;  // [N, 1, R, R]
  std::vector<int> label;       ///< the prompt's class
  std::vector<int> template_index;
  std::vector<std::uint64_t> seed;  ///< the sampling seed of the pair's batch
  std::vector<double> reward_a, reward_b;
  std::vector<PreferenceLabel> labels;
  nlohmann::json generation = nlohmann::json::object();

  std::int64_t size() const { return static_cast<std::int64_t>(labels.size()); }
  std::string prompt(std::int64_t i) const {
    return text::fashion_prompt(label.at(static_cast<std::size_t>(i)), template_index.at(static_cast<std::size_t>(i)));
  }
  std::vector<std::string> prompts() const {
    std::vector<std::string> out;
    for (std::int64_t i = 0; i < size(); ++i) out.push_back(prompt(i));
    return out;
  }
};

/// Throws spo::error naming `source` when `p` breaks an invariant of PreferencePairs.
inline void validate(const PreferencePairs& p, std::string_view source) {
  const auto n = static_cast<std::size_t>(p.size());
  SPO_EXPECT(p.images_a.rank() == 4 && p.images_a.size(1) == 1 && p.images_a.size(2) == p.images_a.size(3),
             source << ": images_a must be [N, 1, R, R], got " << p.images_a.shape());
  SPO_EXPECT(p.images_a.shape() == p.images_b.shape(),
             source << ": images_a " << p.images_a.shape() << " and images_b " << p.images_b.shape() << " differ");
  SPO_EXPECT(static_cast<std::size_t>(p.images_a.size(0)) == n && p.label.size() == n && p.template_index.size() == n &&
                 p.seed.size() == n && p.reward_a.size() == n && p.reward_b.size() == n,
             source << ": mismatched pair counts: " << p.images_a.size(0) << " image pairs, " << n << " labels, "
                    << p.label.size() << " classes, " << p.template_index.size() << " templates, " << p.seed.size()
                    << " seeds, " << p.reward_a.size() << "/" << p.reward_b.size() << " rewards");
  for (std::size_t i = 0; i < n; ++i) {
    const auto& y = p.labels[i];
    SPO_EXPECT(y.y_a >= 0 && y.y_a <= 1 && y.y_b >= 0 && y.y_b <= 1,
               source << ": pair " << i << " has label (" << y.y_a << ", " << y.y_b << ") outside [0, 1]");
    SPO_EXPECT(y == label_a || y == label_b || y == label_tie,
               source << ": pair " << i << " has label (" << y.y_a << ", " << y.y_b
                      << "); expected (1, 0), (0, 1) or the tie (0.5, 0.5)");
    SPO_EXPECT(p.label[i] >= 0 && p.label[i] < 10, source << ": pair " << i << " has class " << p.label[i]);
    SPO_EXPECT(p.template_index[i] >= 0 && p.template_index[i] < static_cast<int>(text::fashion_templates.size()),
               source << ": pair " << i << " has template index " << p.template_index[i]);
    SPO_EXPECT(std::isfinite(p.reward_a[i]) && std::isfinite(p.reward_b[i]),
               source << ": pair " << i << " has a non-finite reward");
  }
}

/*!
  ENSURES
    - writes `p` atomically as safetensors: "images_a", "images_b" [N, 1, R, R] (F16: generated images in [-1, 1]
      lose < 5e-4), "labels" [N, 2], "rewards" [N, 2] (F64), "class", "template", "seed" [N] (F64, exact integers);
      metadata "format" = "spo.preference_pairs.v1", "split", "generation" (JSON)
!*/
inline void save_pairs(const std::filesystem::path& path, const PreferencePairs& p) {
  validate(p, path.string());
  const std::int64_t n = p.size();
  io::NamedTensors t;
  t.source = path.string();
  t.set<float>("images_a", p.images_a, io::Dtype::f16);
  t.set<float>("images_b", p.images_b, io::Dtype::f16);
  Tensor<double, cpu> labels(Shape{n, 2}), rewards(Shape{n, 2}), cls(Shape{n}), tmpl(Shape{n}), seed(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    labels[2 * i] = p.labels[k].y_a;
    labels[2 * i + 1] = p.labels[k].y_b;
    rewards[2 * i] = p.reward_a[k];
    rewards[2 * i + 1] = p.reward_b[k];
    cls[i] = p.label[k];
    tmpl[i] = p.template_index[k];
    seed[i] = static_cast<double>(p.seed[k]);
  }
  t.set<double>("labels", labels);
  t.set<double>("rewards", rewards);
  t.set<double>("class", cls);
  t.set<double>("template", tmpl);
  t.set<double>("seed", seed);
  t.metadata = {{"format", "spo.preference_pairs.v1"}, {"split", p.split}, {"generation", p.generation.dump()}};
  io::save_safetensors(path, t);
}

/// Reads a pair file written by save_pairs; a file of another format, missing or mis-shaped tensors, counts that do
/// not match, labels outside [0, 1] or not a valid label, and non-integer classes are errors naming the file.
inline PreferencePairs load_pairs(const std::filesystem::path& path) {
  const auto t = io::load_safetensors(path);
  const std::string src = path.string();
  SPO_EXPECT(t.metadata.contains("format") && t.metadata.at("format") == "spo.preference_pairs.v1",
             src << ": not a preference pair file (metadata \"format\" is not \"spo.preference_pairs.v1\")");
  PreferencePairs p;
  p.split = t.metadata.contains("split") ? t.metadata.at("split") : "";
  if (t.metadata.contains("generation")) p.generation = io::parse_json(t.metadata.at("generation"), src);
  p.images_a = t.get<float>("images_a");
  p.images_b = t.get<float>("images_b");
  const auto labels = t.get<double>("labels");
  const auto rewards = t.get<double>("rewards");
  const auto cls = t.get<double>("class");
  const auto tmpl = t.get<double>("template");
  const auto seed = t.get<double>("seed");
  const std::int64_t n = labels.rank() == 2 ? labels.size(0) : -1;
  SPO_EXPECT(n >= 0 && labels.size(1) == 2, src << ": labels must be [N, 2], got " << labels.shape());
  SPO_EXPECT(rewards.shape() == labels.shape(),
             src << ": rewards " << rewards.shape() << " vs labels " << labels.shape());
  for (const auto* v : {&cls, &tmpl, &seed})
    SPO_EXPECT(v->shape() == Shape{n}, src << ": class/template/seed must be [" << n << "], got " << v->shape());
  for (std::int64_t i = 0; i < n; ++i) {
    for (const auto* v : {&cls, &tmpl, &seed})
      SPO_EXPECT((*v)[i] == std::floor((*v)[i]) && (*v)[i] >= 0,
                 src << ": pair " << i << " has a class, template or seed that is not a non-negative integer");
    p.labels.push_back({labels[2 * i], labels[2 * i + 1]});
    p.reward_a.push_back(rewards[2 * i]);
    p.reward_b.push_back(rewards[2 * i + 1]);
    p.label.push_back(static_cast<int>(cls[i]));
    p.template_index.push_back(static_cast<int>(tmpl[i]));
    p.seed.push_back(static_cast<std::uint64_t>(seed[i]));
  }
  validate(p, src);
  return p;
}

/// The fraction of non-tie pairs whose label agrees with the ordering of (score_a, score_b) (equal scores count
/// half); ties are left out, as in the SPM evaluation. Returns NaN when every pair is a tie.
inline double preference_accuracy(const std::vector<PreferenceLabel>& labels, std::span<const double> score_a,
                                  std::span<const double> score_b) {
  SPO_CHECK(labels.size() == score_a.size() && labels.size() == score_b.size(),
            "preference_accuracy: " << labels.size() << " labels, " << score_a.size() << " and " << score_b.size()
                                    << " scores");
  double hits = 0;
  std::int64_t counted = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i].is_tie()) continue;
    ++counted;
    const bool a_wins = labels[i] == label_a;
    if (score_a[i] == score_b[i])
      hits += 0.5;
    else
      hits += (score_a[i] > score_b[i]) == a_wins ? 1.0 : 0.0;
  }
  return counted ? hits / static_cast<double>(counted) : std::nan("");
}

}  // namespace spo::preference
