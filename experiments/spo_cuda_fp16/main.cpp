// SPDX-License-Identifier: MIT
// Experiment spo_cuda_fp16: spo_cuda under the official recipe's precision: the UNet and its LoRA adapters in half
// behind FP32 sampling, log-probs and loss, FP32 LoRA masters and dynamic loss scaling; the same configs as `spo`.
#include "spo/cuda.hpp"
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::spm::StepAwarePM, spo::preference::BestWorstCompare, spo::resampler::RandomChild,
                         spo::loss::SpoLoss, spo::experiment::DefaultScheduler,
                         spo::experiment::FashionDiffusionOn<spo::cuda, spo::precision::fp16>>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
