// SPDX-License-Identifier: MIT
/// @brief Config sections shared by experiments (reflected structs read by io::from_json; every key is required).
#pragma once

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
  SPO_CHECK(s.beta_schedule == S::name, "schedule.beta_schedule is \"" << s.beta_schedule << "\" but this experiment "
                                        "was compiled with \"" << S::name << "\"");
  SPO_CHECK(s.prediction_type == P::name, "schedule.prediction_type is \"" << s.prediction_type << "\" but this "
                                          "experiment was compiled with \"" << P::name << "\"");
  SPO_CHECK(s.beta_start > 0 && s.beta_end > s.beta_start && s.beta_end < 1,
            "schedule: need 0 < beta_start < beta_end < 1, got " << s.beta_start << ", " << s.beta_end);
  SPO_CHECK(s.num_train_timesteps >= 2, "schedule.num_train_timesteps must be >= 2, got " << s.num_train_timesteps);
  SPO_CHECK(s.steps_offset >= 0, "schedule.steps_offset must be >= 0, got " << s.steps_offset);
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
  SPO_CHECK(s.num_inference_steps >= 1 && s.num_inference_steps <= num_train_timesteps,
            "sampling.num_inference_steps must be in [1, " << num_train_timesteps << "], got " << s.num_inference_steps);
  SPO_CHECK(s.guidance_scale >= 0, "sampling.guidance_scale must be >= 0, got " << s.guidance_scale);
  SPO_CHECK(s.eta >= 0, "sampling.eta must be >= 0, got " << s.eta);
}

}  // namespace spo::config
