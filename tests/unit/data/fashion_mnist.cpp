// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "spo/data/fashion_mnist.hpp"

using namespace spo;
using namespace spo::data;
namespace fs = std::filesystem;

namespace {
fs::path temp_dir(const char* name) {
  auto d = fs::temp_directory_path() / ("spo_test_fmnist_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
void write_gz(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}
std::vector<std::uint8_t> idx_header(std::uint32_t magic, std::vector<std::uint32_t> dims) {
  std::vector<std::uint8_t> b;
  for (std::uint32_t v : std::vector<std::uint32_t>{magic} ) for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(v >> s));
  for (std::uint32_t v : dims) for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(v >> s));
  return b;
}
/// A valid 3-image split written by hand.
void write_split(const fs::path& dir, std::uint32_t image_magic = 0x803, std::uint32_t n_labels = 3,
                 std::size_t drop_bytes = 0, std::uint8_t label = 1) {
  auto img = idx_header(image_magic, {3, 28, 28});
  for (int i = 0; i < 3 * 28 * 28; ++i) img.push_back(std::uint8_t(i % 256));
  img.resize(img.size() - drop_bytes);
  auto lab = idx_header(0x801, {n_labels});
  for (std::uint32_t i = 0; i < n_labels; ++i) lab.push_back(label);
  write_gz(dir / "t10k-images-idx3-ubyte.gz", img);
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", lab);
}
}  // namespace

TEST_CASE("the Debian package's test split loads: 10000 images, 1000 per class") {
  auto d = load_fashion_mnist(Split::test);
  CHECK(d.count == 10000);
  std::array<int, 10> hist{};
  for (auto l : d.labels) ++hist[l];
  for (int c = 0; c < 10; ++c) CHECK(hist[c] == 1000);
  std::vector<std::int64_t> idx{0, 1};
  auto t = to_tensor<float>(d, idx, 32);
  CHECK(t.shape() == Shape{2, 1, 32, 32});
  CHECK(t[0] == -1.0f);  // padding is background
  auto small = to_tensor<float>(d, idx, 14);
  CHECK(small.shape() == Shape{2, 1, 14, 14});
  CHECK_THROWS_AS(to_tensor<float>(d, idx, 20), spo::error);
}

TEST_CASE("a hand-written valid split loads with exact pixel values") {
  auto dir = temp_dir("valid");
  write_split(dir);
  auto d = load_fashion_mnist(Split::test, dir);
  CHECK(d.count == 3);
  CHECK(d.pixels[300] == 300 % 256);
  std::vector<std::int64_t> idx{0};
  auto t = to_tensor<double>(d, idx, 28);
  CHECK(t[1] == doctest::Approx(1.0 / 127.5 - 1.0));
  fs::remove_all(dir);
}

TEST_CASE("missing, truncated, mislabelled and corrupt files are clear errors") {
  auto dir = temp_dir("bad");
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir), doctest::Contains("does not exist"), spo::error);
  write_split(dir, 0x804);
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir), doctest::Contains("bad magic number"), spo::error);
  write_split(dir, 0x803, 2);
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir), doctest::Contains("labels"), spo::error);
  write_split(dir, 0x803, 3, 100);
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir), doctest::Contains("expected"), spo::error);
  write_split(dir, 0x803, 3, 0, 12);
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir), doctest::Contains("not in 0..9"), spo::error);
  // A gzip stream cut in half.
  write_split(dir);
  const auto p = dir / "t10k-images-idx3-ubyte.gz";
  const auto size = fs::file_size(p);
  fs::resize_file(p, size / 2);
  CHECK_THROWS_AS(load_fashion_mnist(Split::test, dir), spo::error);
  // Garbage bytes instead of gzip data are read as-is by zlib (transparent mode) and then fail the header checks.
  std::ofstream(p, std::ios::binary) << "this is not an IDX file";
  CHECK_THROWS_AS(load_fashion_mnist(Split::test, dir), spo::error);
  fs::remove_all(dir);
}

TEST_CASE("shuffling is a seeded permutation") {
  auto a = shuffled_indices(1000, 7, 0);
  auto b = shuffled_indices(1000, 7, 0);
  auto c = shuffled_indices(1000, 7, 1);
  CHECK(a == b);
  CHECK(a != c);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 1000; ++i) REQUIRE(sorted[i] == i);
  int fixed = 0;
  for (int i = 0; i < 1000; ++i) fixed += a[i] == i;
  CHECK(fixed < 10);
}
