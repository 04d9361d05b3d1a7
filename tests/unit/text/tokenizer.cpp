// SPDX-License-Identifier: MIT
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"
#include "spo/text/prompts.hpp"
#include "spo/text/text_encoder.hpp"

using namespace spo;

TEST_CASE("fashion prompts tokenize; unknown words and long prompts are errors; '' is all padding") {
  auto tok = text::fashion_tokenizer(8);
  CHECK(text::fashion_prompt(0, 0) == "a photo of a t-shirt/top");
  CHECK(text::fashion_prompt(9, 3) == "a ankle boot");
  for (int c = 0; c < 10; ++c)
    for (std::size_t t = 0; t < text::fashion_templates.size(); ++t) {
      auto ids = tok.encode(text::fashion_prompt(c, t));
      CHECK(ids.size() == 8);
      CHECK(ids[0] != text::Tokenizer::pad_id);
    }
  auto a = tok.encode("a photo of a T-shirt/top");
  auto b = tok.encode("a photo of a dress");
  CHECK(a[4] != b[4]);
  CHECK(a[5] != text::Tokenizer::pad_id);  // "top"
  CHECK(tok.encode("") == std::vector<std::int32_t>(8, text::Tokenizer::pad_id));
  CHECK_THROWS_WITH_AS(tok.encode("a photo of a hat"), doctest::Contains("unknown word 'hat'"), spo::error);
  CHECK_THROWS_WITH_AS(tok.encode("a a a a a a a a a"), doctest::Contains("at most 8"), spo::error);
}

TEST_CASE("the validation templates add no word: every prompt has the ids of the six-template vocabulary") {
  std::vector<std::string> words;  // the vocabulary the committed base model was trained with
  for (std::size_t t = 0; t < 6; ++t)
    for (auto& w : text::Tokenizer::split(text::fashion_templates[t]))
      if (w != "{}") words.push_back(w);
  for (int c = 0; c < 10; ++c)
    for (auto& w : text::Tokenizer::split(text::class_phrase(c))) words.push_back(w);
  const text::Tokenizer six(words, 8);
  const auto all = text::fashion_tokenizer(8);
  CHECK(all.vocab_size() == six.vocab_size());
  for (int c = 0; c < 10; ++c)
    for (std::size_t t = 0; t < text::fashion_templates.size(); ++t)
      CHECK(all.encode(text::fashion_prompt(c, t)) == six.encode(text::fashion_prompt(c, t)));
  for (const int t : text::fashion_validation_templates) CHECK(t >= 6);
}

TEST_CASE("text encoder: features are token + position embeddings; gradients accumulate per token") {
  auto tok = text::fashion_tokenizer(8);
  text::EmbeddingTextEncoder<double> enc(tok.vocab_size(), 8, 4);
  Generator g{3, 0};
  enc.reset_parameters(g);
  std::vector<std::vector<std::int32_t>> ids{tok.encode("a dress"), tok.encode("")};
  nn::zero_grad(enc);
  auto f = enc.forward(ids);
  CHECK(f.shape() == Shape{2, 8, 4});
  // Finite-difference check of the embedding gradients.
  Tensor<double>* token = nullptr;
  Tensor<double>* token_grad = nullptr;
  Tensor<double>* pos = nullptr;
  Tensor<double>* pos_grad = nullptr;
  enc.visit_parameters(
      [&](std::string_view name, nn::Parameter<double>& p) {
        if (name == "token_embedding.weight") {
          token = &p.value;
          token_grad = &p.grad;
        } else {
          pos = &p.value;
          pos_grad = &p.grad;
        }
      },
      {});
  REQUIRE(token != nullptr);
  auto r = testing::gradcheck_function(
      [&] { return enc.forward(ids); },
      [&](const Tensor<double>& dy) {
        nn::zero_grad(enc);
        enc.backward(dy);
      },
      {{"token_embedding.weight", token, token_grad}, {"position_embedding.weight", pos, pos_grad}});
  INFO(r.report << r.worst);
  CHECK(r.ok);
}
