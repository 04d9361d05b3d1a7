// SPDX-License-Identifier: MIT
/// @brief Judges: Fashion-MNIST classifiers and their training.
#pragma once

#include "spo/judge/classifier.hpp"
#include "spo/judge/training.hpp"
