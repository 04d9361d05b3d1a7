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
};

/// Parses `<program> <config.json> [--resume] [--<length_flag>=N]`; returns nullopt (after printing the usage) for
/// a wrong argument count; throws spo::error for an unknown argument or a bad N.
inline std::optional<CommandLine> parse_command_line(int argc, char** argv, const std::string& length_flag) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: %s <config.json> [--resume] [--%s=N]\n", argv[0], length_flag.c_str());
    return std::nullopt;
  }
  CommandLine c{argv[1], false, std::nullopt};
  const std::string prefix = "--" + length_flag + "=";
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--resume") {
      c.resume = true;
    } else if (a.starts_with(prefix)) {
      std::size_t used = 0;
      std::int64_t n = 0;
      try {
        n = std::stoll(a.substr(prefix.size()), &used);
      } catch (const std::exception&) {
        used = 0;
      }
      SPO_CHECK(used > 0 && used == a.size() - prefix.size() && n >= 1, "bad argument '" << a << "': expected "
                                                                            << prefix << "N with N >= 1");
      c.length = n;
    } else {
      throw error("unknown argument '" + a + "'");
    }
  }
  return c;
}

}  // namespace spo::experiment
