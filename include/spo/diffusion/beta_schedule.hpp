// SPDX-License-Identifier: MIT
/// @brief Beta schedules (linear, scaled_linear, squaredcos_cap_v2) reproducing diffusers' float32 tables.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/diffusion/concepts.hpp"

namespace spo::diffusion {

namespace detail {
/// float32 a * b rounded to float. The volatile store keeps the rounding: without it the compiler may fuse the
/// product with a following addition into an FMA (-ffp-contract=fast, GCC's default), changing the last bit.
inline float mul_f32(float a, float b) {
  volatile float p = a * b;
  return p;
}
inline float add_f32(float a, float b) { return static_cast<float>(static_cast<double>(a) + static_cast<double>(b)); }

/// torch.linspace(start, end, n, dtype=float32) on the CPU, bitwise, as torch's AVX2 kernel computes it
/// (ATen RangeFactoriesKernel): step = (end - start) / (n - 1); blocks of 8 lanes, two blocks per iteration, whose
/// base is fma(step, idx, start) in the first half and fma(-step, n - 1 - idx, end) in the second, lane j adding
/// j * step; the remaining n % 16 points use the scalar form start + step * idx (or end - step * (n - 1 - idx)).
/// Other vector widths (AVX-512 builds) differ in the last ulp only.
inline std::vector<float> torch_linspace_f32(float start, float end, int n) {
  SPO_CHECK(n >= 1, "linspace needs at least one point, got " << n);
  std::vector<float> v(static_cast<std::size_t>(n));
  if (n == 1) {
    v[0] = start;
    return v;
  }
  constexpr int lanes = 8;
  const float step = static_cast<float>(static_cast<double>(end - start) / static_cast<double>(n - 1));
  const int half = n / 2;
  const int vectorized = n / (2 * lanes) * (2 * lanes);
  int idx = 0;
  for (; idx < vectorized; idx += lanes) {
    const float base = idx < half ? std::fma(step, static_cast<float>(idx), start)
                                  : std::fma(-step, static_cast<float>(n - 1 - idx), end);
    for (int j = 0; j < lanes; ++j)
      v[static_cast<std::size_t>(idx + j)] = add_f32(base, mul_f32(static_cast<float>(j), step));
  }
  for (; idx < n; ++idx)
    v[static_cast<std::size_t>(idx)] = idx < half ? add_f32(start, mul_f32(step, static_cast<float>(idx)))
                                                  : add_f32(end, -mul_f32(step, static_cast<float>(n - 1 - idx)));
  return v;
}
}  // namespace detail

/// beta_i = linspace(beta_start, beta_end, T)  (DDPM: 1e-4 .. 0.02)
struct LinearBetas {
  static constexpr std::string_view name = "linear";
  double beta_start = 1e-4;
  double beta_end = 0.02;
  std::vector<float> betas(int t) const {
    return detail::torch_linspace_f32(static_cast<float>(beta_start), static_cast<float>(beta_end), t);
  }
};

/// beta_i = linspace(sqrt(beta_start), sqrt(beta_end), T)^2  (Stable Diffusion: 0.00085 .. 0.012);
/// the square roots in double, linspace and square in float32.
struct ScaledLinearBetas {
  static constexpr std::string_view name = "scaled_linear";
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::vector<float> betas(int t) const {
    auto v = detail::torch_linspace_f32(static_cast<float>(std::sqrt(beta_start)),
                                        static_cast<float>(std::sqrt(beta_end)), t);
    for (auto& b : v) b = detail::mul_f32(b, b);
    return v;
  }
};

/// Cosine schedule (Nichol & Dhariwal 2021): beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta),
/// abar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2, in double then cast to float32.
struct SquaredCosCapV2Betas {
  static constexpr std::string_view name = "squaredcos_cap_v2";
  double max_beta = 0.999;
  std::vector<float> betas(int t) const {
    auto alpha_bar = [](double x) {
      const double c = std::cos((x + 0.008) / 1.008 * std::numbers::pi / 2.0);
      return c * c;
    };
    std::vector<float> v(static_cast<std::size_t>(t));
    for (int i = 0; i < t; ++i) {
      const double t1 = static_cast<double>(i) / t, t2 = static_cast<double>(i + 1) / t;
      v[static_cast<std::size_t>(i)] = static_cast<float>(std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta));
    }
    return v;
  }
};

/// Betas given as a table (diffusers' `trained_betas`, or the output of rescale_zero_terminal_snr).
struct TrainedBetas {
  static constexpr std::string_view name = "trained_betas";
  std::vector<float> values;
  std::vector<float> betas(int t) const {
    SPO_CHECK(static_cast<int>(values.size()) == t,
              "trained_betas holds " << values.size() << " values for num_train_timesteps " << t);
    return values;
  }
};

/// Rescales betas to zero terminal SNR (Lin et al. 2023, Algorithm 1), in float32 as torch computes it: sqrt(abar)
/// is shifted so that its last value is 0 and scaled so that its first value is unchanged; betas are recovered from
/// the ratios of consecutive abar (abar_0 for the first). The cumprod accumulates in double, each output rounded.
/// Ref: diffusers scheduling_ddim.py, rescale_zero_terminal_snr.
inline std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
  SPO_CHECK(betas.size() >= 2, "rescale_betas_zero_snr needs at least 2 betas, got " << betas.size());
  const std::size_t n = betas.size();
  std::vector<float> sqrt_abar(n);
  double cum = 1.0;
  for (std::size_t i = 0; i < n; ++i) {
    cum *= static_cast<double>(1.0f - betas[i]);
    sqrt_abar[i] = std::sqrt(static_cast<float>(cum));
  }
  const float first = sqrt_abar[0], last = sqrt_abar[n - 1];
  SPO_CHECK(first > last, "rescale_betas_zero_snr: abar must decrease over the schedule");
  const float scale = first / (first - last);
  std::vector<float> abar(n), out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float shifted = sqrt_abar[i] - last;
    const float scaled = detail::mul_f32(shifted, scale);
    abar[i] = detail::mul_f32(scaled, scaled);
  }
  for (std::size_t i = 0; i < n; ++i) out[i] = 1.0f - (i == 0 ? abar[0] : abar[i] / abar[i - 1]);
  return out;
}

}  // namespace spo::diffusion
