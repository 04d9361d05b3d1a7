// SPDX-License-Identifier: MIT
/// @brief spo::error and the SPO_CHECK macro: every precondition failure throws with file, line and a message.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace spo {

/// The one exception type of the library; `what()` names the file, line and the violated condition.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] inline void throw_check(const char* file, int line, const char* expr, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": check failed: " << expr;
  if (!msg.empty()) os << ": " << msg;
  throw error(os.str());
}
}  // namespace detail

}  // namespace spo

/// SPO_CHECK(cond, stream-expression): throws spo::error when cond is false, e.g.
///   SPO_CHECK(a.shape() == b.shape(), "shapes " << a.shape() << " and " << b.shape() << " differ");
#define SPO_CHECK(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond)) [[unlikely]] {                                                \
      std::ostringstream spo_check_os_;                                        \
      spo_check_os_ << "" __VA_OPT__(<<) __VA_ARGS__;                          \
      ::spo::detail::throw_check(__FILE__, __LINE__, #cond, spo_check_os_.str()); \
    }                                                                          \
  } while (0)
