// SPDX-License-Identifier: MIT
/// @brief Global gradient-norm clipping over all trainable parameters, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::optim {

namespace detail {

/*!
  WHAT THIS REPRESENTS
    The trainable gradients that live on a device without host access (spo::cuda), gathered during one visit and
    reduced by a single call of that device's spo::sum_of_squares (optim/cuda/optim_kernels.hpp for spo::cuda, found by
    argument-dependent lookup): one device synchronisation for the whole model, a fixed summation order.
  REQUIRES
    All gathered gradients have one scalar type and one device.
!*/
class DeviceGradients {
 public:
  template <Scalar T, Device D>
  void add(TensorView<const T, D> g) {
    constexpr Reduce r = &reduce_views<T, D>;
    SPO_CHECK(reduce_ == nullptr || reduce_ == r, "grad_norm: device gradients of different scalar types or devices");
    reduce_ = r;
    grads_.emplace_back(static_cast<const void*>(g.data()), g.shape());
  }
  bool empty() const { return grads_.empty(); }
  /// sum over the gathered gradients of sum_i g_i^2, in double (no member is named sum_of_squares, which would
  /// hide the device function from argument-dependent lookup in reduce_views).
  double squared_total() const { return reduce_ ? reduce_(grads_) : 0.0; }

 private:
  using Entry = std::pair<const void*, Shape>;
  using Reduce = double (*)(const std::vector<Entry>&);

  template <Scalar T, Device D>
  static double reduce_views(const std::vector<Entry>& grads) {
    std::vector<TensorView<const T, D>> views;
    views.reserve(grads.size());
    for (const auto& [data, shape] : grads) views.emplace_back(static_cast<const T*>(data), shape);
    return sum_of_squares(std::span<const TensorView<const T, D>>(views));
  }

  std::vector<Entry> grads_;
  Reduce reduce_ = nullptr;
};

}  // namespace detail

/// The L2 norm of all trainable gradients together, sqrt(sum_p sum_i g_pi^2), accumulated in double. Host gradients
/// are summed in visit order; device gradients (spo::cuda) by one deterministic device reduction, added last.
template <class Model>
double grad_norm(Model& model) {
  double sum = 0.0;
  detail::DeviceGradients device;
  model.visit_parameters(
      [&](std::string_view, auto& p) {
        if (!p.trainable) return;
        using G = std::remove_cvref_t<decltype(p.grad)>;
        if constexpr (G::device_type::host_accessible) {
          const auto* g = p.grad.data();
          for (std::int64_t i = 0; i < p.grad.numel(); ++i)
            sum += static_cast<double>(g[i]) * static_cast<double>(g[i]);
        } else {
          device.add(std::as_const(p.grad).view());
        }
      },
      {});
  if (device.empty()) return std::sqrt(sum);
  return std::sqrt(sum + device.squared_total());
}

/*!
  Clips the global gradient norm (torch.nn.utils.clip_grad_norm_ with norm_type = 2):
    total = ||g||_2 over all trainable gradients,  coef = max_norm / (total + 1e-6);
    when coef < 1 every trainable gradient is multiplied by coef (so the norm becomes just under max_norm).
  Returns total (before clipping). A non-finite total (inf/NaN gradients) leaves the gradients unchanged and is
  returned for the caller to act on (skip the step); with error_if_nonfinite it throws spo::error instead.
  Device gradients (spo::cuda) are scaled on the device by spo::scale_inplace (optim/cuda/optim_kernels.hpp) with the
  same coefficient rounded to T, so the per-element result is the CPU's.
!*/
template <class Model>
double clip_grad_norm(Model& model, double max_norm, bool error_if_nonfinite = false) {
  SPO_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got " << max_norm);
  const double total = grad_norm(model);
  if (!std::isfinite(total)) {
    SPO_CHECK(!error_if_nonfinite, "clip_grad_norm: the total gradient norm is " << total);
    return total;
  }
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    model.visit_parameters(
        [&](std::string_view, auto& p) {
          if (!p.trainable) return;
          using G = std::remove_cvref_t<decltype(p.grad)>;
          using T = typename G::value_type;
          const T c = static_cast<T>(coef);
          if constexpr (G::device_type::host_accessible) {
            auto* g = p.grad.data();
            for (std::int64_t i = 0; i < p.grad.numel(); ++i) g[i] *= c;
          } else {
            scale_inplace(p.grad.view(), c);  // the device's overload, by argument-dependent lookup
          }
        },
        {});
  }
  return total;
}

}  // namespace spo::optim
