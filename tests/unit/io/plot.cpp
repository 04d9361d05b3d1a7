// SPDX-License-Identifier: MIT
// Line charts: nice ticks, tick labels, the bitmap font, where series pixels land, and the written PNG (chunk CRCs
// checked with zlib, pixels decoded with libpng).
#include "spo/io/plot.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>
#include <png.h>
#include <zlib.h>

#include "spo/core/rng.hpp"

#include <unistd.h>

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

void check_ticks(const std::vector<double>& got, const std::vector<double>& expected) {
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-12));
}

/// Pixels of exactly colour c inside [left, right) x [top, bottom).
int count_color(const RgbImage& im, Rgb c, int left, int top, int right, int bottom) {
  int n = 0;
  for (int y = std::max(top, 0); y < std::min(bottom, im.height); ++y)
    for (int x = std::max(left, 0); x < std::min(right, im.width); ++x) n += im.at(x, y) == c;
  return n;
}

bool is_dark(Rgb c) { return c.r < 100 && c.g < 100 && c.b < 100; }

std::uint32_t big_endian(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

LineChart two_series() {
  return LineChart{
      "Win rate",
      "step",
      "rate",
      {Series{"spo", {0, 1, 2, 3}, {0.5, 0.6, 0.65, 0.7}}, Series{"dpo", {0, 1, 2, 3}, {0.5, 0.52, 0.55, 0.54}}}};
}

}  // namespace

