// SPDX-License-Identifier: MIT
/// @brief SPO_HOST_DEVICE marks functions compiled for both host and CUDA device code.
#pragma once

#if defined(__CUDACC__)
#define SPO_HOST_DEVICE __host__ __device__
#else
#define SPO_HOST_DEVICE
#endif
