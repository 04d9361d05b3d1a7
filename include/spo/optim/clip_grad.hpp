// SPDX-License-Identifier: MIT
/// @brief Global gradient-norm clipping over all trainable parameters, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "spo/core/error.hpp"

namespace spo::optim {

/// The L2 norm of all trainable gradients together, sqrt(sum_p sum_i g_pi^2), accumulated in double.
template <class Model>
double grad_norm(Model& model) {
  double sum = 0.0;
  model.visit_parameters(
      [&](std::string_view, auto& p) {
        if (!p.trainable) return;
        const auto* g = p.grad.data();
        for (std::int64_t i = 0; i < p.grad.numel(); ++i) sum += static_cast<double>(g[i]) * static_cast<double>(g[i]);
      },
      {});
  return std::sqrt(sum);
}

/*!
  Clips the global gradient norm (torch.nn.utils.clip_grad_norm_ with norm_type = 2):
    total = ||g||_2 over all trainable gradients,  coef = max_norm / (total + 1e-6);
    when coef < 1 every trainable gradient is multiplied by coef (so the norm becomes just under max_norm).
  Returns total (before clipping). A non-finite total (inf/NaN gradients) leaves the gradients unchanged and is
  returned for the caller to act on (skip the step); with error_if_nonfinite it throws spo::error instead.
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
          using T = typename std::remove_cvref_t<decltype(p.grad)>::value_type;
          const T c = static_cast<T>(coef);
          auto* g = p.grad.data();
          for (std::int64_t i = 0; i < p.grad.numel(); ++i) g[i] *= c;
        },
        {});
  }
  return total;
}

}  // namespace spo::optim
