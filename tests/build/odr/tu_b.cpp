// SPDX-License-Identifier: MIT
/// @brief Second TU including the umbrella header. Linking with tu_a.cpp fails if a header defines a non-inline
/// function or variable; the checks below fail if a header-defined singleton is duplicated per TU.
#include <iostream>

#include "spo/spo.hpp"

#include "odr.hpp"

int main() {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    if (!ok) {
      std::cerr << "odr_two_tu: " << what << "\n";
      ++failures;
    }
  };
  check(odr::allocator_in_a() == &spo::caching_allocator<spo::cpu>::instance(),
        "caching_allocator<cpu>::instance() differs between translation units");
  check(odr::grad_flag_in_a() == &spo::nn::detail::grad_mode_flag(),
        "grad mode flag differs between translation units");
  {
    spo::nn::no_grad_guard guard;
    check(!odr::grad_enabled_in_a(), "no_grad_guard in tu_b.cpp is not seen by grad_enabled() in tu_a.cpp");
  }
  check(odr::linear_in_a() == 6.0, "Linear forward in tu_a.cpp");

  spo::nn::Linear<float> linear(2, 1);
  linear.weight().value = spo::Tensor<float>(spo::Shape{1, 2}, {2, 3});
  linear.bias().value = spo::Tensor<float>(spo::Shape{1}, {1});
  check(linear.forward(spo::Tensor<float>(spo::Shape{1, 2}, {1, 1}))[0] == 6.0f, "Linear forward in tu_b.cpp");
  if (failures == 0) std::cout << "odr_two_tu: ok\n";
  return failures == 0 ? 0 : 1;
}