TEST_CASE("nice_ticks: 1-2-5 steps inside the range") {
  check_ticks(nice_ticks(0, 1), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  check_ticks(nice_ticks(0.13, 0.87), {0.2, 0.4, 0.6, 0.8});
  check_ticks(nice_ticks(0, 10), {0, 2, 4, 6, 8, 10});
  check_ticks(nice_ticks(-1, 0), {-1, -0.8, -0.6, -0.4, -0.2, 0});
  check_ticks(nice_ticks(1000, 5000), {1000, 2000, 3000, 4000, 5000});
  check_ticks(nice_ticks(0.00013, 0.00087), {0.0002, 0.0004, 0.0006, 0.0008});
  check_ticks(nice_ticks(-3.7, 12.2), {-2.5, 0, 2.5, 5, 7.5, 10});  // no 1-2-5 step gives 4..6 ticks here
  CHECK(nice_ticks(-1, 1)[2] == 0.0);                               // an exact zero, not -1e-17
  // Property: over ranges spanning many decades, 3 to 7 (mostly 4 to 6) equally spaced ticks inside [lo, hi], with a
  // step in {1, 2, 2.5, 5} x 10^k.
  const std::uint64_t seed = 2024;
  MESSAGE("nice_ticks property seed " << seed);
  std::vector<double> u(2000);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = rng::uniform_at(seed, 0, i);
  int in_range = 0;
  for (std::size_t i = 0; i < u.size(); i += 2) {
    // Centre up to 1e4 in magnitude, width from 1e-5 to 1e5, at least 1e-6 of the magnitude (a plottable range).
    const double lo = (u[i] - 0.5) * std::pow(10.0, 8 * u[i + 1] - 4);
    const double width = std::max(std::pow(10.0, 10 * u[i] - 5) * (1 + u[i + 1]), 1e-6 * std::abs(lo));
    const double hi = lo + width;
    CAPTURE(lo);
    CAPTURE(hi);
    const std::vector<double> t = nice_ticks(lo, hi);
    REQUIRE(t.size() >= 3);
    REQUIRE(t.size() <= 7);
    in_range += t.size() >= 4 && t.size() <= 6;
    const double measured = (t.back() - t.front()) / static_cast<double>(t.size() - 1);
    const double decade = std::pow(10.0, std::floor(std::log10(measured) + 1e-6));
    double step = 0;
    for (const double m : {1.0, 2.0, 2.5, 5.0})
      if (std::abs(measured / decade - m) < 1e-5) step = m * decade;
    REQUIRE(step > 0);
    const double tol = 1e-9 * step + 1e-13 * std::max(std::abs(lo), std::abs(hi));
    for (std::size_t k = 0; k < t.size(); ++k) {
      CHECK(t[k] >= lo - tol);
      CHECK(t[k] <= hi + tol);
      CHECK(std::abs(t[k] / step - std::round(t[k] / step)) < 1e-6 + 1e-12 * std::abs(t[k] / step));  // multiples
      if (k > 0) CHECK(std::abs(t[k] - t[k - 1] - step) <= tol);
    }
  }
  // Some ranges admit no such step with 4..6 ticks ([0.0002, 76007]: 10^4 gives 7, 2 x 10^4 and 2.5 x 10^4 give 3).
  MESSAGE(in_range << " of " << u.size() / 2 << " ranges got 4 to 6 ticks");
  CHECK(in_range >= static_cast<int>(0.85 * static_cast<double>(u.size() / 2)));
  CHECK_THROWS_AS(nice_ticks(1, 1), spo::error);
  CHECK_THROWS_AS(nice_ticks(1e6, 1e6 + 1e-9), spo::error);  // narrower than 1e-12 of the magnitude
  CHECK_THROWS_AS(nice_ticks(0, std::numeric_limits<double>::quiet_NaN()), spo::error);
}

TEST_CASE("format_tick: the decimals of the step") {
  CHECK(format_tick(0.4, 0.2) == "0.4");
  CHECK(format_tick(1.0, 0.2) == "1.0");
  CHECK(format_tick(0.75, 0.25) == "0.75");
  CHECK(format_tick(3000, 1000) == "3000");
  CHECK(format_tick(-0.0006, 0.0002) == "-0.0006");
  CHECK(format_tick(-0.0, 0.2) == "0.0");
  CHECK(format_tick(-1e-17, 0.5) == "0.0");
  CHECK(format_tick(2.5e-5, 1e-5) == "2.5e-05");
  CHECK(format_tick(3e6, 1e6) == "3e+06");
}

TEST_CASE("bitmap font: glyph rows, widths, the missing-glyph box") {
  // 'A' = .###. #...# #...# ##### #...# #...# #...#
  const std::uint8_t* a = io::detail::glyph('A');
  const std::uint8_t expected_a[9] = {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0, 0};
  for (int r = 0; r < 9; ++r) CHECK(a[r] == expected_a[r]);
  CHECK(io::detail::glyph('g')[8] != 0);  // descender
  CHECK(io::detail::glyph(' ')[3] == 0);
  CHECK(io::detail::text_width("abc", 1) == 17);
  CHECK(io::detail::text_width("abc", 2) == 34);
  CHECK(io::detail::text_width("", 3) == 0);
  CHECK(io::detail::text_width("\xc3\xa9", 1) == 5);  // one UTF-8 character, one cell
  // 'L' at scale 2 at (1, 1): the left column (x 1..2) is set for rows y 1..14, the bottom row y 13..14 for x 1..10.
  io::detail::Canvas c(16, 20, Rgb{255, 255, 255});
  c.text(1, 1, "L", 2, Rgb{0, 0, 0});
  RgbImage im = std::move(c).image();
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 16; ++x) {
      const bool on = (x >= 1 && x <= 2 && y >= 1 && y <= 14) || (y >= 13 && y <= 14 && x >= 1 && x <= 10);
      CAPTURE(x);
      CAPTURE(y);
      CHECK(is_dark(im.at(x, y)) == on);
    }
  // Control characters draw an outlined 5 x 7 box: border set, inside clear.
  io::detail::Canvas b(7, 9, Rgb{255, 255, 255});
  b.text(1, 1, "\x01", 1, Rgb{0, 0, 0});
  RgbImage box = std::move(b).image();
  for (int y = 1; y <= 7; ++y)
    for (int x = 1; x <= 5; ++x) CHECK(is_dark(box.at(x, y)) == (x == 1 || x == 5 || y == 1 || y == 7));
}

