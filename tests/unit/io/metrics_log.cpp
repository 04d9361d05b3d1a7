// SPDX-License-Identifier: MIT
#include "spo/io/metrics_log.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/atomic_file.hpp"

#include <unistd.h>

using namespace spo;
using spo::io::MetricsLog;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("spo_test_metrics_log_" + std::to_string(::getpid()));
  TempDir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), {})); }
};

ino_t inode(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_ino;
}

}  // namespace

TEST_CASE("a fresh log starts empty; records are appended one per line") {
  TempDir dir;
  const fs::path path = dir.path / "metrics.jsonl";
  io::write_file_atomic(path, std::string_view("{\"step\":1}\n"));
  {
    MetricsLog log(path);
    CHECK(io::read_file_text(path).empty());
    log.write({{"step", 1}, {"loss", 0.5}});
    CHECK(io::read_file_text(path) == "{\"loss\":0.5,\"step\":1}\n");  // flushed per record
    log.write({{"step", 2}});
  }
  CHECK(io::read_file_text(path) == "{\"loss\":0.5,\"step\":1}\n{\"step\":2}\n");
  CHECK(dir.entries() == 1);
}

TEST_CASE("a resumed log keeps the records up to the checkpoint, rewritten atomically, and appends after them") {
  TempDir dir;
  const fs::path path = dir.path / "metrics.jsonl";
  io::write_file_atomic(path, std::string_view("{\"step\":1,\"loss\":3}\n"
                                               "{\"event\":\"start\"}\n"
                                               "\n"
                                               "{\"step\":2,\"loss\":2}\n"
                                               "{\"step\":3,\"loss\":1}\n"
                                               "{\"step\":4,\"lo"));  // torn by a crash
  const ino_t before = inode(path);
  {
    MetricsLog log(path, 2);
    // The rewrite replaced the file (a new inode from the atomic rename), it was not truncated in place.
    CHECK(inode(path) != before);
    CHECK(io::read_file_text(path) == "{\"step\":1,\"loss\":3}\n{\"event\":\"start\"}\n{\"step\":2,\"loss\":2}\n");
    log.write({{"step", 3}, {"loss", 0.9}});
  }
  CHECK(io::read_file_text(path) ==
        "{\"step\":1,\"loss\":3}\n{\"event\":\"start\"}\n{\"step\":2,\"loss\":2}\n{\"loss\":0.9,\"step\":3}\n");
  CHECK(dir.entries() == 1);
  // Resuming from step 0 keeps only records without a step; a missing log is created.
  { MetricsLog log(path, 0); }
  CHECK(io::read_file_text(path) == "{\"event\":\"start\"}\n");
  { MetricsLog log(dir.path / "new.jsonl", 5); }
  CHECK(io::read_file_text(dir.path / "new.jsonl").empty());
}

TEST_CASE("lines whose step is not an integer, or that are not objects, count as torn and are dropped") {
  const std::string text =
      "{\"step\":1}\n"
      "{\"step\":\"2\"}\n"  // a string
      "{\"step\":1.5}\n"    // not an integer
      "{\"step\":null}\n"
      "{\"step\":[1]}\n"
      "[1,2]\n"  // not an object
      "7\n"
      "{\"step\":18446744073709551615}\n"  // beyond int64: after any checkpoint
      "{\"step\":-1}\n"
      "{\"step\":2}";  // a complete last record without its newline
  CHECK_NOTHROW(MetricsLog::kept_records(text, 2));
  CHECK(MetricsLog::kept_records(text, 2) == "{\"step\":1}\n{\"step\":-1}\n{\"step\":2}\n");
  CHECK(MetricsLog::kept_records(text, 1) == "{\"step\":1}\n{\"step\":-1}\n");
  TempDir dir;
  const fs::path path = dir.path / "metrics.jsonl";
  io::write_file_atomic(path, text);
  CHECK_NOTHROW(MetricsLog(path, 2));
  CHECK(io::read_file_text(path) == "{\"step\":1}\n{\"step\":-1}\n{\"step\":2}\n");
}

TEST_CASE("a log path that is a directory is an error naming it") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(MetricsLog(dir.path, 3), doctest::Contains("is a directory"), input_error);
  CHECK_THROWS_AS(MetricsLog(dir.path / "absent" / "metrics.jsonl"), error);
}
