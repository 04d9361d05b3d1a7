// SPDX-License-Identifier: MIT
/// @brief The whole library: every module umbrella.
#pragma once

#include "spo/core.hpp"
#include "spo/tensor.hpp"
#include "spo/nn.hpp"
#include "spo/io.hpp"
#include "spo/optim.hpp"
#include "spo/testing.hpp"
#include "spo/config.hpp"
#include "spo/data.hpp"
#include "spo/diffusion.hpp"
#include "spo/eval.hpp"
#include "spo/judge.hpp"
#include "spo/loss.hpp"
#include "spo/model.hpp"
#include "spo/text.hpp"
#include "spo/train.hpp"
#include "spo/preference.hpp"
#include "spo/spm.hpp"
#include "spo/resampler.hpp"
#include "spo/experiment.hpp"
