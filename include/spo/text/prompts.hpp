// SPDX-License-Identifier: MIT
/// @brief The prompt set of the embedded default: Fashion-MNIST class names in phrase templates.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "spo/data/fashion_mnist.hpp"
#include "spo/text/tokenizer.hpp"

namespace spo::text {

/// Phrase templates; "{}" is replaced by the lower-cased class name. Templates 0-3 are used in pretraining and
/// preference tuning, 4-5 are held out for evaluation, 6-7 are the validation split on which hyperparameters are
/// chosen (neither trained on nor evaluated on). Every template is made of words of the first six, so the
/// vocabulary (fashion_tokenizer) is the same as with the first six alone.
inline constexpr std::array<std::string_view, 8> fashion_templates = {
    "a photo of a {}",   "a picture of a {}",   "an image of a {}",   "a {}",
    "a drawing of a {}", "a picture of one {}", "an image of one {}", "a photo of one {}"};
inline constexpr std::size_t fashion_train_templates = 4;
/// The validation templates (hyperparameter selection).
inline constexpr std::array<int, 2> fashion_validation_templates = {6, 7};

inline std::string class_phrase(int label) {
  std::string s(data::fashion_mnist_classes.at(static_cast<std::size_t>(label)));
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string fashion_prompt(int label, std::size_t template_index) {
  std::string t(fashion_templates.at(template_index));
  const auto at = t.find("{}");
  return t.replace(at, 2, class_phrase(label));
}

/// Every word of every template and class name.
inline Tokenizer fashion_tokenizer(int max_length = 8) {
  std::vector<std::string> words;
  for (auto t : fashion_templates)
    for (auto& w : Tokenizer::split(t))
      if (w != "{}") words.push_back(w);
  for (int c = 0; c < 10; ++c)
    for (auto& w : Tokenizer::split(class_phrase(c))) words.push_back(w);
  return Tokenizer(words, max_length);
}

}  // namespace spo::text
