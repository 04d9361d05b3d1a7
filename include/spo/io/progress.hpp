// SPDX-License-Identifier: MIT
/// @brief A terminal progress bar (rate, ETA, user fields) that degrades to periodic lines when not on a TTY.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace spo::io {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::int64_t total, std::int64_t start = 0)
      : label_(std::move(label)),
        total_(total),
        start_(start),
        tty_(::isatty(STDERR_FILENO) != 0),
        t0_(clock::now()),
        last_(t0_) {}

  /// Reports that `done` of `total` are complete; `fields` is appended (e.g. "loss 0.031").
  void update(std::int64_t done, const std::string& fields = {}) {
    const auto now = clock::now();
    const bool final = done >= total_;
    if (!final && now - last_ < (tty_ ? std::chrono::milliseconds(200) : std::chrono::seconds(30))) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - t0_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done - start_) / elapsed : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
    const int width = 30;
    const int filled =
        total_ > 0 ? static_cast<int>(width * static_cast<double>(done) / static_cast<double>(total_)) : width;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "%s%s [%s] %lld/%lld %.2f it/s eta %s %s%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), rate, format_time(eta).c_str(),
                 fields.c_str(), tty_ && !final ? "\x1b[K" : "\n");
    std::fflush(stderr);
  }

  static std::string format_time(double s) {
    char buf[32];
    const long t = static_cast<long>(s + 0.5);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    return buf;
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string label_;
  std::int64_t total_, start_;
  bool tty_;
  clock::time_point t0_, last_;
};

}  // namespace spo::io
