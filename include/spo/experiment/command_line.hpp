// SPDX-License-Identifier: MIT
/// @brief The command line every training experiment shares: <config.json> [--resume] [--<length>=N].
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "spo/core/error.hpp"

namespace spo::experiment {

struct CommandLine {
  std::string config;
  bool resume = false;
  std::optional<std::int64_t> length;  ///< --<length_flag>=N: overrides the run length (steps, rounds) of the config
  std::optional<std::uint64_t> seed;   ///< --seed=N: overrides the config's seed (runs over several seeds)
  std::optional<std::string> output;   ///< --output=DIR: overrides the config's output_dir
};

/// Parses `<program> <config.json> [--resume] [--<length_flag>=N] [--seed=N] [--output=DIR]`; returns nullopt (after
/// printing the usage) without a config; throws spo::error for an unknown argument or a bad number.
inline std::optional<CommandLine> parse_command_line(int argc, char** argv, const std::string& length_flag) {
  if (argc < 2 || std::string(argv[1]).starts_with("--")) {
    std::fprintf(stderr, "usage: %s <config.json> [--resume] [--%s=N] [--seed=N] [--output=DIR]\n", argv[0],
                 length_flag.c_str());
    return std::nullopt;
  }
  CommandLine c{argv[1], false, std::nullopt, std::nullopt, std::nullopt};
  const std::string prefix = "--" + length_flag + "=";
  auto number = [](const std::string& a, std::size_t skip, long long min) {
    std::size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(a.substr(skip), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SPO_CHECK(used > 0 && used == a.size() - skip && n >= min,
              "bad argument '" << a << "': expected " << a.substr(0, skip) << "N with N >= " << min);
    return n;
  };
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--resume") {
      c.resume = true;
    } else if (a.starts_with(prefix)) {
      c.length = number(a, prefix.size(), 1);
    } else if (a.starts_with("--seed=")) {
      c.seed = static_cast<std::uint64_t>(number(a, 7, 0));
    } else if (a.starts_with("--output=") && a.size() > 9) {
      c.output = a.substr(9);
    } else {
      throw error("unknown argument '" + a + "'");
    }
  }
  return c;
}

}  // namespace spo::experiment
