// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <filesystem>
#include <stdexcept>

#include "spo/io/atomic_file.hpp"

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("spo_test_atomic_" + std::to_string(::getpid()));
  TempDir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), {})); }
};
}  // namespace

TEST_CASE("writes and replaces a file, leaving no temporary behind") {
  TempDir dir;
  const auto file = dir.path / "a.txt";
  write_file_atomic(file, std::string_view("first"));
  CHECK(read_file_text(file) == "first");
  write_file_atomic(file, std::string_view("second, longer"));
  CHECK(read_file_text(file) == "second, longer");
  write_file_atomic(file, std::string_view(""));
  CHECK(read_file_text(file).empty());
  CHECK(dir.entries() == 1);
}

TEST_CASE("an interrupted write leaves the old file untouched and removes the temporary") {
  TempDir dir;
  const auto file = dir.path / "ckpt.bin";
  write_file_atomic(file, std::string_view("old content"));
  try {
    AtomicFileWriter w(file);
    w.write(std::string_view("new partial"));
    CHECK(fs::exists(w.temporary_path()));
    CHECK(w.temporary_path().string() == file.string() + ".tmp." + std::to_string(::getpid()));
    throw std::runtime_error("simulated failure while serialising");
  } catch (const std::runtime_error&) {
  }
  CHECK(read_file_text(file) == "old content");
  CHECK(dir.entries() == 1);
  {
    AtomicFileWriter w(file);
    w.write(std::string_view("abandoned"));
    w.discard();
    CHECK_THROWS_AS(w.write(std::string_view("x")), error);
  }
  CHECK(read_file_text(file) == "old content");
  CHECK(dir.entries() == 1);
}

TEST_CASE("system-call failures throw spo::error naming the path") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(write_file_atomic(dir.path / "no_such_dir" / "f", std::string_view("x")),
                       doctest::Contains("no_such_dir/f.tmp."), error);
  // Renaming a file over a non-empty directory fails: the directory stays, the temporary is removed.
  fs::create_directories(dir.path / "target" / "inner");
  CHECK_THROWS_WITH_AS(write_file_atomic(dir.path / "target", std::string_view("x")), doctest::Contains("rename"), error);
  CHECK(fs::is_directory(dir.path / "target" / "inner"));
  CHECK(dir.entries() == 1);
  CHECK_THROWS_WITH_AS(read_file_bytes(dir.path / "absent"), doctest::Contains("absent"), error);
}
