// SPDX-License-Identifier: MIT
/// @brief Diffusion: contracts, beta schedules, timestep spacings, parameterizations, DDIM with log-probabilities,
/// denoising loss, and the scheduler built from a config's "schedule" section.
#pragma once

#include "spo/diffusion/concepts.hpp"
// The contracts above; the components:
#include "spo/diffusion/beta_schedule.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/diffusion/denoising_loss.hpp"
#include "spo/diffusion/noise_schedule.hpp"
#include "spo/diffusion/prediction.hpp"
#include "spo/diffusion/sampler_policy.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/diffusion/timesteps.hpp"
