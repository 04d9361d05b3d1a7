// SPDX-License-Identifier: MIT
/// @brief Functions of tu_a.cpp called from tu_b.cpp.
#pragma once

namespace odr {
const void* allocator_in_a();
const void* grad_flag_in_a();
bool grad_enabled_in_a();
double linear_in_a();
}  // namespace odr
