// SPDX-License-Identifier: MIT
/// @brief Parameter transfer between two models of the same architecture on any devices (e.g. a CPU-trained
/// model onto spo::cuda and its gradients back), matched by state-dict name.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "spo/core/error.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

namespace detail {

template <Scalar T, Device From, Device To>
void copy_tensor(const Tensor<T, From>& from, Tensor<T, To>& to) {
  if (!(to.shape() == from.shape())) to = Tensor<T, To>::uninitialized(from.shape());
  if constexpr (std::same_as<From, cpu> && std::same_as<To, cuda>)
    copy_to_device<T>(from.view(), to.view());
  else if constexpr (std::same_as<From, cuda> && std::same_as<To, cpu>)
    copy_to_host<T>(from.view(), to.view());
  else
    to = from;
}

/// Every parameter of `from` by name, checked against `to`'s names and shapes, then f(from_param, to_param).
template <class Src, class Dst, class F>
void zip_parameters(Src& from, Dst& to, const char* what, F&& f) {
  using Tf = typename Src::scalar_type;
  using Df = typename Src::device_type;
  std::map<std::string, Parameter<Tf, Df>*, std::less<>> source;
  from.visit_parameters([&](std::string_view name, Parameter<Tf, Df>& p) { source.emplace(std::string(name), &p); },
                        {});
  std::size_t matched = 0;
  to.visit_parameters(
      [&](std::string_view name, auto& q) {
        const auto it = source.find(name);
        SPO_CHECK(it != source.end(), what << ": parameter " << name << " of the destination has no source");
        SPO_CHECK(it->second->shape() == q.shape(), what << ": parameter " << name << " has shape "
                                                         << it->second->shape() << " in the source and " << q.shape()
                                                         << " in the destination");
        f(*it->second, q);
        ++matched;
      },
      {});
  SPO_CHECK(matched == source.size(),
            what << ": the source has " << source.size() << " parameters, the destination " << matched);
}

}  // namespace detail

/// Copies every parameter value (and the trainable flag) of `from` into `to`, matched by name; both models must
/// have the same parameter names and shapes. Gradients of trainable parameters in `to` are zeroed.
template <class Src, class Dst>
void copy_parameters(Src& from, Dst& to) {
  detail::zip_parameters(from, to, "copy_parameters", [](auto& p, auto& q) {
    detail::copy_tensor(p.value, q.value);
    q.set_trainable(p.trainable);
    q.zero_grad();
  });
}

/// Copies the gradient of every trainable parameter of `from` into `to` (e.g. device gradients to the host).
template <class Src, class Dst>
void copy_gradients(Src& from, Dst& to) {
  detail::zip_parameters(from, to, "copy_gradients", [](auto& p, auto& q) {
    if (p.trainable && p.grad.numel() > 0) detail::copy_tensor(p.grad, q.grad);
  });
}

}  // namespace spo::nn
