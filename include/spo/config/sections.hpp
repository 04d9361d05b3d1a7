// SPDX-License-Identifier: MIT
/// @brief Config sections shared by experiments (reflected structs read by io::from_json; every key is required).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/diffusion/ddim.hpp"
#include "spo/model/unet_2d_condition.hpp"

namespace spo::config {

/// The UNet topology (see model::UNetConfig); in/out channels come from the data.
struct UNetSection {
  BOOST_HANA_DEFINE_STRUCT(UNetSection, (std::vector<std::int64_t>, block_out_channels), (std::vector<bool>, attention),
                           (std::int64_t, layers_per_block), (std::int64_t, attention_heads),
                           (std::int64_t, cross_attention_dim), (std::int64_t, norm_num_groups),
                           (bool, use_linear_projection));
};

struct TextSection {
  BOOST_HANA_DEFINE_STRUCT(TextSection, (std::int64_t, max_length));
};

/// The noise process; beta_schedule and prediction_type must name the policies the experiment was compiled with.
struct ScheduleSection {
  BOOST_HANA_DEFINE_STRUCT(ScheduleSection, (std::string, beta_schedule), (double, beta_start), (double, beta_end),
                           (int, num_train_timesteps), (std::string, prediction_type), (std::string, timestep_spacing),
                           (int, steps_offset));
};

/// DDIM sampling with classifier-free guidance.
struct SamplingSection {
  BOOST_HANA_DEFINE_STRUCT(SamplingSection, (int, num_inference_steps), (double, guidance_scale), (double, eta));
};

/// Every value of the UNet section in range (key "unet.<name>"); channel counts divisible by groups and heads.
inline void validate(const UNetSection& s) {
  SPO_CONFIG_CHECK(!s.block_out_channels.empty(), "unet.block_out_channels", "must name at least one level, got []");
  SPO_CONFIG_CHECK(s.attention.size() == s.block_out_channels.size(), "unet.attention",
                   "has " << s.attention.size() << " entries for " << s.block_out_channels.size() << " levels");
  SPO_CONFIG_CHECK(s.layers_per_block >= 1, "unet.layers_per_block", "must be >= 1, got " << s.layers_per_block);
  SPO_CONFIG_CHECK(s.attention_heads >= 1, "unet.attention_heads", "must be >= 1, got " << s.attention_heads);
  SPO_CONFIG_CHECK(s.cross_attention_dim >= 1, "unet.cross_attention_dim",
                   "must be >= 1, got " << s.cross_attention_dim);
  SPO_CONFIG_CHECK(s.norm_num_groups >= 1, "unet.norm_num_groups", "must be >= 1, got " << s.norm_num_groups);
  for (std::size_t i = 0; i < s.block_out_channels.size(); ++i) {
    const auto c = s.block_out_channels[i];
    const std::string key = "unet.block_out_channels[" + std::to_string(i) + "]";
    SPO_CONFIG_CHECK(c >= 1, key, "must be >= 1, got " << c);
    SPO_CONFIG_CHECK(c % s.norm_num_groups == 0, key,
                     c << " is not divisible by norm_num_groups " << s.norm_num_groups);
    SPO_CONFIG_CHECK(c % s.attention_heads == 0, key,
                     c << " is not divisible by attention_heads " << s.attention_heads);
  }
}

inline model::UNetConfig unet_config(const UNetSection& s, std::int64_t channels) {
  model::UNetConfig c;
  c.in_channels = channels;
  c.out_channels = channels;
  c.block_out_channels = s.block_out_channels;
  c.attention = s.attention;
  c.layers_per_block = s.layers_per_block;
  c.attention_heads = s.attention_heads;
  c.cross_attention_dim = s.cross_attention_dim;
  c.norm_num_groups = s.norm_num_groups;
  c.use_linear_projection = s.use_linear_projection;
  c.validate();
  return c;
}

/// The scheduler of policies (S, P) configured by `s`; a config naming other policies than the compiled ones is an
/// error that says which binary to use.
template <diffusion::BetaSchedule S, diffusion::Parameterization P>
diffusion::Ddim<S, P> make_scheduler(const ScheduleSection& s) {
  SPO_CONFIG_CHECK(s.beta_schedule == S::name, "schedule.beta_schedule",
                   "is \"" << s.beta_schedule << "\" but this experiment was compiled with \"" << S::name << "\"");
  SPO_CONFIG_CHECK(s.prediction_type == P::name, "schedule.prediction_type",
                   "is \"" << s.prediction_type << "\" but this experiment was compiled with \"" << P::name << "\"");
  SPO_CONFIG_CHECK(std::isfinite(s.beta_start) && s.beta_start > 0 && s.beta_start < 1, "schedule.beta_start",
                   "must lie in (0, 1), got " << s.beta_start);
  SPO_CONFIG_CHECK(std::isfinite(s.beta_end) && s.beta_end > s.beta_start && s.beta_end < 1, "schedule.beta_end",
                   "must lie in (beta_start = " << s.beta_start << ", 1), got " << s.beta_end);
  SPO_CONFIG_CHECK(s.num_train_timesteps >= 2, "schedule.num_train_timesteps",
                   "must be >= 2, got " << s.num_train_timesteps);
  SPO_CONFIG_CHECK(s.steps_offset >= 0, "schedule.steps_offset", "must be >= 0, got " << s.steps_offset);
  try {
    (void)diffusion::parse_timestep_spacing(s.timestep_spacing);
  } catch (const error& e) {
    throw config_error("schedule.timestep_spacing", "unknown value \"" + s.timestep_spacing + "\"");
  }
  S schedule;
  if constexpr (requires { schedule.beta_start; }) {
    schedule.beta_start = s.beta_start;
    schedule.beta_end = s.beta_end;
  }
  diffusion::DdimConfig c;
  c.num_train_timesteps = s.num_train_timesteps;
  c.timestep_spacing = diffusion::parse_timestep_spacing(s.timestep_spacing);
  c.steps_offset = s.steps_offset;
  return diffusion::Ddim<S, P>(schedule, c);
}

inline void validate(const SamplingSection& s, int num_train_timesteps) {
  SPO_CONFIG_CHECK(
      s.num_inference_steps >= 1 && s.num_inference_steps <= num_train_timesteps, "sampling.num_inference_steps",
      "must be in [1, " << num_train_timesteps << "] (schedule.num_train_timesteps), got " << s.num_inference_steps);
  SPO_CONFIG_CHECK(std::isfinite(s.guidance_scale) && s.guidance_scale >= 0, "sampling.guidance_scale",
                   "must be finite and >= 0, got " << s.guidance_scale);
  SPO_CONFIG_CHECK(std::isfinite(s.eta) && s.eta >= 0, "sampling.eta", "must be finite and >= 0, got " << s.eta);
}

}  // namespace spo::config
