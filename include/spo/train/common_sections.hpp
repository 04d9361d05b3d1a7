// SPDX-License-Identifier: MIT
/// @brief What every trainer's config shares: the LoRA section and the checks of train-section values, each error
/// naming its key ("train.lr: must be finite and > 0, got -1").
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/error.hpp"
#include "spo/text/prompts.hpp"

namespace spo::train {

/// LoRA adapters on every attention projection: rank r and scale alpha / r.
struct LoraSection {
  BOOST_HANA_DEFINE_STRUCT(LoraSection, (std::int64_t, rank), (double, alpha));
};

inline void validate(const LoraSection& l) {
  SPO_CONFIG_CHECK(l.rank >= 1, "lora.rank", "must be >= 1, got " << l.rank);
  SPO_CONFIG_CHECK(std::isfinite(l.alpha) && l.alpha > 0, "lora.alpha", "must be finite and > 0, got " << l.alpha);
}

/// Every template index names a training template (the others are held out for evaluation).
inline void validate_templates(const std::vector<int>& templates) {
  SPO_CONFIG_CHECK(!templates.empty(), "train.templates", "must name at least one prompt template, got []");
  for (std::size_t i = 0; i < templates.size(); ++i)
    SPO_CONFIG_CHECK(templates[i] >= 0 && templates[i] < static_cast<int>(text::fashion_train_templates),
                     "train.templates[" + std::to_string(i) + "]",
                     templates[i] << " is not a training template (0.." << text::fashion_train_templates - 1
                                  << "; the others are held out for evaluation)");
}

/// `value` >= 1 for a count or period of the train section (key "train.<name>").
inline void validate_positive(std::int64_t value, std::string_view name) {
  SPO_CONFIG_CHECK(value >= 1, "train." + std::string(name), "must be >= 1, got " << value);
}

/// The AdamW settings every trainer shares (betas 0.9 / 0.999, eps 1e-8 as in the reference trainers).
inline void validate_optimizer(double lr, double weight_decay, double max_grad_norm) {
  SPO_CONFIG_CHECK(std::isfinite(lr) && lr > 0, "train.lr", "must be finite and > 0, got " << lr);
  SPO_CONFIG_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "train.weight_decay",
                   "must be finite and >= 0, got " << weight_decay);
  SPO_CONFIG_CHECK(std::isfinite(max_grad_norm) && max_grad_norm > 0, "train.max_grad_norm",
                   "must be finite and > 0, got " << max_grad_norm);
}

}  // namespace spo::train
