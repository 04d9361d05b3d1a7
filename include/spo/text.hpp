// SPDX-License-Identifier: MIT
/// @brief Text conditioning: the embedded default's word tokenizer, prompt set and text encoder, and CLIP's BPE
/// tokenizer and text encoders of Stable Diffusion checkpoints.
#pragma once

#include "spo/text/clip_text_model.hpp"
#include "spo/text/clip_tokenizer.hpp"
#include "spo/text/prompts.hpp"
#include "spo/text/text_encoder.hpp"
#include "spo/text/tokenizer.hpp"
