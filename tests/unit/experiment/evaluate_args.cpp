// SPDX-License-Identifier: MIT
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/experiment/command_line.hpp"

#include <unistd.h>

using namespace spo;
using namespace spo::experiment;
namespace fs = std::filesystem;

namespace {

/// A scratch directory with one empty file "lora.safetensors", removed at the end of the test.
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("spo_evaluate_args_" + std::to_string(::getpid()));
  fs::path file = dir / "lora.safetensors";
  Scratch() {
    fs::create_directories(dir);
    std::ofstream(file) << "";
  }
  ~Scratch() { fs::remove_all(dir); }
};

std::string error_of(const std::string& argument) {
  try {
    parse_named_file(argument);
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("evaluate's name=lora.safetensors arguments: parsed and checked before any work") {
  Scratch s;
  const std::string file = s.file.string();
  const auto f = parse_named_file("seed1=" + file);
  CHECK(f.name == "seed1");
  CHECK(f.path == s.file);
  CHECK(parse_named_file("spo_k2.v-1=" + file).name == "spo_k2.v-1");
  // The first '=' splits: a path may hold '='.
  fs::path odd = s.dir / "a=b.safetensors";
  std::ofstream(odd) << "";
  CHECK(parse_named_file("x=" + odd.string()).path == odd);

  CHECK(error_of(file) == "'" + file + "': expected name=file");
  CHECK(error_of("=" + file) == "'=" + file + "': the name before '=' is empty");
  CHECK(error_of("a b=" + file) ==
        "'a b=" + file + "': the name 'a b' may hold letters, digits, '_', '-' and '.' only");
  CHECK(error_of("a/b=" + file) ==
        "'a/b=" + file + "': the name 'a/b' may hold letters, digits, '_', '-' and '.' only");
  CHECK(error_of("seed1=") == "'seed1=': the file after '=' is empty");
  CHECK(error_of("seed1=/nonexistent/lora.safetensors") ==
        "'seed1=/nonexistent/lora.safetensors': file not found: /nonexistent/lora.safetensors");
  CHECK(error_of("seed1=" + s.dir.string()) == "'seed1=" + s.dir.string() + "': file not found: " + s.dir.string());
}

TEST_CASE("evaluate's arguments: a bad LoRA argument is a usage error of the parse, before the evaluation") {
  Scratch s;
  std::string config, out;
  std::vector<std::string> lora_args;
  std::vector<NamedFile> loras;
  ArgumentParser p("evaluate", "");
  p.positional("spo_config.json", "", config)
      .positional("output_dir", "", out)
      .positional("name=lora.safetensors", "", lora_args)
      .optional()
      .check([&] {
        for (const auto& a : lora_args) loras.push_back(parse_named_file(a));
      });
  CHECK(p.parse(std::vector<std::string>{"c.json", "o", "a=" + s.file.string(), "b=" + s.file.string()}) ==
        ArgumentParser::Outcome::run);
  CHECK(loras.size() == 2);
  CHECK(loras[1].name == "b");
  const char* argv[] = {"evaluate", "c.json", "o", "a=/nonexistent.safetensors"};
  std::ostringstream o, e;
  CHECK(p.parse_main(4, argv, o, e) == 2);
  CHECK(
      e.str().starts_with("evaluate: error: 'a=/nonexistent.safetensors': file not found: /nonexistent.safetensors\n"
                          "usage: evaluate <spo_config.json> <output_dir> [<name=lora.safetensors>...]\n"));
}
