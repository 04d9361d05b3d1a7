// SPDX-License-Identifier: MIT
/// @brief Data-parallel training: communicators (single process, threads, MPI, NCCL), launch detection, gradient
/// buckets, exchanges between ranks and replica checks.
#pragma once

#include "spo/dist/any_communicator.hpp"
#include "spo/dist/communicator_base.hpp"
#include "spo/dist/concepts.hpp"
#include "spo/dist/exchange.hpp"
#include "spo/dist/gradient_reducer.hpp"
#include "spo/dist/launch.hpp"
#if defined(SPO_WITH_MPI)
#include "spo/dist/mpi_communicator.hpp"
#endif
#include "spo/dist/replica_check.hpp"
#include "spo/dist/single_process.hpp"
#include "spo/dist/thread_group.hpp"
