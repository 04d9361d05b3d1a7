// SPDX-License-Identifier: MIT
// write_png: the file is encoded in memory and replaced atomically; it decodes to the written pixels.
#include "spo/io/png.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <png.h>

#include "spo/io/atomic_file.hpp"

#include <unistd.h>

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("spo_test_png_" + std::to_string(::getpid()));
  TempDir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), {})); }
};

std::uint32_t big_endian(const std::vector<std::byte>& b, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | std::to_integer<std::uint32_t>(b[at + i]);
  return v;
}

std::vector<std::uint8_t> gradient(int width, int height, int channels) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(width) * height * channels);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>((i * 37) % 251);
  return px;
}

/// Signature and IHDR (width, height, bit depth 8, colour type) of a PNG file, then its pixels decoded by libpng.
std::vector<std::uint8_t> check_and_decode(const fs::path& path, int width, int height, int channels) {
  const auto bytes = read_file_bytes(path);
  REQUIRE(bytes.size() > 8 + 25);
  const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  for (std::size_t i = 0; i < 8; ++i) CHECK(std::to_integer<unsigned char>(bytes[i]) == signature[i]);
  CHECK(big_endian(bytes, 8) == 13);
  CHECK(std::string(reinterpret_cast<const char*>(bytes.data()) + 12, 4) == "IHDR");
  CHECK(big_endian(bytes, 16) == static_cast<std::uint32_t>(width));
  CHECK(big_endian(bytes, 20) == static_cast<std::uint32_t>(height));
  CHECK(std::to_integer<int>(bytes[24]) == 8);
  CHECK(std::to_integer<int>(bytes[25]) == (channels == 1 ? 0 : 2));
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()) != 0);
  image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  std::vector<std::uint8_t> decoded(PNG_IMAGE_SIZE(image));
  REQUIRE(png_image_finish_read(&image, nullptr, decoded.data(), 0, nullptr) != 0);
  return decoded;
}

}  // namespace

TEST_CASE("write_png writes gray and RGB images that decode to the pixels, and replaces an existing file") {
  TempDir dir;
  const fs::path path = dir.path / "image.png";
  const auto rgb = gradient(7, 5, 3);
  write_png(path, rgb, 7, 5, 3);
  CHECK(check_and_decode(path, 7, 5, 3) == rgb);
  const auto gray = gradient(3, 11, 1);
  write_png(path, gray, 3, 11, 1);
  CHECK(check_and_decode(path, 3, 11, 1) == gray);
  CHECK(dir.entries() == 1);
}

TEST_CASE("write_png ignores and keeps a pre-existing <file>.tmp, file or directory") {
  TempDir dir;
  const fs::path path = dir.path / "grid.png";
  write_file_atomic(fs::path(path.string() + ".tmp"), std::string_view("someone else's file"));
  const auto px = gradient(4, 4, 3);
  write_png(path, px, 4, 4, 3);
  CHECK(check_and_decode(path, 4, 4, 3) == px);
  CHECK(read_file_text(path.string() + ".tmp") == "someone else's file");
  const fs::path other = dir.path / "other.png";
  fs::create_directories(other.string() + ".tmp");
  write_png(other, px, 4, 4, 3);
  CHECK(check_and_decode(other, 4, 4, 3) == px);
  CHECK(fs::is_directory(other.string() + ".tmp"));
  CHECK(dir.entries() == 4);
}

TEST_CASE("a failed write_png leaves an existing file unchanged and no temporary behind") {
  TempDir dir;
  const fs::path path = dir.path / "samples.png";
  const auto px = gradient(6, 2, 1);
  write_png(path, px, 6, 2, 1);
  const auto before = read_file_bytes(path);
  // libpng refuses the image (a zero width; a width beyond its default limit of 1000000 pixels).
  CHECK_THROWS_WITH_AS(write_png(path, {}, 0, 2, 1),
                       doctest::Contains((path.string() + ": cannot encode PNG: libpng:").c_str()), error);
  CHECK_THROWS_WITH_AS(write_png(path, std::vector<std::uint8_t>(1000001), 1000001, 1, 1),
                       doctest::Contains("cannot encode PNG"), error);
  CHECK(read_file_bytes(path) == before);
  CHECK(dir.entries() == 1);
  // The temporary cannot be created (its name is taken by a directory): the file stays as it was.
  const fs::path blocked = path.string() + ".tmp." + std::to_string(::getpid());
  fs::create_directories(blocked);
  CHECK_THROWS_WITH_AS(write_png(path, gradient(2, 2, 3), 2, 2, 3), doctest::Contains("cannot create temporary file"),
                       error);
  CHECK(read_file_bytes(path) == before);
  CHECK(fs::is_directory(blocked));
  CHECK(dir.entries() == 2);
  // A missing directory: nothing is created.
  CHECK_THROWS_AS(write_png(dir.path / "absent" / "x.png", px, 6, 2, 1), error);
  CHECK(dir.entries() == 2);
}

TEST_CASE("write_png stores text chunks (UTF-8) that libpng reads back; bad keywords are refused") {
  TempDir dir;
  const fs::path path = dir.path / "generated.png";
  const auto px = gradient(4, 3, 3);
  const PngText text{{"prompt", "une photo d\u2019un chat, 4k"}, {"parameters", "Steps: 20, CFG scale: 5, Seed: 42"}};
  write_png(path, px, 4, 3, 3, text);
  CHECK(check_and_decode(path, 4, 3, 3) == px);
  FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_read_info(png, info);
  png_textp chunks = nullptr;
  const int n = png_get_text(png, info, &chunks, nullptr);
  PngText read;
  for (int i = 0; i < n; ++i) {
    read.emplace_back(chunks[i].key, std::string(chunks[i].text, chunks[i].itxt_length));
    CHECK(chunks[i].compression == PNG_ITXT_COMPRESSION_NONE);
  }
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  CHECK(read == text);
  CHECK_THROWS_WITH_AS(write_png(path, px, 4, 3, 3, {{"", "x"}}), doctest::Contains("keyword"), error);
  CHECK_THROWS_WITH_AS(write_png(path, px, 4, 3, 3, {{std::string(80, 'k'), "x"}}), doctest::Contains("1-79"), error);
}
