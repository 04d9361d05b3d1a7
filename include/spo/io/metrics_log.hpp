// SPDX-License-Identifier: MIT
/// @brief JSON-lines metrics log: one object per line, flushed per record, appended on resume.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"

namespace spo::io {

/*!
  WHAT THIS REPRESENTS
    The JSON-lines log of one training run: write() appends one record per line and flushes it.
  ENSURES
    - A fresh run (`truncate_after_step` < 0) starts from an empty file.
    - A resumed run (`truncate_after_step` >= 0) keeps the records with "step" <= truncate_after_step and records
      without a step, and drops those written after the checkpoint the run restarts from, so that the log of a
      resumed run equals an uninterrupted one. Lines that are not a JSON object, or whose "step" is not an integer,
      are the remains of a write torn by a crash and are dropped too. The file is rewritten with
      io::write_file_atomic: a crash during the rewrite leaves the old log or the new one, never a partial one.
    - After construction records are appended to the file.
!*/
class MetricsLog {
 public:
  explicit MetricsLog(const std::filesystem::path& path, std::int64_t truncate_after_step = -1) : path_(path) {
    if (truncate_after_step < 0) {
      io::write_file_atomic(path, std::string_view());
    } else if (std::filesystem::exists(path)) {
      io::write_file_atomic(path, kept_records(io::read_file_text(path), truncate_after_step));
    }
    out_.open(path, std::ios::app);
    if (!out_.good()) throw error(path.string() + ": cannot open metrics log for appending: " + std::strerror(errno));
  }

  void write(const nlohmann::json& record) {
    out_ << record.dump() << '\n';
    out_.flush();
  }

  /// The lines of `text` a resume after `step` keeps (see the class comment), each ending in '\n'.
  static std::string kept_records(std::string_view text, std::int64_t step) {
    std::string kept;
    while (!text.empty()) {
      const std::size_t eol = text.find('\n');
      const std::string_view line = text.substr(0, eol);
      text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;  // a line torn by a crash
      if (const auto it = j.find("step"); it != j.end()) {
        if (!it->is_number_integer()) continue;  // torn as well: no writer stores a non-integer step
        const bool after = it->is_number_unsigned() ? it->get<std::uint64_t>() > static_cast<std::uint64_t>(step)
                                                    : it->get<std::int64_t>() > step;
        if (after) continue;
      }
      kept.append(line).push_back('\n');
    }
    return kept;
  }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace spo::io
