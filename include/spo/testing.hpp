// SPDX-License-Identifier: MIT
/// @brief Test support: gradient checks against finite differences.
#pragma once

#include "spo/testing/gradcheck.hpp"
