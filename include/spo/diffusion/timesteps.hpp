// SPDX-License-Identifier: MIT
/// @brief Inference timestep spacings (leading, trailing, linspace) as diffusers' set_timesteps().
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"

namespace spo::diffusion {

/// Table 2 of Lin et al. 2023 ("Common diffusion noise schedules and sample steps are flawed").
enum class TimestepSpacing { leading, trailing, linspace };

inline std::string_view to_string(TimestepSpacing s) {
  switch (s) {
    case TimestepSpacing::leading:
      return "leading";
    case TimestepSpacing::trailing:
      return "trailing";
    case TimestepSpacing::linspace:
      return "linspace";
  }
  return "?";
}

inline TimestepSpacing parse_timestep_spacing(std::string_view s) {
  if (s == "leading") return TimestepSpacing::leading;
  if (s == "trailing") return TimestepSpacing::trailing;
  if (s == "linspace") return TimestepSpacing::linspace;
  SPO_CHECK(false, "unknown timestep spacing '" << s << "' (expected leading, trailing or linspace)");
  return TimestepSpacing::leading;
}

/// Descending inference timesteps; numpy rounding (half to even, std::nearbyint). Ref: DDIMScheduler.set_timesteps.
///   leading:  (arange(N) * (T // N)).round()[::-1] + steps_offset
///   trailing: round(arange(T, 0, -T / N)) - 1              (steps_offset ignored)
///   linspace: round(linspace(0, T - 1, N))[::-1]          (steps_offset ignored)
inline std::vector<std::int64_t> make_timesteps(TimestepSpacing spacing, int num_inference_steps,
                                                int num_train_timesteps, int steps_offset = 0) {
  const int n = num_inference_steps, t = num_train_timesteps;
  SPO_CHECK(n >= 1 && n <= t, "num_inference_steps " << n << " must be in [1, " << t << "]");
  std::vector<std::int64_t> ts;
  switch (spacing) {
    case TimestepSpacing::leading: {
      const std::int64_t ratio = t / n;
      for (int i = n - 1; i >= 0; --i) ts.push_back(i * ratio + steps_offset);
      break;
    }
    case TimestepSpacing::trailing: {
      const double ratio = static_cast<double>(t) / n;
      const auto count = static_cast<std::int64_t>(std::ceil((0.0 - t) / -ratio));  // numpy arange length
      for (std::int64_t i = 0; i < count; ++i)
        ts.push_back(static_cast<std::int64_t>(std::nearbyint(t + static_cast<double>(i) * -ratio)) - 1);
      break;
    }
    case TimestepSpacing::linspace: {
      for (int i = n - 1; i >= 0; --i) {
        // numpy: arange(n) * ((t - 1) / (n - 1)), the last point set to t - 1 exactly
        const double step = n == 1 ? 0.0 : static_cast<double>(t - 1) / (n - 1);
        const double v = (i == n - 1 && n > 1) ? static_cast<double>(t - 1) : static_cast<double>(i) * step;
        ts.push_back(static_cast<std::int64_t>(std::nearbyint(v)));
      }
      break;
    }
  }
  return ts;
}

/// The check of an inference scheduler's step: set_timesteps was called, steps remain, and `t` is the timestep of
/// step `index` (an spo::error naming the scheduler `who` otherwise).
inline void check_current_timestep(std::string_view who, const std::vector<double>& timesteps, int index, double t) {
  SPO_CHECK(!timesteps.empty(), who << ": set_timesteps() must be called first");
  SPO_CHECK(index < static_cast<int>(timesteps.size()),
            who << ": all " << timesteps.size() << " steps are done; call set_timesteps() again");
  SPO_CHECK(t == timesteps[static_cast<std::size_t>(index)], who << ": timestep " << t << " is not the current one ("
                                                                 << timesteps[static_cast<std::size_t>(index)]
                                                                 << ", step " << index << ")");
}

}  // namespace spo::diffusion
