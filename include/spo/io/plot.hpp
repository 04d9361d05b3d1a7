// SPDX-License-Identifier: MIT
/// @brief Dependency-free line charts (axes, nice ticks, markers, legend, title) rendered to RGB and written as PNG.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/png.hpp"

namespace spo::io {

/// One polyline of a chart: points (xs[i], ys[i]) joined in the given order.
struct Series {
  std::string name;
  std::vector<double> xs;
  std::vector<double> ys;
};

/// A chart of one or more series on shared linear axes.
struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Series> series;
};

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

/// Series colours in order (the Tableau 10 palette); a chart with more series cycles them with other markers.
inline constexpr std::array<Rgb, 10> series_palette{{{31, 119, 180},
                                                     {255, 127, 14},
                                                     {44, 160, 44},
                                                     {214, 39, 40},
                                                     {148, 103, 189},
                                                     {140, 86, 75},
                                                     {227, 119, 194},
                                                     {127, 127, 127},
                                                     {188, 189, 34},
                                                     {23, 190, 207}}};

enum class Marker { circle, square, triangle_up, diamond, triangle_down };
inline constexpr std::array<Marker, 5> series_markers{Marker::circle, Marker::square, Marker::triangle_up,
                                                      Marker::diamond, Marker::triangle_down};
inline Rgb series_color(std::size_t i) { return series_palette[i % series_palette.size()]; }
/// Marker of series i: changes with the palette index, and again each time the palette repeats.
inline Marker series_marker(std::size_t i) {
  return series_markers[(i + i / series_palette.size()) % series_markers.size()];
}

/// 8-bit RGB pixels, row-major, origin top left.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  // [H, W, 3]

  Rgb at(int x, int y) const {
    SPO_CHECK(x >= 0 && y >= 0 && x < width && y < height,
              "pixel (" << x << ", " << y << ") outside " << width << "x" << height);
    const std::size_t i = (static_cast<std::size_t>(y) * width + x) * 3;
    return {pixels[i], pixels[i + 1], pixels[i + 2]};
  }
};

/// Where the plot area lies and how data coordinates map to pixel coordinates (continuous: pixel (i, j) covers
/// [i, i + 1) x [j, j + 1)).
struct ChartLayout {
  int plot_left = 0, plot_top = 0, plot_right = 0, plot_bottom = 0;  // plot area [left, right) x [top, bottom)
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;                 // data range of the plot area
  std::vector<double> x_ticks, y_ticks;
  int legend_left = 0, legend_top = 0, legend_right = 0, legend_bottom = 0;

  double to_pixel_x(double x) const { return plot_left + (x - x_min) / (x_max - x_min) * (plot_right - plot_left); }
  double to_pixel_y(double y) const { return plot_bottom - (y - y_min) / (y_max - y_min) * (plot_bottom - plot_top); }
};

struct RenderedChart {
  RgbImage image;
  ChartLayout layout;
};

/// The multiples of a step in {1, 2, 5} x 10^k (2.5 x 10^k only when nothing else fits) that lie in [lo, hi]:
/// between min_count and max_count of them where such a step exists (else the nearest count), the middle count
/// preferred, ties to the larger step. [0, 1] -> 0, 0.2, ..., 1; [0.13, 0.87] -> 0.2, 0.4, 0.6, 0.8.
inline std::vector<double> nice_ticks(double lo, double hi, int min_count = 4, int max_count = 6) {
  SPO_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
            "nice ticks need a finite range lo < hi, got [" << lo << ", " << hi << "]");
  SPO_CHECK(hi - lo >= 1e-12 * std::max(std::abs(lo), std::abs(hi)),
            "nice ticks need a range wider than 1e-12 of its magnitude, got [" << lo << ", " << hi << "]");
  SPO_CHECK(min_count >= 2 && max_count >= min_count, "tick counts " << min_count << ".." << max_count);
  const double target = 0.5 * (min_count + max_count);
  const int k0 = static_cast<int>(std::floor(std::log10(hi - lo)));
  double best_step = 0, best_score = 1e300;
  long long best_first = 0, best_last = -1;
  for (int k = k0 + 1; k >= k0 - 2; --k) {
    for (const double mantissa : {5.0, 2.5, 2.0, 1.0}) {
      const double step = mantissa * std::pow(10.0, k);
      const auto first = static_cast<long long>(std::ceil(lo / step - 1e-9));
      const auto last = static_cast<long long>(std::floor(hi / step + 1e-9));
      const auto count = static_cast<double>(last - first + 1);
      const double outside = count < min_count ? min_count - count : count > max_count ? count - max_count : 0.0;
      const double score = 100.0 * outside + std::abs(count - target) + (mantissa == 2.5 ? 1.5 : 0);
      if (score < best_score) best_score = score, best_step = step, best_first = first, best_last = last;
    }
  }
  std::vector<double> ticks;
  for (long long i = best_first; i <= best_last; ++i)
    ticks.push_back(i == 0 ? 0.0 : static_cast<double>(i) * best_step);
  return ticks;
}

