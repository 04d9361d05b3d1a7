// SPDX-License-Identifier: MIT
// doctest main of the CUDA tests. Device tests exit with 77 (CTest SKIP_RETURN_CODE: reported as skipped, never as
// passed) before running any test case when no CUDA device is usable; SPO_CUDA_TEST_HOST_ONLY builds run regardless.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cstdio>

#include <doctest/doctest.h>

#include "spo/tensor/cuda/runtime.hpp"

int main(int argc, char** argv) {
#if !defined(SPO_CUDA_TEST_HOST_ONLY)
  if (!spo::cuda_runtime::cuda_available()) {
    std::printf("no CUDA device: skipped (%s)\n", spo::cuda_runtime::unavailable_reason().c_str());
    return 77;
  }
  std::printf("CUDA device 0: %s\n", spo::cuda_runtime::device_description(0).c_str());
#endif
  doctest::Context context(argc, argv);
  return context.run();
}
