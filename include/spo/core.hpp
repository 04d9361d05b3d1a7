// SPDX-License-Identifier: MIT
/// @brief Core: errors and SPO_CHECK, device tags, the half-precision storage scalars, the thread pool, the Philox
/// random stream.
#pragma once

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/core/host_device.hpp"
#include "spo/core/image_format.hpp"
#include "spo/core/parallel.hpp"
#include "spo/core/rng.hpp"
