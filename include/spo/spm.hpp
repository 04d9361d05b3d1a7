// SPDX-License-Identifier: MIT
/// @brief Step-aware preference model (SPM) networks: time policies, adaLN blocks, image and prompt towers, scores.
#pragma once

#include "spo/spm/adaln_block.hpp"
#include "spo/spm/evaluation.hpp"
#include "spo/spm/image_encoder.hpp"
#include "spo/spm/noised_prediction.hpp"
#include "spo/spm/preference_network.hpp"
#include "spo/spm/prompt_encoder.hpp"
#include "spo/spm/time_policy.hpp"
#include "spo/spm/training.hpp"
#include "spo/spm/variant.hpp"
