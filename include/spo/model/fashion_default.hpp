// SPDX-License-Identifier: MIT
/// @brief The embedded default model: Fashion-MNIST prompts, an embedding text encoder and an SD-style UNet.
#pragma once

#include "spo/config/sections.hpp"
#include "spo/model/text_conditioned.hpp"
#include "spo/text/prompts.hpp"
#include "spo/text/text_encoder.hpp"

namespace spo::model {

/// The default text-to-image model type for scalar T, device D and attention projection policy Proj.
template <Scalar T, Device D = cpu, class Proj = nn::Linear<T, D>>
using FashionModel = TextConditioned<UNet2DCondition<T, D, Proj>, text::EmbeddingTextEncoder<T, D>>;

/// Builds a FashionModel (one image channel) from config sections; parameters are torch-default initialised
/// from `gen`.
template <class Model>
Model make_fashion_model(const config::UNetSection& unet, const config::TextSection& text_section, Generator& gen) {
  auto tokenizer = text::fashion_tokenizer(static_cast<int>(text_section.max_length));
  typename Model::unet_type u(config::unet_config(unet, 1));
  u.reset_parameters(gen);
  typename Model::text_encoder_type enc(tokenizer.vocab_size(), text_section.max_length, unet.cross_attention_dim);
  enc.reset_parameters(gen);
  return Model(std::move(u), std::move(enc), std::move(tokenizer));
}

}  // namespace spo::model
