// SPDX-License-Identifier: MIT
// Stable Diffusion text-to-image benchmarks on the CPU (sd_pipeline_benchmarks.hpp).
#include "sd_pipeline_benchmarks.hpp"

namespace {

[[maybe_unused]] const bool registered = (spo::bench::SdPipelineBenchmarks<spo::cpu>::register_all(),
                                          spo::bench::SdPipelineBenchmarks<spo::cpu>::register_winograd(), true);

}  // namespace
