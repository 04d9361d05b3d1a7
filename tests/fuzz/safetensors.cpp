// SPDX-License-Identifier: MIT
// libFuzzer harness of the safetensors reader: io::parse_safetensors on the input bytes, then every tensor decoded
// to float with get<float> (so the F64/F16/BF16/integer conversions run on whatever the header admitted).
#include "spo/io/safetensors.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return spo::fuzz::run_one([&] {
    const auto file =
        spo::io::parse_safetensors(std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz.safetensors");
    for (const auto& entry : file.tensors()) {
      // A tensor the Tensor type cannot hold (rank above Shape::max_rank) is rejected on its own; decode the others.
      spo::fuzz::run_one([&] {
        const auto t = file.get<float>(entry.first);
        volatile float sink = t.numel() > 0 ? t.data()[t.numel() - 1] : 0.0f;
        (void)sink;
      });
    }
  });
}
