// SPDX-License-Identifier: MIT
/// @brief spo::error and its user-facing kinds: SPO_CHECK for internal invariants (file, line and the condition),
/// SPO_EXPECT for bad input (the message only) and SPO_CONFIG_CHECK for config values (key path and message).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace spo {

/// The one exception type of the library; `what()` names the file, line and the violated condition.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Bad input a user can fix (a corrupt file, a bad argument): `what()` is the message alone, with no source location.
class input_error : public error {
 public:
  using error::error;
};

/*!
  WHAT THIS REPRESENTS
    A config value out of its range or inconsistent with another: `key()` is the dotted key path ("train.rounds"),
    `problem()` what is wrong with the value. `what()` is "<key>: <problem>"; io::in_config_file() prefixes the
    config file, giving the form of every config error: "<file>: <key>: <problem>".
!*/
class config_error : public input_error {
 public:
  config_error(std::string key, std::string problem)
      : input_error(key + ": " + problem), key_(std::move(key)), problem_(std::move(problem)) {}
  const std::string& key() const noexcept { return key_; }
  const std::string& problem() const noexcept { return problem_; }

 private:
  std::string key_, problem_;
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
#define SPO_CHECK(cond, ...)                                                      \
  do {                                                                            \
    if (!(cond)) [[unlikely]] {                                                   \
      std::ostringstream spo_check_os_;                                           \
      spo_check_os_ << "" __VA_OPT__(<<) __VA_ARGS__;                             \
      ::spo::detail::throw_check(__FILE__, __LINE__, #cond, spo_check_os_.str()); \
    }                                                                             \
  } while (0)

/// SPO_EXPECT(cond, stream-expression): throws spo::input_error with the message alone when cond is false; for
/// conditions on user input (files, command lines), whose messages must name the input, not the code.
#define SPO_EXPECT(cond, ...)                          \
  do {                                                 \
    if (!(cond)) [[unlikely]] {                        \
      std::ostringstream spo_expect_os_;               \
      spo_expect_os_ << "" __VA_OPT__(<<) __VA_ARGS__; \
      throw ::spo::input_error(spo_expect_os_.str());  \
    }                                                  \
  } while (0)

/// SPO_CONFIG_CHECK(cond, key, stream-expression): throws spo::config_error(key, message) when cond is false, e.g.
///   SPO_CONFIG_CHECK(t.rounds >= 1, "train.rounds", "must be >= 1, got " << t.rounds);
#define SPO_CONFIG_CHECK(cond, key, ...)                      \
  do {                                                        \
    if (!(cond)) [[unlikely]] {                               \
      std::ostringstream spo_config_os_;                      \
      spo_config_os_ << "" __VA_OPT__(<<) __VA_ARGS__;        \
      throw ::spo::config_error((key), spo_config_os_.str()); \
    }                                                         \
  } while (0)
