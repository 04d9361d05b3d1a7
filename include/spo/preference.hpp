// SPDX-License-Identifier: MIT
/// @brief Preference: compare policies (and, as they land, raters and step-aware preference models).
#pragma once

#include "spo/preference/compare.hpp"