TEST_CASE("render_line_chart: series colours land where the data points map") {
  // A single point sits at the centre of its padded range, hence of the plot area.
  const LineChart one{"", "", "", {Series{"p", {3}, {7}}}};
  const RenderedChart r1 = render_line_chart(one, 400, 300);
  const ChartLayout& l1 = r1.layout;
  CHECK(r1.image.width == 400);
  CHECK(r1.image.height == 300);
  CHECK(l1.to_pixel_x(3) == doctest::Approx(0.5 * (l1.plot_left + l1.plot_right)));
  CHECK(l1.to_pixel_y(7) == doctest::Approx(0.5 * (l1.plot_top + l1.plot_bottom)));
  const int cx = (l1.plot_left + l1.plot_right) / 2, cy = (l1.plot_top + l1.plot_bottom) / 2;
  const Rgb c0 = series_color(0);
  CHECK(r1.image.at(cx, cy) == c0);
  const int legend_pixels = count_color(r1.image, c0, l1.legend_left, l1.legend_top, l1.legend_right, l1.legend_bottom);
  CHECK(legend_pixels > 0);
  // Every pixel of the series colour is the marker (within 5 px of the point) or in the legend.
  CHECK(count_color(r1.image, c0, cx - 5, cy - 5, cx + 6, cy + 6) >= 9);
  CHECK(count_color(r1.image, c0, 0, 0, 400, 300) ==
        count_color(r1.image, c0, cx - 5, cy - 5, cx + 6, cy + 6) + legend_pixels);
  CHECK(r1.image.at(0, 0) == (Rgb{255, 255, 255}));

  const LineChart chart = two_series();
  const RenderedChart r = render_line_chart(chart);
  const ChartLayout& l = r.layout;
  CHECK(r.image.width == 640);
  CHECK(r.image.height == 400);
  // The axis ranges contain the data and the ticks lie inside the axis ranges.
  CHECK(l.x_min < 0);
  CHECK(l.x_max > 3);
  CHECK(l.y_min < 0.5);
  CHECK(l.y_max > 0.7);
  CHECK(l.x_ticks.front() >= l.x_min);
  CHECK(l.x_ticks.back() <= l.x_max);
  CHECK(l.y_ticks.size() >= 4);
  // x grows to the right, y upwards.
  CHECK(l.to_pixel_x(3) > l.to_pixel_x(0));
  CHECK(l.to_pixel_y(0.7) < l.to_pixel_y(0.5));
  for (std::size_t k = 0; k < chart.series.size(); ++k) {
    const Series& s = chart.series[k];
    for (std::size_t i = 0; i < s.xs.size(); ++i) {
      const int x = static_cast<int>(std::floor(l.to_pixel_x(s.xs[i])));
      const int y = static_cast<int>(std::floor(l.to_pixel_y(s.ys[i])));
      CAPTURE(k);
      CAPTURE(i);
      // Series 1 is drawn over series 0 where they meet (the shared first point).
      const Rgb expected = (k == 0 && i == 0) ? series_color(1) : series_color(k);
      CHECK(count_color(r.image, expected, x - 2, y - 2, x + 3, y + 3) >= 5);
    }
  }
  // The line of "spo" between its last two points passes the midpoint.
  const int mx = static_cast<int>(std::floor(l.to_pixel_x(2.5))),
            my = static_cast<int>(std::floor(l.to_pixel_y(0.675)));
  CHECK(count_color(r.image, series_color(0), mx - 1, my - 1, mx + 2, my + 2) >= 1);
  // No series colour far from both series: the band of y in [0.3, 0.45) lies below all data and above the axis.
  const int band_top = static_cast<int>(l.to_pixel_y(0.45)) + 8, band_bottom = l.plot_bottom - 1;
  for (int k = 0; k < 2; ++k) {
    int outside_legend = count_color(r.image, series_color(k), l.plot_left, band_top, l.plot_right, band_bottom);
    if (l.legend_bottom > band_top)
      outside_legend -= count_color(r.image, series_color(k), l.legend_left, std::max(band_top, l.legend_top),
                                    l.legend_right, std::min(band_bottom, l.legend_bottom));
    CHECK(outside_legend == 0);
  }
  // The legend shows both colours; the title draws dark pixels above the plot area; the frame is drawn.
  CHECK(count_color(r.image, series_color(0), l.legend_left, l.legend_top, l.legend_right, l.legend_bottom) > 10);
  CHECK(count_color(r.image, series_color(1), l.legend_left, l.legend_top, l.legend_right, l.legend_bottom) > 10);
  CHECK(series_color(0) != series_color(1));
  int title_dark = 0;
  for (int y = 0; y < l.plot_top; ++y)
    for (int x = 0; x < r.image.width; ++x) title_dark += is_dark(r.image.at(x, y));
  CHECK(title_dark > 30);
  CHECK(is_dark(r.image.at(l.plot_left, (l.plot_top + l.plot_bottom) / 2)));
  // More series than colours: the marker changes when the palette repeats.
  CHECK(series_color(10) == series_color(0));
  CHECK(series_marker(10) != series_marker(0));
}

