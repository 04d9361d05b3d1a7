// SPDX-License-Identifier: MIT
#include "spo/data/fashion_mnist.hpp"

#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>
#include <zlib.h>

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
  for (std::uint32_t v : std::vector<std::uint32_t>{magic})
    for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(v >> s));
  for (std::uint32_t v : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(v >> s));
  return b;
}
doctest::Contains contains(const std::string& s) { return doctest::Contains(s.c_str()); }
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

TEST_CASE("file errors are input errors naming the file, without a source location") {
  auto dir = temp_dir("files");
  const auto images = dir / "t10k-images-idx3-ubyte.gz";
  try {
    load_fashion_mnist(Split::test, dir);
    FAIL("a missing file loaded");
  } catch (const spo::input_error& e) {
    const std::string msg = e.what();
    CHECK(msg.find(images.string()) != std::string::npos);
    CHECK(msg.find("does not exist") != std::string::npos);
    CHECK(msg.find(".hpp") == std::string::npos);
  }
  // A directory where a dataset file should be.
  fs::create_directories(images);
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir), contains(images.string() + " is not a regular file"),
                       spo::input_error);
  fs::remove_all(images);
  // A gzip stream cut in half names the file.
  write_split(dir);
  fs::resize_file(images, fs::file_size(images) / 2);
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir), contains("corrupt gzip stream in " + images.string()),
                       spo::input_error);
  // A bad label names the label file.
  write_split(dir, 0x803, 3, 0, 10);
  CHECK_THROWS_WITH_AS(load_fashion_mnist(Split::test, dir),
                       contains((dir / "t10k-labels-idx1-ubyte.gz").string() + ": label 10 at index 0"),
                       spo::input_error);
  fs::remove_all(dir);
}

namespace {
/// A valid in-memory split of `n` images (pixels i % 256) with labels i % 10.
struct Buffers {
  std::vector<std::uint8_t> images, labels;
};
Buffers valid_buffers(std::uint32_t n) {
  Buffers b{idx_header(0x803, {n, 28, 28}), idx_header(0x801, {n})};
  for (std::uint32_t i = 0; i < n * 28 * 28; ++i) b.images.push_back(std::uint8_t(i % 256));
  for (std::uint32_t i = 0; i < n; ++i) b.labels.push_back(std::uint8_t(i % 10));
  return b;
}
FashionMnist parse(const Buffers& b) { return parse_fashion_mnist(b.images, b.labels, "imgs.idx", "labs.idx"); }
}  // namespace

TEST_CASE("the in-memory parser reads valid buffers exactly") {
  auto b = valid_buffers(12);
  auto d = parse(b);
  CHECK(d.count == 12);
  CHECK(d.rows == 28);
  CHECK(d.cols == 28);
  REQUIRE(d.pixels.size() == 12u * 28 * 28);
  CHECK(d.pixels[1000] == 1000 % 256);
  REQUIRE(d.labels.size() == 12u);
  CHECK(d.labels[11] == 1);
  auto empty = valid_buffers(0);
  CHECK(parse(empty).count == 0);
}

TEST_CASE("the in-memory parser rejects malformed buffers with input errors naming the buffer") {
  auto check_rejects = [](const Buffers& b, const std::string& message) {
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(parse(b), contains(message), spo::input_error);
  };
  const auto valid = valid_buffers(3);
  {
    Buffers b = valid;
    b.images.resize(15);
    check_rejects(b, "imgs.idx: 15 bytes is too short for an IDX header");
  }
  {
    Buffers b = valid;
    b.labels.resize(7);
    check_rejects(b, "labs.idx: 7 bytes is too short for an IDX header");
  }
  {
    Buffers b = valid;
    b.images[3] = 0x01;
    check_rejects(b, "imgs.idx: bad magic number 0x801 (expected 0x803)");
  }
  {
    Buffers b = valid;
    b.labels[3] = 0x03;
    check_rejects(b, "labs.idx: bad magic number 0x803 (expected 0x801)");
  }
  {
    Buffers b = valid;
    b.images[11] = 32;  // rows
    check_rejects(b, "imgs.idx: images are 32x28, expected 28x28");
  }
  {
    Buffers b = valid;
    b.labels[7] = 4;
    b.labels.push_back(0);
    check_rejects(b, "imgs.idx holds 3 images but labs.idx holds 4 labels");
  }
  {
    Buffers b = valid;
    b.images.pop_back();
    check_rejects(b, "imgs.idx: 2367 bytes, expected 2368 for 3 images");
  }
  {
    Buffers b = valid;
    b.images[4] = 0xff;  // a count of 4278190083 images in a 2368-byte buffer
    b.labels[4] = 0xff;
    check_rejects(b, "imgs.idx: 2368 bytes, expected 3354101025088 for 4278190083 images");
  }
  {
    Buffers b = valid;
    b.labels.push_back(0);
    check_rejects(b, "labs.idx: 12 bytes, expected 11 for 3 labels");
  }
  {
    Buffers b = valid;
    b.labels[9] = 255;
    check_rejects(b, "labs.idx: label 255 at index 1 is not in 0..9");
  }
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
