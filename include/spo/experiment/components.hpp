// SPDX-License-Identifier: MIT
/// @brief The composition root's loaders: the committed components experiments start from (the base model, the
/// judges and the oracle rater), each read and checked against the config that names it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "spo/io/config.hpp"
#include "spo/io/model_files.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/judge/training.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/preference/rater.hpp"
#include "spo/train/pretraining.hpp"

namespace spo::experiment {

/// The base model with the config it was trained with, loaded for inference (eval mode, frozen).
template <class Model>
struct BaseModel {
  train::PretrainConfig config;
  Model model;
};

/// The base model's config, read and checked ("<its file>: <key>: <problem>" on a bad value).
inline train::PretrainConfig load_base_config(const io::ModelFiles& s) {
  auto config = io::load_config<train::PretrainConfig>(s.config);
  io::in_config_file(s.config, [&] { train::validate(config); });
  return config;
}

template <class Model>
BaseModel<Model> load_base_model(const io::ModelFiles& s) {
  auto config = load_base_config(s);
  Generator init{0, 0};
  auto model = model::make_fashion_model<Model>(config.unet, config.text, init);
  io::load_state_dict(model, std::filesystem::path(s.weights));
  nn::set_trainable(model, false);
  return {std::move(config), std::move(model)};
}

template <Scalar T>
judge::Classifier<T> load_judge(const io::ModelFiles& s) {
  const auto c = io::load_config<judge::JudgeConfig>(s.config);
  io::in_config_file(s.config, [&] { judge::validate(c); });
  Generator init{0, 0};
  auto net = judge::make_classifier<T>(c.width, init);
  io::load_state_dict(net, std::filesystem::path(s.weights));
  nn::set_trainable(net, false);
  return net;
}

/*!
  ENSURES
    - the rater of section `s`; nothing is written (rater.feature_stats is an input)
    - when the stored statistics are missing or stale they are computed, a note saying why goes to stderr, and
      `*computed` (when given) receives a copy for the caller to keep in its output directory
!*/
template <Scalar T>
preference::OracleRater<T> load_oracle_rater(const preference::RaterSection& s, const std::filesystem::path& data_dir,
                                             std::int64_t resolution,
                                             std::optional<preference::FeatureStats>* computed = nullptr) {
  auto net = load_judge<T>(s.judge);
  auto source = preference::feature_stats_for(net, s.feature_stats, data_dir, resolution, s.images_per_class);
  if (source.computed) {
    std::fprintf(stderr, "rater.feature_stats: %s; computed the statistics of %lld images per class\n",
                 source.reason.c_str(), static_cast<long long>(s.images_per_class));
    if (computed) *computed = source.stats;
  }
  return preference::OracleRater<T>(std::move(net), std::move(source.stats), s.weights);
}

}  // namespace spo::experiment
