// SPDX-License-Identifier: MIT
/// @brief Evaluation: Frechet distance between feature Gaussians (FID) and summary statistics over seeds and pairs.
#pragma once

#include "spo/eval/frechet.hpp"
#include "spo/eval/protocol.hpp"
#include "spo/eval/statistics.hpp"
