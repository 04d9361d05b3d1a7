// SPDX-License-Identifier: MIT
/// @brief Fashion-MNIST from the IDX files of Debian's dataset-fashion-mnist package (gzip, validated).
#pragma once

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::data {

/// Where Debian's dataset-fashion-mnist package installs the files.
inline constexpr std::string_view fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

/// Class names in label order (Xiao et al. 2017).
inline constexpr std::array<std::string_view, 10> fashion_mnist_classes = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/// Images [N, 28, 28] as bytes (0 = background) and labels [N] in 0..9.
struct FashionMnist {
  std::int64_t count = 0;
  std::int64_t rows = 28, cols = 28;
  std::vector<std::uint8_t> pixels;  // [count, rows, cols]
  std::vector<std::uint8_t> labels;  // [count]
};

enum class Split { train, test };

namespace detail {

/// Reads a whole gzip file. A missing path, a directory or other non-regular file, and corrupt or truncated streams
/// are input errors naming the file.
inline std::vector<std::uint8_t> read_gzip(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  SPO_EXPECT(std::filesystem::exists(status), "dataset file " << name
                                                              << " does not exist (install Debian's "
                                                                 "dataset-fashion-mnist: tools/setup.sh)");
  SPO_EXPECT(std::filesystem::is_regular_file(status), "dataset file " << name << " is not a regular file");
  errno = 0;
  gzFile f = gzopen(path.c_str(), "rb");
  SPO_EXPECT(f != nullptr,
             "cannot open dataset file " << name << ": " << (errno ? std::strerror(errno) : "out of memory"));
  std::vector<std::uint8_t> out;
  std::array<std::uint8_t, 1 << 16> buf;
  for (;;) {
    const int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      throw input_error("corrupt gzip stream in " + name + ": " + msg);
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  int code = 0;
  const char* msg = gzerror(f, &code);
  const std::string err = code != Z_OK && code != Z_STREAM_END && msg ? msg : "";
  gzclose(f);
  SPO_EXPECT(err.empty(), "corrupt gzip stream in " << name << ": " << err);
  return out;
}

inline std::uint32_t read_be32(std::span<const std::uint8_t> b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
}

}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    The parser of one split from its two IDX buffers, already decompressed: `images` holds magic 0x803, the counts
    N, 28, 28 (big-endian 32-bit) and N*28*28 pixel bytes; `labels` holds magic 0x801, N and N label bytes.
    `image_source` and `label_source` name the buffers (file paths) in messages.
  ENSURES
    - Returns the split with count N, rows = cols = 28, pixels and labels copied from the buffers.
    - A short header, a bad magic number, images other than 28x28, differing counts, a buffer size that does not
      match its header or a label outside 0..9 throws spo::input_error naming the offending source; no input reads
      outside the buffers.
!*/
inline FashionMnist parse_fashion_mnist(std::span<const std::uint8_t> images, std::span<const std::uint8_t> labels,
                                        std::string_view image_source = "<images>",
                                        std::string_view label_source = "<labels>") {
  SPO_EXPECT(images.size() >= 16, image_source << ": " << images.size() << " bytes is too short for an IDX header");
  SPO_EXPECT(labels.size() >= 8, label_source << ": " << labels.size() << " bytes is too short for an IDX header");
  const std::uint32_t image_magic = detail::read_be32(images, 0), label_magic = detail::read_be32(labels, 0);
  SPO_EXPECT(image_magic == 0x803,
             image_source << ": bad magic number 0x" << std::hex << image_magic << " (expected 0x803)");
  SPO_EXPECT(label_magic == 0x801,
             label_source << ": bad magic number 0x" << std::hex << label_magic << " (expected 0x801)");
  FashionMnist d;
  d.count = detail::read_be32(images, 4);
  d.rows = detail::read_be32(images, 8);
  d.cols = detail::read_be32(images, 12);
  SPO_EXPECT(d.rows == 28 && d.cols == 28,
             image_source << ": images are " << d.rows << "x" << d.cols << ", expected 28x28");
  const std::int64_t label_count = detail::read_be32(labels, 4);
  SPO_EXPECT(label_count == d.count, image_source << " holds " << d.count << " images but " << label_source << " holds "
                                                  << label_count << " labels");
  const auto expected_images = static_cast<std::size_t>(16 + d.count * d.rows * d.cols);
  SPO_EXPECT(images.size() == expected_images, image_source << ": " << images.size() << " bytes, expected "
                                                            << expected_images << " for " << d.count << " images");
  const auto expected_labels = static_cast<std::size_t>(8 + label_count);
  SPO_EXPECT(labels.size() == expected_labels, label_source << ": " << labels.size() << " bytes, expected "
                                                            << expected_labels << " for " << label_count << " labels");
  d.pixels.assign(images.begin() + 16, images.end());
  d.labels.assign(labels.begin() + 8, labels.end());
  for (std::size_t i = 0; i < d.labels.size(); ++i)
    SPO_EXPECT(d.labels[i] < 10,
               label_source << ": label " << int(d.labels[i]) << " at index " << i << " is not in 0..9");
  return d;
}

/// Loads and validates one split from `dir`: "<train|t10k>-images-idx3-ubyte.gz" and "...-labels-idx1-ubyte.gz",
/// gunzipped and checked by parse_fashion_mnist(); every error is a spo::input_error naming the file.
inline FashionMnist load_fashion_mnist(Split split, const std::filesystem::path& dir = fashion_mnist_default_dir) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const auto image_path = dir / (prefix + "-images-idx3-ubyte.gz");
  const auto label_path = dir / (prefix + "-labels-idx1-ubyte.gz");
  const auto images = detail::read_gzip(image_path);
  const auto labels = detail::read_gzip(label_path);
  return parse_fashion_mnist(images, labels, image_path.string(), label_path.string());
}

/// Images idx[0..n) as a float tensor [n, 1, resolution, resolution] in [-1, 1]: centred with the background (-1) as
/// padding when resolution >= 28, or box-downsampled by an integer factor when 28 is a multiple of it (14, 7).
template <Scalar T>
Tensor<T, cpu> to_tensor(const FashionMnist& d, std::span<const std::int64_t> idx, std::int64_t resolution) {
  const std::int64_t n = static_cast<std::int64_t>(idx.size());
  const std::int64_t src = d.rows;
  SPO_CHECK(resolution >= src || src % resolution == 0, "resolution " << resolution << " must be >= 28 or divide 28");
  Tensor<T, cpu> out(Shape{n, 1, resolution, resolution});  // [n, 1, R, R]
  for (std::int64_t b = 0; b < n; ++b) {
    SPO_CHECK(idx[b] >= 0 && idx[b] < d.count, "image index " << idx[b] << " outside [0, " << d.count << ")");
    const std::uint8_t* p = d.pixels.data() + idx[b] * src * src;
    T* o = out.data() + b * resolution * resolution;
    if (resolution >= src) {
      const std::int64_t pad = (resolution - src) / 2;
      for (std::int64_t i = 0; i < resolution * resolution; ++i) o[i] = T(-1);
      for (std::int64_t y = 0; y < src; ++y)
        for (std::int64_t x = 0; x < src; ++x)
          o[(y + pad) * resolution + x + pad] = static_cast<T>(p[y * src + x]) / T(127.5) - T(1);
    } else {
      const std::int64_t f = src / resolution;
      for (std::int64_t y = 0; y < resolution; ++y)
        for (std::int64_t x = 0; x < resolution; ++x) {
          double acc = 0;
          for (std::int64_t dy = 0; dy < f; ++dy)
            for (std::int64_t dx = 0; dx < f; ++dx) acc += p[(y * f + dy) * src + x * f + dx];
          o[y * resolution + x] = static_cast<T>(acc / (f * f) / 127.5 - 1.0);
        }
    }
  }
  return out;
}

/// A permutation of [0, n) from a Fisher-Yates shuffle driven by the Philox stream (seed, epoch): the same seed
/// gives the same order on every machine.
inline std::vector<std::int64_t> shuffled_indices(std::int64_t n, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  const std::uint64_t stream = epoch << 32;  // one block range per epoch
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto b = rng::block(seed, stream + static_cast<std::uint64_t>(i));
    const std::uint64_t r = (std::uint64_t{b[0]} << 32 | b[1]) % static_cast<std::uint64_t>(i + 1);
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(r)]);
  }
  return order;
}

}  // namespace spo::data
