// SPDX-License-Identifier: MIT
/// @brief Text conditioning: tokenizer, prompt set, text encoder.
#pragma once

#include "spo/text/prompts.hpp"
#include "spo/text/text_encoder.hpp"
#include "spo/text/tokenizer.hpp"
