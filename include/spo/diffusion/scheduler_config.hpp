// SPDX-License-Identifier: MIT
/// @brief The DDIM scheduler and its sampling settings as configs name them ("schedule" and "sampling" sections;
/// every key is required), and the scheduler of compiled policies built from them.
#pragma once

#include <cmath>
#include <string>

#include <boost/hana/define_struct.hpp>

#include "spo/core/error.hpp"
#include "spo/diffusion/ddim.hpp"

namespace spo::diffusion {

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

/// The scheduler of policies (S, P) configured by `s`; a config naming other policies than the compiled ones is an
/// error that says which binary to use.
template <BetaSchedule S, Parameterization P>
Ddim<S, P> make_scheduler(const ScheduleSection& s) {
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
    (void)parse_timestep_spacing(s.timestep_spacing);
  } catch (const error& e) {
    throw config_error("schedule.timestep_spacing", "unknown value \"" + s.timestep_spacing + "\"");
  }
  S schedule;
  if constexpr (requires { schedule.beta_start; }) {
    schedule.beta_start = s.beta_start;
    schedule.beta_end = s.beta_end;
  }
  DdimConfig c;
  c.num_train_timesteps = s.num_train_timesteps;
  c.timestep_spacing = parse_timestep_spacing(s.timestep_spacing);
  c.steps_offset = s.steps_offset;
  return Ddim<S, P>(schedule, c);
}

inline void validate(const SamplingSection& s, int num_train_timesteps) {
  SPO_CONFIG_CHECK(
      s.num_inference_steps >= 1 && s.num_inference_steps <= num_train_timesteps, "sampling.num_inference_steps",
      "must be in [1, " << num_train_timesteps << "] (schedule.num_train_timesteps), got " << s.num_inference_steps);
  SPO_CONFIG_CHECK(std::isfinite(s.guidance_scale) && s.guidance_scale >= 0, "sampling.guidance_scale",
                   "must be finite and >= 0, got " << s.guidance_scale);
  SPO_CONFIG_CHECK(std::isfinite(s.eta) && s.eta >= 0, "sampling.eta", "must be finite and >= 0, got " << s.eta);
}

}  // namespace spo::diffusion
