// SPDX-License-Identifier: MIT
/// @brief PNG output of image batches and grids (libpng): encoded in memory, then written with AtomicFileWriter.
#pragma once

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <png.h>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::io {

namespace detail {

/// Where libpng's callbacks write: the encoded bytes, and the first error message. No C++ exception crosses libpng:
/// errors longjmp back to encode_png.
struct PngSink {
  std::vector<std::byte>* out = nullptr;
  char message[256] = {};
};

inline void png_sink_write(png_structp png, png_bytep data, png_size_t length) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  bool out_of_memory = false;
  try {
    sink->out->insert(sink->out->end(), reinterpret_cast<const std::byte*>(data),
                      reinterpret_cast<const std::byte*>(data) + length);
  } catch (const std::bad_alloc&) {
    out_of_memory = true;  // png_error longjmps: not from inside the handler
  }
  if (out_of_memory) png_error(png, "out of memory");
}
inline void png_sink_flush(png_structp) {}
inline void png_sink_error(png_structp png, png_const_charp message) {
  auto* sink = static_cast<PngSink*>(png_get_error_ptr(png));
  std::snprintf(sink->message, sizeof sink->message, "%s", message ? message : "unknown error");
  png_longjmp(png, 1);
}
inline void png_sink_warning(png_structp, png_const_charp) {}

/// Encodes rows into `*sink.out`, with `text` chunks before the image data; returns false with `sink.message` set
/// when libpng fails. No object with a destructor is created between setjmp and a longjmp.
inline bool encode_png(const std::vector<std::uint8_t>& pixels, int width, int height, int channels,
                       std::vector<png_text>& text, PngSink& sink) {
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, &detail::png_sink_error, &detail::png_sink_warning);
  if (!png) {
    std::snprintf(sink.message, sizeof sink.message, "%s", "cannot create the write structure");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    if (!sink.message[0]) std::snprintf(sink.message, sizeof sink.message, "%s", "cannot create the info structure");
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, &sink, &detail::png_sink_write, &detail::png_sink_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!text.empty()) png_set_text(png, info, text.data(), static_cast<int>(text.size()));
  png_write_info(png, info);
  for (int y = 0; y < height; ++y)
    png_write_row(png, const_cast<png_bytep>(pixels.data() + static_cast<std::size_t>(y) * width * channels));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace detail

/// Text chunks of a PNG: (keyword, UTF-8 value) pairs; keywords are 1-79 printable Latin-1 characters.
using PngText = std::vector<std::pair<std::string, std::string>>;

/*!
  Writes 8-bit gray (channels = 1) or RGB (channels = 3) rows of width x height pixels to `path`, with `text` as
  iTXt chunks (the prompt and settings of a generated image, for instance).
  ENSURES
    - The image is encoded in memory first and the file is replaced with AtomicFileWriter: readers see the old
      file or the complete new one, and a failure (libpng, I/O) leaves `path` unchanged and no temporary behind.
    - A libpng failure throws spo::error naming `path` and libpng's message.
!*/
inline void write_png(const std::filesystem::path& path, const std::vector<std::uint8_t>& pixels, int width, int height,
                      int channels, const PngText& text = {}) {
  SPO_CHECK(channels == 1 || channels == 3, "PNG needs 1 or 3 channels, got " << channels);
  SPO_CHECK(width >= 0 && height >= 0, "PNG size " << width << "x" << height);
  SPO_CHECK(pixels.size() == static_cast<std::size_t>(width) * height * channels,
            "PNG buffer of " << pixels.size() << " bytes for " << width << "x" << height << "x" << channels);
  for (const auto& [key, value] : text) {
    const bool printable = std::all_of(key.begin(), key.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return (u >= 32 && u <= 126) || u >= 161;
    });
    SPO_CHECK(!key.empty() && key.size() <= 79 && printable && key.front() != ' ' && key.back() != ' ',
              "PNG text keyword \"" << key << "\" must be 1-79 printable Latin-1 characters without edge spaces");
  }
  std::vector<png_text> chunks(text.size());  // uncompressed UTF-8 iTXt
  for (std::size_t i = 0; i < text.size(); ++i) {
    chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = const_cast<png_charp>(text[i].first.c_str());
    chunks[i].text = const_cast<png_charp>(text[i].second.c_str());
    chunks[i].itxt_length = text[i].second.size();
  }
  std::vector<std::byte> encoded;
  detail::PngSink sink;
  sink.out = &encoded;
  if (!detail::encode_png(pixels, width, height, channels, chunks, sink))
    throw error(path.string() + ": cannot encode PNG: libpng: " + sink.message);
  write_file_atomic(path, encoded);
}

/// Writes images [N, C, H, W] with values in [-1, 1] as a grid of `columns` columns with a 2-pixel border.
template <Scalar T>
void write_image_grid(const std::filesystem::path& path, const Tensor<T, cpu>& images, int columns, int upscale = 1) {
  SPO_CHECK(images.rank() == 4 && (images.size(1) == 1 || images.size(1) == 3),
            "image grid expects [N, 1|3, H, W], got " << images.shape());
  SPO_CHECK(columns >= 1 && upscale >= 1, "columns and upscale must be positive");
  const int n = static_cast<int>(images.size(0)), c = static_cast<int>(images.size(1));
  const int h = static_cast<int>(images.size(2)), w = static_cast<int>(images.size(3));
  const int rows = (n + columns - 1) / columns, border = 2;
  const int cell_h = h * upscale + border, cell_w = w * upscale + border;
  const int height = rows * cell_h + border, width = columns * cell_w + border;
  std::vector<std::uint8_t> px(static_cast<std::size_t>(width) * height * c, 255);
  for (int i = 0; i < n; ++i) {
    const int oy = (i / columns) * cell_h + border, ox = (i % columns) * cell_w + border;
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h * upscale; ++y)
        for (int x = 0; x < w * upscale; ++x) {
          const double v = images[((static_cast<std::int64_t>(i) * c + ch) * h + y / upscale) * w + x / upscale];
          const double u = std::clamp((v + 1.0) * 127.5, 0.0, 255.0);
          px[(static_cast<std::size_t>(oy + y) * width + ox + x) * c + ch] = static_cast<std::uint8_t>(std::lround(u));
        }
  }
  write_png(path, px, width, height, c);
}

}  // namespace spo::io
