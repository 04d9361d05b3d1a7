// SPDX-License-Identifier: MIT
// libFuzzer harness of the prompt tokenizer: text::fashion_tokenizer with the models' max_length (8, the text
// section of configs/pretrain_base.json) encodes the input as a prompt. An encoding that succeeds must have
// exactly max_length ids, each inside the vocabulary.
#include "spo/text/tokenizer.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "spo/text/prompts.hpp"

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const spo::text::Tokenizer tokenizer = spo::text::fashion_tokenizer(8);
  const std::string_view prompt(reinterpret_cast<const char*>(data), size);
  return spo::fuzz::run_one([&] {
    const auto ids = tokenizer.encode(prompt);
    if (static_cast<int>(ids.size()) != tokenizer.max_length()) std::abort();
    for (const auto id : ids)
      if (id < 0 || id >= tokenizer.vocab_size()) std::abort();
  });
}
