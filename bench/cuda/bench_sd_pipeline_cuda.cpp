// SPDX-License-Identifier: MIT
// Stable Diffusion text-to-image benchmarks on spo::cuda (sd_pipeline_benchmarks.hpp), the names of the CPU ones:
//   SPO_BENCH_SD_PIPELINE=FOLDER bench_sd_pipeline_cuda [google benchmark flags]
#include "spo/cuda.hpp"

#include "../sd_pipeline_benchmarks.hpp"

int main(int argc, char** argv) {
  spo::bench::SdPipelineBenchmarks<spo::cuda>::register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
