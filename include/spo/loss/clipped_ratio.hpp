// SPDX-License-Identifier: MIT
/// @brief Pieces shared by the preference losses: stable (log-)sigmoid, the clamped likelihood ratio, batch checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string_view>

#include "spo/core/error.hpp"

namespace spo::loss {

/// log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)): no overflow and full relative precision in both tails
/// (torch.nn.functional.logsigmoid uses the same form).
inline double log_sigmoid(double x) { return std::min(x, 0.0) - std::log1p(std::exp(-std::abs(x))); }

/// sigmoid(x) = 1 / (1 + exp(-x)), evaluated through exp(-|x|) so that it never overflows.
inline double sigmoid(double x) {
  const double e = std::exp(-std::abs(x));
  return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/*!
  WHAT THIS REPRESENTS
    The likelihood ratio of one item under a policy and a reference, clamped to [1 - eps, 1 + eps]:
      ratio       = exp(lp - lp_ref)
      clipped     = clamp(ratio, 1 - eps, 1 + eps)
      log_clipped = log(clipped)
    passes_gradient is torch.clamp's backward mask: the gradient of clipped (and log_clipped) with respect to lp
    flows exactly where 1 - eps <= ratio <= 1 + eps (both ends included), and is zero outside.
!*/
struct ClippedRatio {
  double ratio = 1.0;
  double clipped = 1.0;
  double log_clipped = 0.0;
  bool passes_gradient = true;
};

/*!
  REQUIRES
    - lp, lp_ref finite; 0 < eps < 1
  ENSURES
    - returns ClippedRatio of exp(lp - lp_ref); inside the range log_clipped = lp - lp_ref exactly (torch computes
      log(exp(d)), equal to d up to rounding), and d log_clipped / d lp = 1; outside it is log(1 -+ eps) with zero
      derivative
!*/
inline ClippedRatio clipped_ratio(double lp, double lp_ref, double eps) {
  const double d = lp - lp_ref;
  const double r = std::exp(d);
  const double lo = 1.0 - eps, hi = 1.0 + eps;
  if (r < lo) return {r, lo, std::log(lo), false};
  if (r > hi) return {r, hi, std::log(hi), false};
  return {r, r, d, true};
}

/// One named input of a batched loss, for the error messages of check_items.
struct NamedItems {
  std::string_view name;
  std::span<const double> values;
};

/*!
  ENSURES
    - returns the common length B of all inputs
    - throws spo::error naming `function` when B == 0, when an input's length differs from the first input's
      (naming both inputs and both lengths), or when a value is not finite (naming the input, index and value)
!*/
inline std::size_t check_items(std::string_view function, std::initializer_list<NamedItems> inputs) {
  SPO_CHECK(inputs.size() > 0, function << ": no inputs");
  const NamedItems& first = *inputs.begin();
  const std::size_t b = first.values.size();
  SPO_CHECK(b > 0, function << ": empty batch (" << first.name << " has 0 items), the mean is undefined");
  for (const NamedItems& in : inputs) {
    SPO_CHECK(in.values.size() == b, function << ": " << first.name << " has " << b << " items but " << in.name
                                              << " has " << in.values.size());
    for (std::size_t i = 0; i < b; ++i)
      SPO_CHECK(std::isfinite(in.values[i]),
                function << ": " << in.name << "[" << i << "] = " << in.values[i] << " is not finite");
  }
  return b;
}

}  // namespace spo::loss
