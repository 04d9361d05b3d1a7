// SPDX-License-Identifier: MIT
/// @brief First of two TUs including the umbrella header: uses the library and exposes its singletons' addresses.
#include "spo/spo.hpp"

#include "odr.hpp"

namespace odr {

const void* allocator_in_a() { return &spo::caching_allocator<spo::cpu>::instance(); }
const void* grad_flag_in_a() { return &spo::nn::detail::grad_mode_flag(); }
bool grad_enabled_in_a() { return spo::nn::grad_enabled(); }

double linear_in_a() {
  spo::nn::Linear<float> linear(2, 1);
  linear.weight().value = spo::Tensor<float>(spo::Shape{1, 2}, {2, 3});
  linear.bias().value = spo::Tensor<float>(spo::Shape{1}, {1});
  return linear.forward(spo::Tensor<float>(spo::Shape{1, 2}, {1, 1}))[0];  // 2 + 3 + 1
}

}  // namespace odr
