// SPDX-License-Identifier: MIT
/// @brief Word-level tokenizer over a closed prompt vocabulary; unknown words are errors, "" is the unconditional
/// prompt.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "spo/core/error.hpp"

namespace spo::text {

/*!
  WHAT THIS REPRESENTS
    A map from lower-cased words (split on spaces and '/') to ids 1..V-1; id 0 is padding. encode() returns exactly
    max_length ids, padded with 0; the empty prompt is all padding (the unconditional input of classifier-free
    guidance). A prompt longer than max_length or with a word outside the vocabulary is an error naming it.
!*/
class Tokenizer {
 public:
  static constexpr std::int32_t pad_id = 0;

  Tokenizer() = default;
  Tokenizer(const std::vector<std::string>& words, int max_length) : max_length_(max_length) {
    SPO_CHECK(max_length >= 1, "max_length must be positive, got " << max_length);
    words_.push_back("<pad>");
    for (const auto& w : words) {
      const std::string lw = lower(w);
      if (!ids_.contains(lw)) {
        ids_.emplace(lw, static_cast<std::int32_t>(words_.size()));
        words_.push_back(lw);
      }
    }
  }

  int max_length() const { return max_length_; }
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(words_.size()); }
  const std::vector<std::string>& words() const { return words_; }

  static std::vector<std::string> split(std::string_view prompt) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : prompt) {
      if (c == ' ' || c == '/' || c == '\t' || c == ',' || c == '.') {
        if (!cur.empty()) out.push_back(lower(cur));
        cur.clear();
      } else {
        cur.push_back(c);
      }
    }
    if (!cur.empty()) out.push_back(lower(cur));
    return out;
  }

  std::vector<std::int32_t> encode(std::string_view prompt) const {
    const auto words = split(prompt);
    SPO_CHECK(static_cast<int>(words.size()) <= max_length_,
              "prompt '" << prompt << "' has " << words.size() << " words; at most " << max_length_ << " fit");
    std::vector<std::int32_t> ids(static_cast<std::size_t>(max_length_), pad_id);
    for (std::size_t i = 0; i < words.size(); ++i) {
      auto it = ids_.find(words[i]);
      SPO_CHECK(it != ids_.end(), "unknown word '" << words[i] << "' in prompt '" << prompt << "'");
      ids[i] = it->second;
    }
    return ids;
  }

 private:
  static std::string lower(std::string_view s) {
    std::string r(s);
    std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return r;
  }
  std::vector<std::string> words_;
  std::unordered_map<std::string, std::int32_t> ids_;
  int max_length_ = 0;
};

}  // namespace spo::text
