// SPDX-License-Identifier: MIT
/// @brief JSON-lines metrics log: one object per line, flushed per record, appended on resume.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"

namespace spo::train {

class MetricsLog {
 public:
  /// Opens `path`; with `truncate_after_step` >= 0, drops records with "step" > that value (records written after
  /// the checkpoint a resumed run restarts from), so that the log of a resumed run equals an uninterrupted one.
  explicit MetricsLog(const std::filesystem::path& path, std::int64_t truncate_after_step = -1) : path_(path) {
    if (truncate_after_step >= 0 && std::filesystem::exists(path)) {
      std::ifstream in(path);
      std::string line, kept;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded()) continue;  // a line torn by a crash
        if (j.contains("step") && j["step"].get<std::int64_t>() > truncate_after_step) continue;
        kept += line + "\n";
      }
      in.close();
      std::ofstream(path, std::ios::trunc) << kept;
    } else if (truncate_after_step < 0) {
      std::ofstream(path, std::ios::trunc).flush();
    }
    out_.open(path, std::ios::app);
    SPO_CHECK(out_.good(), "cannot open metrics log " << path);
  }

  void write(const nlohmann::json& record) {
    out_ << record.dump() << '\n';
    out_.flush();
  }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace spo::train
