// SPDX-License-Identifier: MIT
/// @brief Gradient mode: when disabled (no_grad_guard), forward passes keep nothing for backward.
#pragma once

namespace spo::nn {

namespace detail {
inline bool& grad_mode_flag() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

inline bool grad_enabled() { return detail::grad_mode_flag(); }

/// RAII scope in which forward passes do not cache activations (inference, frozen reference models).
class no_grad_guard {
 public:
  no_grad_guard() : previous_(detail::grad_mode_flag()) { detail::grad_mode_flag() = false; }
  ~no_grad_guard() { detail::grad_mode_flag() = previous_; }
  no_grad_guard(const no_grad_guard&) = delete;
  no_grad_guard& operator=(const no_grad_guard&) = delete;

 private:
  bool previous_;
};

/// RAII scope in which forward passes keep what backward needs, whatever the caller's mode (a checkpointed block's
/// recomputation inside backward).
class enable_grad_guard {
 public:
  enable_grad_guard() : previous_(detail::grad_mode_flag()) { detail::grad_mode_flag() = true; }
  ~enable_grad_guard() { detail::grad_mode_flag() = previous_; }
  enable_grad_guard(const enable_grad_guard&) = delete;
  enable_grad_guard& operator=(const enable_grad_guard&) = delete;

 private:
  bool previous_;
};

}  // namespace spo::nn