TEST_CASE("render_line_chart: every axis gets 4 to 6 ticks and contains its data") {
  const std::uint64_t seed = 7;
  MESSAGE("axis property seed " << seed);
  for (std::uint64_t i = 0; i < 300; ++i) {
    const double u0 = rng::uniform_at(seed, 0, 3 * i), u1 = rng::uniform_at(seed, 0, 3 * i + 1);
    const double u2 = rng::uniform_at(seed, 0, 3 * i + 2);
    const double lo = u1 < 0.3 ? 0.0 : (u0 - 0.5) * std::pow(10.0, 6 * u1 - 3);  // often starting at 0
    const double hi = lo + std::pow(10.0, 6 * u2 - 3);
    CAPTURE(lo);
    CAPTURE(hi);
    const ChartLayout l = render_line_chart(LineChart{"", "", "", {Series{"s", {lo, hi}, {hi, lo}}}}, 200, 150).layout;
    for (const auto& [ticks, a, b] :
         {std::tuple{&l.x_ticks, l.x_min, l.x_max}, std::tuple{&l.y_ticks, l.y_min, l.y_max}}) {
      CHECK(ticks->size() >= 4);
      CHECK(ticks->size() <= 6);
      CHECK(a < lo);
      CHECK(b > hi);
      CHECK(ticks->front() >= a);
      CHECK(ticks->back() <= b);
    }
  }
  // Data [-5, 1] padded by 4% is [-5.24, 1.24]: steps 2 and 2.5 give 3 ticks, step 1 gives 7; the axis widens to
  // the multiples of 2 around it, [-6, 2], with ticks -6, -4, ..., 2.
  const ChartLayout l = render_line_chart(LineChart{"", "", "", {Series{"s", {0, 1}, {-5, 1}}}}).layout;
  check_ticks(l.y_ticks, {-6, -4, -2, 0, 2});
  CHECK(l.y_min == doctest::Approx(-6.0));
  CHECK(l.y_max == doctest::Approx(2.0));
  // A span at rounding level is drawn like a single value.
  const ChartLayout flat = render_line_chart(LineChart{"", "", "", {Series{"s", {0, 1}, {1e6, 1e6 + 1e-7}}}}).layout;
  CHECK(flat.y_min < 1e6 - 1);
  CHECK(flat.y_max > 1e6 + 1);
}

TEST_CASE("write_line_chart: a valid PNG (signature, IHDR, chunk CRCs) whose pixels are the rendered ones") {
  const fs::path dir = fs::temp_directory_path() / ("spo_test_plot_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path path = dir / "chart.png";
  const LineChart chart = two_series();
  write_line_chart(path, chart, 500, 320);
  std::ifstream f(path, std::ios::binary);
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() > 8 + 25 + 12);
  const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  CHECK(std::equal(signature, signature + 8, bytes.begin()));
  std::vector<std::string> chunks;
  std::size_t pos = 8;
  while (pos + 12 <= bytes.size()) {
    const std::uint32_t length = big_endian(&bytes[pos]);
    REQUIRE(pos + 12 + length <= bytes.size());
    const std::string type(bytes.begin() + static_cast<long>(pos) + 4, bytes.begin() + static_cast<long>(pos) + 8);
    const uLong crc = ::crc32(0L, &bytes[pos + 4], 4 + length);
    CAPTURE(type);
    CHECK(crc == big_endian(&bytes[pos + 8 + length]));
    if (type == "IHDR") {
      REQUIRE(length == 13);
      CHECK(big_endian(&bytes[pos + 8]) == 500);
      CHECK(big_endian(&bytes[pos + 12]) == 320);
      CHECK(bytes[pos + 16] == 8);  // bit depth
      CHECK(bytes[pos + 17] == 2);  // colour type: RGB
    }
    chunks.push_back(type);
    pos += 12 + length;
  }
  CHECK(pos == bytes.size());
  REQUIRE(chunks.size() >= 3);
  CHECK(chunks.front() == "IHDR");
  CHECK(chunks.back() == "IEND");
  // Decode with libpng and compare with the in-memory rendering.
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_file(&image, path.c_str()) != 0);
  image.format = PNG_FORMAT_RGB;
  std::vector<std::uint8_t> decoded(PNG_IMAGE_SIZE(image));
  REQUIRE(png_image_finish_read(&image, nullptr, decoded.data(), 0, nullptr) != 0);
  CHECK(decoded == render_line_chart(chart, 500, 320).image.pixels);
  fs::remove_all(dir);
}

TEST_CASE("render_line_chart rejects invalid charts") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(render_line_chart(LineChart{"t", "x", "y", {}}), spo::error);                          // no series
  CHECK_THROWS_AS(render_line_chart(LineChart{"t", "x", "y", {Series{"empty", {}, {}}}}), spo::error);   // no points
  CHECK_THROWS_AS(render_line_chart(LineChart{"t", "x", "y", {Series{"s", {0, 1}, {1}}}}), spo::error);  // 2 xs, 1 y
  CHECK_THROWS_AS(render_line_chart(LineChart{"t", "x", "y", {Series{"s", {0, 1}, {1, nan}}}}), spo::error);
  CHECK_THROWS_AS(render_line_chart(LineChart{"t", "x", "y", {Series{"s", {inf, 1}, {1, 2}}}}), spo::error);
  CHECK_THROWS_AS(render_line_chart(two_series(), 100, 100), spo::error);  // too small
  CHECK_THROWS_AS(write_line_chart(fs::temp_directory_path() / "spo_no_such_dir" / "x.png", LineChart{}), spo::error);
}