/// A tick label with the fewest decimals that show the tick step exactly (0.25 -> "0.25", 0.2 -> "0.2", 5 -> "5");
/// %g for magnitudes >= 1e6 or steps < 1e-4.
inline std::string format_tick(double value, double step) {
  char buf[64];
  step = std::abs(step);
  if (std::abs(value) >= 1e6 || (step > 0 && step < 1e-4)) {
    std::snprintf(buf, sizeof buf, "%.4g", value);
  } else {
    int decimals = 0;
    while (decimals < 6 && step > 0 &&
           std::abs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6)
      ++decimals;
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  }
  std::string s = buf;
  if (s.find_first_not_of("-0.") == std::string::npos && s.front() == '-') s.erase(0, 1);  // "-0.0" -> "0.0"
  return s;
}

namespace detail {

/// 5 x 7 bitmap glyphs for ASCII 0x20..0x7E, with two descender rows (9 rows in all); bit 4 is the leftmost column.
inline constexpr std::uint8_t glyph_rows[95][9] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // 0x20 space
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00},  // 0x21 !
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // 0x22 "
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00, 0x00},  // 0x23 #
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00, 0x00},  // 0x24 $
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00},  // 0x25 %
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00, 0x00},  // 0x26 &
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // 0x27 '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00},  // 0x28 (
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00},  // 0x29 )
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00, 0x00},  // 0x2A *
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00, 0x00},  // 0x2B +
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08, 0x00},  // 0x2C ,
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0x00},  // 0x2D -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00},  // 0x2E .
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00},  // 0x2F /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00, 0x00},  // 0x30 0
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 0x31 1
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // 0x32 2
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00, 0x00},  // 0x33 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00, 0x00},  // 0x34 4
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00, 0x00},  // 0x35 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 0x36 6
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00},  // 0x37 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 0x38 8
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00, 0x00},  // 0x39 9
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00, 0x00},  // 0x3A :
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08, 0x00, 0x00},  // 0x3B ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00},  // 0x3C <
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00},  // 0x3D =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00},  // 0x3E >
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00},  // 0x3F ?
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00, 0x00},  // 0x40 @
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00},  // 0x41 A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00, 0x00},  // 0x42 B
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // 0x43 C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00, 0x00},  // 0x44 D
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00, 0x00},  // 0x45 E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // 0x46 F
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00, 0x00},  // 0x47 G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00},  // 0x48 H
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 0x49 I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00, 0x00},  // 0x4A J
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00},  // 0x4B K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00, 0x00},  // 0x4C L
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00},  // 0x4D M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00},  // 0x4E N
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 0x4F O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // 0x50 P
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00, 0x00},  // 0x51 Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00, 0x00},  // 0x52 R
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00, 0x00},  // 0x53 S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // 0x54 T
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 0x55 U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // 0x56 V
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00, 0x00},  // 0x57 W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00, 0x00},  // 0x58 X
    {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // 0x59 Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00, 0x00},  // 0x5A Z
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00, 0x00},  // 0x5B [
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00},  // 0x5C backslash
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00, 0x00},  // 0x5D ]
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // 0x5E ^
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00},  // 0x5F _
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // 0x60 `
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00, 0x00},  // 0x61 a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00, 0x00},  // 0x62 b
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // 0x63 c
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00, 0x00},  // 0x64 d
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00, 0x00},  // 0x65 e
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00, 0x00},  // 0x66 f
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // 0x67 g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // 0x68 h
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 0x69 i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // 0x6A j
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00},  // 0x6B k
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 0x6C l
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x15, 0x15, 0x00, 0x00},  // 0x6D m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // 0x6E n
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 0x6F o
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10},  // 0x70 p
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01},  // 0x71 q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00},  // 0x72 r
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E, 0x00, 0x00},  // 0x73 s
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00},  // 0x74 t
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00, 0x00},  // 0x75 u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // 0x76 v
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00, 0x00},  // 0x77 w
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00, 0x00},  // 0x78 x
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // 0x79 y
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // 0x7A z
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00, 0x00},  // 0x7B {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // 0x7C |
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00, 0x00},  // 0x7D }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00},  // 0x7E ~
};
/// Drawn for characters outside 0x20..0x7E: an outlined box.
inline constexpr std::uint8_t missing_glyph[9] = {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F, 0x00, 0x00};

