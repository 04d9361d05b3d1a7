// SPDX-License-Identifier: MIT
/// @brief Gradient checking against central finite differences in double, for layers and for any function.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "spo/core/rng.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/layer.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::testing {

struct GradcheckOptions {
  /// Step h of the fourth-order central stencil (f(x-2h) - 8f(x-h) + 8f(x+h) - f(x+2h)) / 12h: truncation error
  /// O(h^4), rounding error O(eps |f| / h), so h = 1e-4 keeps both near 1e-12 relative in double.
  double step = 1e-4;
  double tolerance = 1e-6;       ///< bound on the relative error
  double scale_floor = 1e-3;     ///< relative error = |a - n| / max(|a|, |n|, scale_floor)
  std::int64_t max_coords = 48;  ///< coordinates checked per tensor (all when the tensor is smaller)
  std::uint64_t seed = 1234;     ///< seed of the output cotangent and of the coordinate choice
};

struct GradcheckResult {
  bool ok = true;
  double max_rel_error = 0.0;
  std::string worst;   ///< "<tensor>[i]: analytic a, numeric n"
  std::string report;  ///< one line per checked tensor

  explicit operator bool() const { return ok; }
};

/// A tensor whose gradient is checked: its value is perturbed in place, `grad` holds the analytic gradient.
struct GradcheckTarget {
  std::string name;
  Tensor<double, cpu>* value;
  const Tensor<double, cpu>* grad;
};

/*!
  REQUIRES
    - forward() evaluates the function from the current target values and returns its output y
    - backward(dy) runs the analytic backward for cotangent dy after forward(), writing every target's grad
  ENSURES
    - f = sum(y * dy) for a fixed random dy; each checked coordinate compares d f / d value[i] from backward with
      the fourth-order central difference of f in value[i] (see GradcheckOptions::step)
!*/
inline GradcheckResult gradcheck_function(const std::function<Tensor<double, cpu>()>& forward,
                                          const std::function<void(const Tensor<double, cpu>&)>& backward,
                                          const std::vector<GradcheckTarget>& targets, GradcheckOptions opt = {}) {
  Generator gen{opt.seed, 0};
  Tensor<double, cpu> y = forward();
  Tensor<double, cpu> dy = randn<double>(y.shape(), gen);
  backward(dy);
  std::vector<Tensor<double, cpu>> analytic;
  for (const auto& t : targets) {
    SPO_CHECK(t.grad != nullptr && t.grad->shape() == t.value->shape(),
              "gradcheck: no gradient of shape " << t.value->shape() << " for " << t.name);
    analytic.push_back(*t.grad);
  }
  auto objective = [&] {
    nn::no_grad_guard guard;
    auto out = forward();
    return dot<double>(out.view(), dy.view());
  };

  GradcheckResult result;
  std::ostringstream report;
  for (std::size_t ti = 0; ti < targets.size(); ++ti) {
    auto& value = *targets[ti].value;
    const std::int64_t n = value.numel();
    std::vector<std::int64_t> coords;
    if (n <= opt.max_coords) {
      for (std::int64_t i = 0; i < n; ++i) coords.push_back(i);
    } else {
      for (std::int64_t j = 0; j < opt.max_coords; ++j)
        coords.push_back(
            static_cast<std::int64_t>(rng::uniform_at(gen.seed, gen.reserve(1), 0) * static_cast<double>(n)));
    }
    double worst = 0.0;
    for (std::int64_t i : coords) {
      const double saved = value[i];
      auto at = [&](double offset) {
        value[i] = saved + offset;
        return objective();
      };
      const double h = opt.step;
      const double numeric = (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h);
      value[i] = saved;
      const double a = analytic[ti][i];
      const double rel = std::abs(a - numeric) / std::max({std::abs(a), std::abs(numeric), opt.scale_floor});
      worst = std::max(worst, rel);
      if (rel > result.max_rel_error) {
        result.max_rel_error = rel;
        std::ostringstream w;
        w.precision(10);
        w << targets[ti].name << "[" << i << "]: analytic " << a << ", numeric " << numeric;
        result.worst = w.str();
      }
    }
    report << targets[ti].name << " " << value.shape() << ": " << coords.size() << " coords, max rel error " << worst
           << "\n";
  }
  result.ok = result.max_rel_error < opt.tolerance;
  result.report = report.str();
  return result;
}

/// Checks the input gradient and every parameter gradient of a double-precision layer at input x.
template <nn::Layer L>
requires std::same_as<typename L::scalar_type, double> GradcheckResult gradcheck(L& layer, Tensor<double, cpu> x,
                                                                                 GradcheckOptions opt = {}) {
  nn::set_trainable(layer, true);
  Tensor<double, cpu> dx;
  std::vector<GradcheckTarget> targets{{"input", &x, &dx}};
  layer.visit_parameters(
      [&](std::string_view name, nn::Parameter<double, cpu>& p) {
        targets.push_back({std::string(name), &p.value, &p.grad});
      },
      {});
  return gradcheck_function([&] { return layer.forward(x); },
                            [&](const Tensor<double, cpu>& dy) {
                              nn::zero_grad(layer);
                              dx = layer.backward(dy);
                            },
                            targets, opt);
}

}  // namespace spo::testing
