// SPDX-License-Identifier: MIT
#include "spo/io/atomic_file.hpp"

#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <unistd.h>

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
  CHECK_THROWS_WITH_AS(write_file_atomic(dir.path / "target", std::string_view("x")), doctest::Contains("rename"),
                       error);
  CHECK(fs::is_directory(dir.path / "target" / "inner"));
  CHECK(dir.entries() == 1);
  CHECK_THROWS_WITH_AS(read_file_bytes(dir.path / "absent"), doctest::Contains("absent"), error);
}

TEST_CASE("readers reject a directory, a FIFO, a device and a missing path with input_error naming the path") {
  TempDir dir;
  const auto sub = dir.path / "config.json";  // a directory named like a file
  fs::create_directories(sub);
  CHECK_THROWS_WITH_AS(read_file_bytes(sub), (sub.string() + ": is a directory, expected a file").c_str(), input_error);
  CHECK_THROWS_WITH_AS(read_file_text(sub), (sub.string() + ": is a directory, expected a file").c_str(), input_error);
  CHECK_THROWS_WITH_AS(read_file_text("/dev/null"), "/dev/null: not a regular file", input_error);
  const auto fifo = dir.path / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(read_file_bytes(fifo), (fifo.string() + ": not a regular file").c_str(), input_error);
  const auto absent = dir.path / "absent.json";
  CHECK_THROWS_WITH_AS(read_file_text(absent), (absent.string() + ": no such file").c_str(), input_error);
  // Symbolic links are followed: to a file it reads, to a directory or nowhere it is the target's error.
  write_file_atomic(dir.path / "real.txt", std::string_view("content"));
  fs::create_symlink(dir.path / "real.txt", dir.path / "link.txt");
  CHECK(read_file_text(dir.path / "link.txt") == "content");
  fs::create_directory_symlink(sub, dir.path / "link_dir");
  CHECK_THROWS_WITH_AS(read_file_text(dir.path / "link_dir"), doctest::Contains("is a directory"), input_error);
  fs::create_symlink(dir.path / "gone", dir.path / "dangling");
  CHECK_THROWS_WITH_AS(read_file_text(dir.path / "dangling"), doctest::Contains("dangling: no such file"), input_error);
  CHECK_NOTHROW(require_regular_file(dir.path / "real.txt"));
}

TEST_CASE("remove_orphaned_temporaries removes temporaries of dead processes only") {
  TempDir dir;
  // A pid that is certainly dead: a child that has exited and been reaped (pids are not reused this quickly).
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  const std::string dead = std::to_string(child), alive = std::to_string(::getpid());
  for (const std::string& name :
       std::vector<std::string>{"ckpt.safetensors.tmp." + dead, "metrics.jsonl.tmp." + dead,   // orphaned
                                "ckpt.safetensors.tmp." + alive,                               // ours: in progress
                                "a.tmp.", "a.tmp.12x", ".tmp." + dead, "a.tmp.-5", "a.tmp.0",  // not temporaries
                                "a.tmp.99999999999999999999", "plain.txt"})
    write_file_atomic(dir.path / name, std::string_view("x"));
  fs::create_directory(dir.path / ("subdir.tmp." + dead));  // a directory: kept
  fs::create_directory(dir.path / "nested");
  write_file_atomic(dir.path / "nested" / ("deep.tmp." + dead), std::string_view("x"));  // not recursive: kept
  fs::create_symlink(dir.path / "plain.txt", dir.path / ("link.tmp." + dead));           // a link: kept

  auto removed = remove_orphaned_temporaries(dir.path);
  std::sort(removed.begin(), removed.end());
  CHECK(removed ==
        std::vector<fs::path>{dir.path / ("ckpt.safetensors.tmp." + dead), dir.path / ("metrics.jsonl.tmp." + dead)});
  CHECK(!fs::exists(dir.path / ("ckpt.safetensors.tmp." + dead)));
  CHECK(fs::exists(dir.path / ("ckpt.safetensors.tmp." + alive)));
  CHECK(fs::exists(dir.path / "a.tmp.0"));
  CHECK(fs::exists(dir.path / ("subdir.tmp." + dead)));
  CHECK(fs::exists(dir.path / "nested" / ("deep.tmp." + dead)));
  CHECK(fs::is_symlink(dir.path / ("link.tmp." + dead)));
  CHECK(dir.entries() == 11);
  CHECK(remove_orphaned_temporaries(dir.path).empty());
  CHECK(remove_orphaned_temporaries(dir.path / "no_such_dir").empty());
  // Pid 1 exists in every pid namespace (and may belong to another user: EPERM means alive).
  write_file_atomic(dir.path / "init.tmp.1", std::string_view("x"));
  CHECK(remove_orphaned_temporaries(dir.path).empty());
}