inline constexpr int glyph_width = 5, glyph_height = 7, glyph_rows_total = 9, glyph_advance = 6;

inline const std::uint8_t* glyph(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x20 && u <= 0x7E ? glyph_rows[u - 0x20] : missing_glyph;
}

/// UTF-8 continuation bytes (10xxxxxx) take no cell: a multi-byte character is drawn once, as the missing glyph.
inline bool takes_cell(char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }

/// Width in pixels of `text` at integer `scale` (glyph_advance per character, no trailing gap).
inline int text_width(std::string_view text, int scale) {
  const auto cells = static_cast<int>(std::count_if(text.begin(), text.end(), takes_cell));
  return cells == 0 ? 0 : (cells * glyph_advance - 1) * scale;
}

/// An RGB raster with alpha-blended drawing, clipped to a rectangle.
class Canvas {
 public:
  Canvas(int width, int height, Rgb background) : width_(width), height_(height), clip_{0, 0, width, height} {
    pixels_.resize(static_cast<std::size_t>(width) * height * 3);
    for (std::size_t i = 0; i < pixels_.size(); i += 3)
      pixels_[i] = background.r, pixels_[i + 1] = background.g, pixels_[i + 2] = background.b;
  }

  void set_clip(int left, int top, int right, int bottom) {
    clip_ = {std::max(0, left), std::max(0, top), std::min(width_, right), std::min(height_, bottom)};
  }
  void reset_clip() { clip_ = {0, 0, width_, height_}; }

  void blend(int x, int y, Rgb c, double alpha) {
    if (x < clip_[0] || y < clip_[1] || x >= clip_[2] || y >= clip_[3] || alpha <= 0) return;
    alpha = std::min(alpha, 1.0);
    std::uint8_t* p = &pixels_[(static_cast<std::size_t>(y) * width_ + x) * 3];
    const auto mix = [alpha](std::uint8_t dst, std::uint8_t src) {
      return static_cast<std::uint8_t>(std::lround(dst + alpha * (static_cast<double>(src) - dst)));
    };
    p[0] = mix(p[0], c.r), p[1] = mix(p[1], c.g), p[2] = mix(p[2], c.b);
  }

  void fill_rect(int left, int top, int right, int bottom, Rgb c) {
    for (int y = top; y < bottom; ++y)
      for (int x = left; x < right; ++x) blend(x, y, c, 1.0);
  }
  void stroke_rect(int left, int top, int right, int bottom, Rgb c) {
    fill_rect(left, top, right, top + 1, c);
    fill_rect(left, bottom - 1, right, bottom, c);
    fill_rect(left, top, left + 1, bottom, c);
    fill_rect(right - 1, top, right, bottom, c);
  }

