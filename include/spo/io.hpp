// SPDX-License-Identifier: MIT
/// @brief Input/output: JSON parsing, crash-safe files, safetensors (fp16/bf16/fp32/fp64; in memory, mapped,
/// sharded), diffusers pipeline folders, single-file checkpoints, LoRA files in every layout, model files, resume
/// checks and run plumbing (progress bar, metrics log, run record).
#pragma once

#include "spo/io/atomic_file.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/config.hpp"
#include "spo/io/diffusers_pipeline.hpp"
#include "spo/io/json.hpp"
#include "spo/io/lora_file.hpp"
#include "spo/io/mapped_safetensors.hpp"
#include "spo/io/metrics_log.hpp"
#include "spo/io/model_files.hpp"
#include "spo/io/plot.hpp"
#include "spo/io/png.hpp"
#include "spo/io/progress.hpp"
#include "spo/io/resume.hpp"
#include "spo/io/run_record.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/io/sharded_safetensors.hpp"
#include "spo/io/single_file_checkpoint.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/io/tensor_store.hpp"
