// SPDX-License-Identifier: MIT
/// @brief PNG output of image batches and grids (libpng), written to a temporary file and renamed into place.
#pragma once

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::io {

/// Writes 8-bit gray (channels = 1) or RGB (channels = 3) rows of width x height pixels.
inline void write_png(const std::filesystem::path& path, const std::vector<std::uint8_t>& pixels, int width, int height,
                      int channels) {
  SPO_CHECK(channels == 1 || channels == 3, "PNG needs 1 or 3 channels, got " << channels);
  SPO_CHECK(pixels.size() == static_cast<std::size_t>(width) * height * channels,
            "PNG buffer of " << pixels.size() << " bytes for " << width << "x" << height << "x" << channels);
  const std::filesystem::path tmp = path.string() + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  SPO_CHECK(f != nullptr, "cannot open " << tmp << " for writing");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    std::filesystem::remove(tmp);
    SPO_CHECK(false, "libpng failed writing " << path);
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y)
    png_write_row(png, const_cast<png_bytep>(pixels.data() + static_cast<std::size_t>(y) * width * channels));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  const bool ok = std::fflush(f) == 0;
  std::fclose(f);
  SPO_CHECK(ok, "cannot write " << tmp);
  std::filesystem::rename(tmp, path);
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
