// SPDX-License-Identifier: MIT
/// @brief Diffusion: contracts, beta schedules, timestep spacings, parameterizations, DDIM with log-probabilities,
/// denoising loss, the scheduler built from a config's "schedule" section, and the inference schedulers of diffusers
/// checkpoints (DDIM, Euler, Euler ancestral, DPM-Solver++ 2M, PNDM) read from scheduler_config.json.
#pragma once

#include "spo/diffusion/concepts.hpp"
// The contracts above; the components:
#include "spo/diffusion/beta_schedule.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/diffusion/ddim_sampling.hpp"
#include "spo/diffusion/denoising_loss.hpp"
#include "spo/diffusion/dpm_solver_multistep.hpp"
#include "spo/diffusion/euler_ancestral.hpp"
#include "spo/diffusion/euler_discrete.hpp"
#include "spo/diffusion/host_step.hpp"
#include "spo/diffusion/noise_schedule.hpp"
#include "spo/diffusion/pndm.hpp"
#include "spo/diffusion/prediction.hpp"
#include "spo/diffusion/sampler_policy.hpp"
#include "spo/diffusion/sampling_loop.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/diffusion/scheduler_json.hpp"
#include "spo/diffusion/sigma_schedule.hpp"
#include "spo/diffusion/thresholding.hpp"
#include "spo/diffusion/timesteps.hpp"
