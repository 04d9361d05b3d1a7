// SPDX-License-Identifier: MIT
// libFuzzer harness of the Fashion-MNIST IDX parser (data::parse_fashion_mnist, the gzip-free part of the loader).
// Input layout: byte 0 is the length L of the label buffer, the next L bytes (or all that remain) are the label
// buffer, the rest is the image buffer. A split that parses is converted to tensors as the models use it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "spo/data/fashion_mnist.hpp"

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  const std::size_t label_bytes = std::min<std::size_t>(data[0], input.size());
  const auto labels = input.first(label_bytes);
  const auto images = input.subspan(label_bytes);
  return spo::fuzz::run_one([&] {
    const auto d = spo::data::parse_fashion_mnist(images, labels, "fuzz-images", "fuzz-labels");
    if (d.count == 0) return;
    const std::vector<std::int64_t> idx{0, d.count - 1};
    (void)spo::data::to_tensor<float>(d, idx, 32);  // padded, as in pretraining
    (void)spo::data::to_tensor<float>(d, idx, 14);  // box-downsampled
  });
}
