// SPDX-License-Identifier: MIT
/// @brief Gradient-ready notifications: a layer reports a parameter whose gradient of the current backward is complete.
#pragma once

#include <functional>

namespace spo::nn {

/// Called with a parameter's address (a Parameter<T, D>*) once its gradient of the current backward is complete.
using GradientReadyHook = std::function<void(const void* parameter)>;

namespace detail {
inline GradientReadyHook*& gradient_ready_hook() {
  thread_local GradientReadyHook* hook = nullptr;
  return hook;
}
}  // namespace detail

/// Reports p's gradient as complete to the hook of the enclosing gradient_ready_scope (none: nothing happens).
/// Layers call it after their last accumulation into a trainable parameter's gradient in backward (LoRA does);
/// a parameter that is never reported is simply treated as ready at the end of backward.
template <class P>
void gradient_ready(const P& p) {
  if (auto* hook = detail::gradient_ready_hook()) (*hook)(&p);
}

/// While alive, gradient_ready() on this thread calls `hook` (data-parallel reducers start their all-reduces then).
class gradient_ready_scope {
 public:
  explicit gradient_ready_scope(GradientReadyHook hook)
      : hook_(std::move(hook)), previous_(detail::gradient_ready_hook()) {
    detail::gradient_ready_hook() = &hook_;
  }
  ~gradient_ready_scope() { detail::gradient_ready_hook() = previous_; }
  gradient_ready_scope(const gradient_ready_scope&) = delete;
  gradient_ready_scope& operator=(const gradient_ready_scope&) = delete;

 private:
  GradientReadyHook hook_;
  GradientReadyHook* previous_;
};

}  // namespace spo::nn
