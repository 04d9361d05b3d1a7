// SPDX-License-Identifier: MIT
/// @brief One thread pool for the whole library (OpenMP, shared with Eigen and oneDNN), sized to the machine.
#pragma once

#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <thread>

namespace spo {

/// Number of worker threads: SPO_NUM_THREADS if set, else OMP_NUM_THREADS, else the hardware concurrency.
inline int num_threads() {
  static const int n = [] {
    for (const char* var : {"SPO_NUM_THREADS", "OMP_NUM_THREADS"}) {
      if (const char* s = std::getenv(var)) {
        const int v = std::atoi(s);
        if (v > 0) return v;
      }
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }();
  return n;
}

/// Runs f(i) for i in [begin, end) on the pool; serial when the range is shorter than min_per_thread * 2.
template <class F>
void parallel_for(std::int64_t begin, std::int64_t end, F&& f, std::int64_t min_per_thread = 1) {
  const std::int64_t n = end - begin;
  if (n <= 0) return;
  const int threads = num_threads();
  if (threads == 1 || n < 2 * min_per_thread || omp_in_parallel()) {
    for (std::int64_t i = begin; i < end; ++i) f(i);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t i = begin; i < end; ++i) f(i);
}

}  // namespace spo
