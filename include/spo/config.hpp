// SPDX-License-Identifier: MIT
/// @brief Reflected config sections shared by experiments.
#pragma once

#include "spo/config/components.hpp"
#include "spo/config/sections.hpp"