  /// Anti-aliased segment of the given width: coverage = clamp(width / 2 + 1/2 - distance to the segment, 0, 1),
  /// measured from pixel centres.
  void line(double x0, double y0, double x1, double y1, double width, Rgb c) {
    const double h = 0.5 * width, pad = h + 1.0;
    const int left = std::max(clip_[0], static_cast<int>(std::floor(std::min(x0, x1) - pad)));
    const int right = std::min(clip_[2] - 1, static_cast<int>(std::ceil(std::max(x0, x1) + pad)));
    const int top = std::max(clip_[1], static_cast<int>(std::floor(std::min(y0, y1) - pad)));
    const int bottom = std::min(clip_[3] - 1, static_cast<int>(std::ceil(std::max(y0, y1) + pad)));
    const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int y = top; y <= bottom; ++y)
      for (int x = left; x <= right; ++x) {
        const double px = x + 0.5 - x0, py = y + 0.5 - y0;
        const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
        const double d = std::hypot(px - t * dx, py - t * dy);
        blend(x, y, c, std::clamp(h + 0.5 - d, 0.0, 1.0));
      }
  }

  /// A filled marker of radius r centred at (cx, cy), coverage from 4 x 4 supersampling.
  void marker(double cx, double cy, Marker kind, double r, Rgb c) {
    const auto inside = [kind, r](double dx, double dy) {
      switch (kind) {
        case Marker::circle:
          return dx * dx + dy * dy <= r * r;
        case Marker::square:
          return std::abs(dx) <= 0.85 * r && std::abs(dy) <= 0.85 * r;
        case Marker::diamond:
          return std::abs(dx) + std::abs(dy) <= 1.25 * r;
        case Marker::triangle_up:
          return dy <= 0.75 * r && std::abs(dx) <= 0.6 * (dy + 1.15 * r);
        case Marker::triangle_down:
          return -dy <= 0.75 * r && std::abs(dx) <= 0.6 * (1.15 * r - dy);
      }
      return false;
    };
    const int left = static_cast<int>(std::floor(cx - 1.5 * r - 1)),
              right = static_cast<int>(std::ceil(cx + 1.5 * r + 1));
    const int top = static_cast<int>(std::floor(cy - 1.5 * r - 1)),
              bottom = static_cast<int>(std::ceil(cy + 1.5 * r + 1));
    for (int y = top; y <= bottom; ++y)
      for (int x = left; x <= right; ++x) {
        int hits = 0;
        for (int sy = 0; sy < 4; ++sy)
          for (int sx = 0; sx < 4; ++sx) hits += inside(x + (sx + 0.5) / 4 - cx, y + (sy + 0.5) / 4 - cy);
        blend(x, y, c, hits / 16.0);
      }
  }

  /// Text with its top-left corner at (x, y); vertical = rotated a quarter turn counter-clockwise (reads upwards),
  /// with (x, y) the top-left of the rotated box (glyph_rows_total * scale wide, text_width tall).
  void text(int x, int y, std::string_view s, int scale, Rgb c, bool vertical = false) {
    const int w = text_width(s, scale);
    int cell = -1;
    for (const char ch : s) {
      if (!takes_cell(ch)) continue;
      ++cell;
      const std::uint8_t* g = glyph(ch);
      for (int row = 0; row < glyph_rows_total; ++row)
        for (int col = 0; col < glyph_width; ++col) {
          if (((g[row] >> (glyph_width - 1 - col)) & 1) == 0) continue;
          for (int sy = 0; sy < scale; ++sy)
            for (int sx = 0; sx < scale; ++sx) {
              const int u = (cell * glyph_advance + col) * scale + sx, v = row * scale + sy;
              if (vertical)
                blend(x + v, y + w - 1 - u, c, 1.0);
              else
                blend(x + u, y + v, c, 1.0);
            }
        }
    }
  }

  RgbImage image() && { return RgbImage{width_, height_, std::move(pixels_)}; }

 private:
  int width_, height_;
  std::array<int, 4> clip_;  // left, top, right, bottom (exclusive)
  std::vector<std::uint8_t> pixels_;
};

