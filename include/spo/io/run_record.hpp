// SPDX-License-Identifier: MIT
/// @brief The run record written beside every experiment's outputs: resolved config, seed, git revision, host.
#pragma once

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "spo/core/parallel.hpp"
#include "spo/io/atomic_file.hpp"

#include <unistd.h>

namespace spo::io {

/// `git rev-parse HEAD` (with "-dirty" when the tree has changes) of the source tree, or "unknown". Read-only:
/// `--no-optional-locks` keeps `git status` from refreshing the index, so a run never takes the index lock of the
/// tree it was built from (a concurrent git command of the user would fail on it).
inline std::string git_revision(const std::filesystem::path& source_dir) {
  auto run = [&](const std::string& cmd) {
    std::string out;
    if (FILE* p = ::popen(("git --no-optional-locks -C '" + source_dir.string() + "' " + cmd + " 2>/dev/null").c_str(),
                          "r")) {
      std::array<char, 256> buf{};
      while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
      ::pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  };
  std::string rev = run("rev-parse HEAD");
  if (rev.empty()) return "unknown";
  if (!run("status --porcelain --untracked-files=no").empty()) rev += "-dirty";
  return rev;
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

/// Writes <dir>/run.json: {experiment, config, seed, git_revision, started_utc, threads, resumed_from_step}.
inline void write_run_record(const std::filesystem::path& dir, const std::string& experiment,
                             const nlohmann::json& config, std::uint64_t seed, const std::filesystem::path& source_dir,
                             std::int64_t resumed_from_step) {
  nlohmann::json r{{"experiment", experiment},
                   {"config", config},
                   {"seed", seed},
                   {"git_revision", git_revision(source_dir)},
                   {"started_utc", utc_now()},
                   {"threads", num_threads()},
                   {"resumed_from_step", resumed_from_step}};
  io::write_file_atomic(dir / "run.json", r.dump(2) + "\n");
}

}  // namespace spo::io
