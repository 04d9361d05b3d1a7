// SPDX-License-Identifier: MIT
/// @brief The embedded default model: Fashion-MNIST prompts, an embedding text encoder and an SD-style UNet.
#pragma once

#include <cstdint>

#include <boost/hana/define_struct.hpp>

#include "spo/model/text_conditioned.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/text/prompts.hpp"
#include "spo/text/text_encoder.hpp"

namespace spo::model {

/// The text encoder's settings (a config's "text" section).
struct TextSection {
  BOOST_HANA_DEFINE_STRUCT(TextSection, (std::int64_t, max_length));
};

/// The default text-to-image model type for scalar T, device D, attention projection policy Proj and
/// activation-checkpointing policy Checkpoint (nn/checkpoint.hpp). A 16-bit T (spo::cuda) is the UNet's: the
/// embedding text encoder, a table lookup, stays in compute_type_t<T> and its features are rounded into T.
template <StorageScalar T, Device D = cpu, class Proj = nn::Linear<T, D>, class Checkpoint = nn::NoCheckpointing>
using FashionModel =
    TextConditioned<UNet2DCondition<T, D, Proj, Checkpoint>, text::EmbeddingTextEncoder<compute_type_t<T>, D>>;

/// Builds a FashionModel (one image channel; `unet`'s in/out channels are set to 1) from config sections; parameters
/// are torch-default initialised from `gen`.
template <class Model>
Model make_fashion_model(UNetConfig unet, const TextSection& text_section, Generator& gen) {
  auto tokenizer = text::fashion_tokenizer(static_cast<int>(text_section.max_length));
  unet.in_channels = unet.out_channels = 1;
  unet.validate();
  typename Model::unet_type u(unet);
  u.reset_parameters(gen);
  typename Model::text_encoder_type enc(tokenizer.vocab_size(), text_section.max_length, unet.cross_attention_dim);
  enc.reset_parameters(gen);
  return Model(std::move(u), std::move(enc), std::move(tokenizer));
}

}  // namespace spo::model