/// [min, max] of values, padded by 4% of the span on each side (or by max(|v| / 10, 1) for a single value or a span
/// below 1e-9 of the magnitude).
inline std::pair<double, double> padded_range(double lo, double hi) {
  if (hi - lo > 1e-9 * std::max(std::abs(lo), std::abs(hi))) {
    const double pad = 0.04 * (hi - lo);
    return {lo - pad, hi + pad};
  }
  const double pad = std::max(std::abs(lo) * 0.1, 1.0);
  return {lo - pad, hi + pad};
}

inline double tick_step(const std::vector<double>& ticks) { return ticks.size() >= 2 ? ticks[1] - ticks[0] : 1.0; }

/// Ticks for the axis range [lo, hi]; when fewer than 4 fit, the range widens to the enclosing multiples of their
/// step ([0.0002, 76007]: 2e4, 4e4, 6e4 -> 0, 2e4, ..., 8e4).
inline std::vector<double> axis_ticks(double& lo, double& hi) {
  std::vector<double> ticks = nice_ticks(lo, hi);
  if (ticks.size() >= 4) return ticks;
  const double step = tick_step(ticks);
  const double wide_lo = std::min(lo, std::floor(lo / step + 1e-9) * step);
  const double wide_hi = std::max(hi, std::ceil(hi / step - 1e-9) * step);
  std::vector<double> wide = nice_ticks(wide_lo, wide_hi);
  if (wide.size() <= ticks.size()) return ticks;
  lo = std::min(wide_lo, wide.front()), hi = std::max(wide_hi, wide.back());  // ticks i * step round either way
  return wide;
}

}  // namespace detail

