// SPDX-License-Identifier: MIT
/// @brief Datasets: the validated Fashion-MNIST loader.
#pragma once

#include "spo/data/fashion_mnist.hpp"
