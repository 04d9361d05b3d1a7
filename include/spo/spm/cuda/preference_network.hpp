// SPDX-License-Identifier: MIT
/// @brief The preference network on spo::cuda: PreferenceNetwork<T, Policy, cuda> (and its ImageEncoder,
/// PromptEncoder, AdaLNBlock and text::EmbeddingTextEncoder) need no specialisation; they compose the cuda layers and
/// call the spm free functions (adaln_modulate, patch_tokens, embedding_lookup, weighted_token_sum, clip_scores, ...)
/// whose device forms tensor/cuda/spm.hpp provides. This header brings all of them in before the templates.
#pragma once

#include "spo/nn/cuda/activation.hpp"
#include "spo/nn/cuda/attention.hpp"
#include "spo/nn/cuda/conv2d.hpp"
#include "spo/nn/cuda/layer_norm.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/cuda/timestep_embedding.hpp"
#include "spo/tensor/cuda/layout.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/cuda/spm.hpp"
#include "spo/spm/preference_network.hpp"
