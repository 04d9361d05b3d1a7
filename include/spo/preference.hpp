// SPDX-License-Identifier: MIT
/// @brief Preference: compare policies, raters (the oracle reward) and Bradley-Terry preference labels.
#pragma once

#include "spo/preference/concepts.hpp"
// The contracts above; the components:
#include "spo/preference/compare.hpp"
#include "spo/preference/generator_pool.hpp"
#include "spo/preference/labels.hpp"
#include "spo/preference/pairs.hpp"
#include "spo/preference/preference_model.hpp"
#include "spo/preference/rater.hpp"
