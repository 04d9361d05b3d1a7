// SPDX-License-Identifier: MIT
/// @brief Step-wise resampler: SPO's k-children sampling, pair recording and continuation rules.
#pragma once

#include "spo/resampler/concepts.hpp"
// The contracts above; the components:
#include "spo/resampler/continuation.hpp"
#include "spo/resampler/stepwise.hpp"
