// SPDX-License-Identifier: MIT
/// @brief Loading the committed components experiments start from: the base model, the judges and the oracle rater.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include <boost/hana/define_struct.hpp>

#include "spo/config/sections.hpp"
#include "spo/io/config.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/judge/training.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/preference/rater.hpp"
#include "spo/train/pretraining.hpp"

namespace spo::config {

/// A pretrained base model: its pretraining config (architecture, schedule, sampling) and its weights.
struct BaseModelSection {
  BOOST_HANA_DEFINE_STRUCT(BaseModelSection, (std::string, config), (std::string, weights));
};

/// A judge: its training config (architecture) and its weights.
struct JudgeSection {
  BOOST_HANA_DEFINE_STRUCT(JudgeSection, (std::string, config), (std::string, weights));
};

/// The oracle rater: the training judge, its stored per-class feature statistics (an input: when missing or stale
/// the statistics of the first images_per_class training images of each class are computed, and a run keeps them in
/// its own output directory) and the reward weights.
struct RaterSection {
  BOOST_HANA_DEFINE_STRUCT(RaterSection, (JudgeSection, judge), (std::string, feature_stats),
                           (std::int64_t, images_per_class), (preference::OracleRaterConfig, weights));
};

/// The base model with the config it was trained with, loaded for inference (eval mode, frozen).
template <class Model>
struct BaseModel {
  train::PretrainConfig config;
  Model model;
};

/// The base model's config, read and checked ("<its file>: <key>: <problem>" on a bad value).
inline train::PretrainConfig load_base_config(const BaseModelSection& s) {
  auto config = io::load_config<train::PretrainConfig>(s.config);
  io::in_config_file(s.config, [&] { train::validate(config); });
  return config;
}

template <class Model>
BaseModel<Model> load_base_model(const BaseModelSection& s) {
  auto config = load_base_config(s);
  Generator init{0, 0};
  auto model = model::make_fashion_model<Model>(config.unet, config.text, init);
  io::load_state_dict(model, std::filesystem::path(s.weights));
  nn::set_trainable(model, false);
  return {std::move(config), std::move(model)};
}

template <Scalar T>
judge::Classifier<T> load_judge(const JudgeSection& s) {
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
preference::OracleRater<T> load_oracle_rater(const RaterSection& s, const std::filesystem::path& data_dir,
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

}  // namespace spo::config
