// SPDX-License-Identifier: MIT
// libFuzzer harness of the config readers: io::parse_json (strict: duplicate keys rejected), then
// io::from_json<experiment::SpoConfig> and io::from_json<train::PretrainConfig> on the same document, each followed
// by the section checks that need no files.
#include "spo/io/config.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "spo/experiment/spo_experiment.hpp"
#include "spo/io/json.hpp"
#include "spo/train/pretraining.hpp"

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  return spo::fuzz::run_one([&] {
    const auto j = spo::io::parse_json(text, "fuzz.json");
    spo::fuzz::run_one([&] {
      const auto c = spo::io::from_json<spo::experiment::SpoConfig>(j, "fuzz.json");
      spo::resampler::validate(c.resampler, 20);  // configs/pretrain_base.json's sampling steps
      spo::loss::validate(c.loss);
      spo::train::validate(c.lora, c.train);
      spo::eval::validate(c.evaluation);
      spo::preference::validate(c.rater.weights);
      (void)spo::io::to_json(c);
    });
    spo::fuzz::run_one([&] {
      const auto c = spo::io::from_json<spo::train::PretrainConfig>(j, "fuzz.json");
      spo::train::validate(c);
      (void)spo::io::to_json(c);
    });
  });
}