/// Renders `chart` as a width x height RGB image: white background, a framed plot area with light grid lines at the
/// nice ticks and their labels, one colour and marker kind per series (lines joining the points, a marker at each),
/// a legend in the corner of the plot area that covers the fewest line pixels, the title above and the axis labels.
inline RenderedChart render_line_chart(const LineChart& chart, int width = 640, int height = 400) {
  SPO_CHECK(width >= 200 && height >= 150 && width <= 16384 && height <= 16384,
            "chart size " << width << "x" << height << " outside 200x150 .. 16384x16384");
  SPO_CHECK(!chart.series.empty(), "line chart '" << chart.title << "' has no series");
  constexpr double inf = std::numeric_limits<double>::infinity();
  double x_lo = inf, x_hi = -inf, y_lo = inf, y_hi = -inf;
  for (const Series& s : chart.series) {
    SPO_CHECK(!s.xs.empty(), "series '" << s.name << "' has no points");
    SPO_CHECK(s.xs.size() == s.ys.size(),
              "series '" << s.name << "' has " << s.xs.size() << " x values and " << s.ys.size() << " y values");
    for (std::size_t i = 0; i < s.xs.size(); ++i) {
      SPO_CHECK(std::isfinite(s.xs[i]) && std::isfinite(s.ys[i]),
                "series '" << s.name << "' point " << i << " (" << s.xs[i] << ", " << s.ys[i] << ") is not finite");
      x_lo = std::min(x_lo, s.xs[i]), x_hi = std::max(x_hi, s.xs[i]);
      y_lo = std::min(y_lo, s.ys[i]), y_hi = std::max(y_hi, s.ys[i]);
    }
  }
  const int scale = std::max(1, std::min(width / 640, height / 400));
  const int title_scale = 2 * scale, line_h = detail::glyph_rows_total * scale, cap_h = detail::glyph_height * scale;
  const int pad = 8 * scale, tick_len = 4 * scale;
  const Rgb black{0, 0, 0}, frame{60, 60, 60}, grid{228, 228, 228}, white{255, 255, 255};

  ChartLayout L;
  std::tie(L.x_min, L.x_max) = detail::padded_range(x_lo, x_hi);
  std::tie(L.y_min, L.y_max) = detail::padded_range(y_lo, y_hi);
  L.x_ticks = detail::axis_ticks(L.x_min, L.x_max);
  L.y_ticks = detail::axis_ticks(L.y_min, L.y_max);
  std::vector<std::string> x_labels, y_labels;
  int y_label_w = 0;
  for (double t : L.x_ticks) x_labels.push_back(format_tick(t, detail::tick_step(L.x_ticks)));
  for (double t : L.y_ticks) {
    y_labels.push_back(format_tick(t, detail::tick_step(L.y_ticks)));
    y_label_w = std::max(y_label_w, detail::text_width(y_labels.back(), scale));
  }

  L.plot_left = pad + (chart.y_label.empty() ? 0 : line_h + pad) + y_label_w + 2 * scale + tick_len;
  L.plot_top = chart.title.empty() ? 2 * pad : pad + detail::glyph_rows_total * title_scale + pad;
  L.plot_right = width - std::max(2 * pad, detail::text_width(x_labels.back(), scale) / 2 + pad);
  L.plot_bottom = height - (pad + (chart.x_label.empty() ? 0 : line_h + pad / 2) + line_h + tick_len + 2 * scale);
  SPO_CHECK(L.plot_right - L.plot_left >= 40 && L.plot_bottom - L.plot_top >= 40,
            "chart " << width << "x" << height << " leaves no room for the plot area");

  detail::Canvas canvas(width, height, white);
  // Grid lines and ticks.
  for (std::size_t i = 0; i < L.x_ticks.size(); ++i) {
    const int x = std::clamp(static_cast<int>(std::floor(L.to_pixel_x(L.x_ticks[i]))), L.plot_left, L.plot_right - 1);
    canvas.fill_rect(x, L.plot_top, x + 1, L.plot_bottom, grid);
    canvas.fill_rect(x, L.plot_bottom, x + 1, L.plot_bottom + tick_len, frame);
    canvas.text(x - detail::text_width(x_labels[i], scale) / 2, L.plot_bottom + tick_len + 2 * scale, x_labels[i],
                scale, black);
  }
  for (std::size_t i = 0; i < L.y_ticks.size(); ++i) {
    const int y = std::clamp(static_cast<int>(std::floor(L.to_pixel_y(L.y_ticks[i]))), L.plot_top, L.plot_bottom - 1);
    canvas.fill_rect(L.plot_left, y, L.plot_right, y + 1, grid);
    canvas.fill_rect(L.plot_left - tick_len, y, L.plot_left, y + 1, frame);
    canvas.text(L.plot_left - tick_len - 2 * scale - detail::text_width(y_labels[i], scale), y - cap_h / 2, y_labels[i],
                scale, black);
  }
  // Series: lines, then markers on top, clipped to the inside of the frame.
  const double line_w = 1.75 * scale;
  canvas.set_clip(L.plot_left + 1, L.plot_top + 1, L.plot_right - 1, L.plot_bottom - 1);
  for (std::size_t k = 0; k < chart.series.size(); ++k) {
    const Series& s = chart.series[k];
    for (std::size_t i = 1; i < s.xs.size(); ++i)
      canvas.line(L.to_pixel_x(s.xs[i - 1]), L.to_pixel_y(s.ys[i - 1]), L.to_pixel_x(s.xs[i]), L.to_pixel_y(s.ys[i]),
                  line_w, series_color(k));
    const double r = (s.xs.size() > 50 ? 2.25 : 3.25) * scale;
    for (std::size_t i = 0; i < s.xs.size(); ++i)
      canvas.marker(L.to_pixel_x(s.xs[i]), L.to_pixel_y(s.ys[i]), series_marker(k), r, series_color(k));
  }
  canvas.reset_clip();
  canvas.stroke_rect(L.plot_left, L.plot_top, L.plot_right, L.plot_bottom, frame);

  // Legend: the corner whose box covers the fewest sampled line points (ties: top right, top left, bottom right,
  // bottom left).
  int name_w = 0;
  for (const Series& s : chart.series) name_w = std::max(name_w, detail::text_width(s.name, scale));
  const int sample_w = 22 * scale, row_h = line_h + 4 * scale, inset = 6 * scale;
  const int box_w = pad + sample_w + pad / 2 + name_w + pad,
            box_h = pad / 2 + row_h * static_cast<int>(chart.series.size()) + pad / 2;
  const std::array<std::array<int, 2>, 4> corners{{{L.plot_right - inset - box_w, L.plot_top + inset},
                                                   {L.plot_left + inset, L.plot_top + inset},
                                                   {L.plot_right - inset - box_w, L.plot_bottom - inset - box_h},
                                                   {L.plot_left + inset, L.plot_bottom - inset - box_h}}};
  std::array<long long, 4> covered{};
  for (const Series& s : chart.series)
    for (std::size_t i = 0; i < s.xs.size(); ++i) {
      const double x0 = L.to_pixel_x(s.xs[i == 0 ? 0 : i - 1]), y0 = L.to_pixel_y(s.ys[i == 0 ? 0 : i - 1]);
      const double x1 = L.to_pixel_x(s.xs[i]), y1 = L.to_pixel_y(s.ys[i]);
      const int steps = std::max(1, static_cast<int>(std::hypot(x1 - x0, y1 - y0) / 2));
      for (int j = 0; j <= steps; ++j) {
        const double x = x0 + (x1 - x0) * j / steps, y = y0 + (y1 - y0) * j / steps;
        for (std::size_t c = 0; c < corners.size(); ++c)
          covered[c] += x >= corners[c][0] - 4 && x < corners[c][0] + box_w + 4 && y >= corners[c][1] - 4 &&
                        y < corners[c][1] + box_h + 4;
      }
    }
  const auto best = static_cast<std::size_t>(std::min_element(covered.begin(), covered.end()) - covered.begin());
  L.legend_left = corners[best][0], L.legend_top = corners[best][1];
  L.legend_right = L.legend_left + box_w, L.legend_bottom = L.legend_top + box_h;
  canvas.fill_rect(L.legend_left, L.legend_top, L.legend_right, L.legend_bottom, white);
  canvas.stroke_rect(L.legend_left, L.legend_top, L.legend_right, L.legend_bottom, Rgb{170, 170, 170});
  for (std::size_t k = 0; k < chart.series.size(); ++k) {
    const int cy = L.legend_top + pad / 2 + row_h * static_cast<int>(k) + row_h / 2;
    const int sx = L.legend_left + pad;
    canvas.line(sx, cy + 0.5, sx + sample_w, cy + 0.5, line_w, series_color(k));
    canvas.marker(sx + 0.5 * sample_w, cy + 0.5, series_marker(k), 3.25 * scale, series_color(k));
    canvas.text(sx + sample_w + pad / 2, cy - cap_h / 2, chart.series[k].name, scale, black);
  }

  // Title and axis labels.
  if (!chart.title.empty())
    canvas.text((width - detail::text_width(chart.title, title_scale)) / 2, pad, chart.title, title_scale, black);
  if (!chart.x_label.empty())
    canvas.text((L.plot_left + L.plot_right - detail::text_width(chart.x_label, scale)) / 2, height - pad - line_h,
                chart.x_label, scale, black);
  if (!chart.y_label.empty())
    canvas.text(pad, (L.plot_top + L.plot_bottom - detail::text_width(chart.y_label, scale)) / 2, chart.y_label, scale,
                black, /*vertical=*/true);
  return RenderedChart{std::move(canvas).image(), std::move(L)};
}

/// Renders `chart` (render_line_chart) and writes it as an 8-bit RGB PNG.
inline void write_line_chart(const std::filesystem::path& path, const LineChart& chart, int width = 640,
                             int height = 400) {
  const RenderedChart r = render_line_chart(chart, width, height);
  write_png(path, r.image.pixels, r.image.width, r.image.height, 3);
}

}  // namespace spo::io
