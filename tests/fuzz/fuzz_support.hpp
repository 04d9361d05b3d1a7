// SPDX-License-Identifier: MIT
/// @brief Shared entry guard of the libFuzzer harnesses: rejections are expected, everything else is a finding.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include "spo/core/error.hpp"

namespace spo::fuzz {

/// True when SPO_FUZZ_STRICT is set (to anything but "0"): then only spo::error counts as a rejection.
inline bool strict() {
  static const bool on = [] {
    const char* v = std::getenv("SPO_FUZZ_STRICT");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return on;
}

/*!
  WHAT THIS REPRESENTS
    The body of LLVMFuzzerTestOneInput: runs `f()` on one input, treating a thrown spo::error or std::exception as
    the reader rejecting the input.
  ENSURES
    - Returns 0 (libFuzzer's "input processed") after f() returns or throws spo::error.
    - Any other std::exception is also a rejection unless SPO_FUZZ_STRICT is set, in which case its type and
      message are printed and the process aborts, so that exceptions escaping the readers' own checks (e.g. from
      nlohmann::json or the standard library) show up as crashes with a reproducer.
    - Crashes, sanitizer reports and non-std exceptions are not caught: libFuzzer records them as findings.
!*/
template <class F>
int run_one(F&& f) {
  try {
    f();
  } catch (const spo::error&) {
  } catch (const std::exception& e) {
    if (strict()) {
      std::fprintf(stderr, "SPO_FUZZ_STRICT: unexpected %s: %s\n", typeid(e).name(), e.what());
      std::abort();
    }
  }
  return 0;
}

}  // namespace spo::fuzz
