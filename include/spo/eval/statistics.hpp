// SPDX-License-Identifier: MIT
/// @brief Summaries over seeds with Student-t confidence intervals, win rates with Wilson intervals, paired t-tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"

namespace spo::eval {

/// The 0.975 quantile of the standard normal distribution (two-sided 95%).
inline constexpr double normal_quantile_975 = 1.959963984540054;

namespace detail {

/// Continued fraction of the regularized incomplete beta function I_x(a, b), evaluated by the modified Lentz method
/// (DLMF 8.17.22; converges quickly for x < (a + 1) / (a + b + 2)).
inline double incomplete_beta_fraction(double a, double b, double x) {
  constexpr double tiny = 1e-300, eps = 1e-16;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::abs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 1000; ++m) {
    const double m2 = 2.0 * m;
    // Even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
    double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    d = 1.0 + num * d;
    c = 1.0 + num / c;
    if (std::abs(d) < tiny) d = tiny;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    h *= d * c;
    // Odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
    num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    d = 1.0 + num * d;
    c = 1.0 + num / c;
    if (std::abs(d) < tiny) d = tiny;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < eps) break;
  }
  return h;
}

}  // namespace detail

/// Regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1].
inline double incomplete_beta(double a, double b, double x) {
  SPO_CHECK(a > 0 && b > 0 && x >= 0 && x <= 1,
            "incomplete beta needs a, b > 0 and x in [0, 1], got a = " << a << ", b = " << b << ", x = " << x);
  if (x == 0.0 || x == 1.0) return x;
  // x^a (1 - x)^b / (a B(a, b)) times the continued fraction; the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) keeps the
  // fraction in its fast-converging range.
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0)) return std::exp(log_front) * detail::incomplete_beta_fraction(a, b, x) / a;
  return 1.0 - std::exp(log_front) * detail::incomplete_beta_fraction(b, a, 1.0 - x) / b;
}

/// CDF of Student's t distribution with `df` > 0 degrees of freedom (not necessarily an integer):
/// P(T <= t) = 1 - I_{df / (df + t^2)}(df / 2, 1 / 2) / 2 for t >= 0, and symmetric.
inline double student_t_cdf(double t, double df) {
  SPO_CHECK(df > 0 && !std::isnan(t), "Student t CDF needs df > 0 and a number, got df = " << df << ", t = " << t);
  if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
  const double tail = 0.5 * incomplete_beta(0.5 * df, 0.5, df / (df + t * t));
  return t >= 0 ? 1.0 - tail : tail;
}

/// The p quantile of Student's t distribution with `df` > 0 degrees of freedom, p in (0, 1): the root of
/// student_t_cdf(t, df) = p, bracketed and bisected to full double precision (the CDF is monotone).
inline double student_t_quantile(double p, double df) {
  SPO_CHECK(p > 0 && p < 1 && df > 0,
            "Student t quantile needs p in (0, 1) and df > 0, got p = " << p << ", df = " << df);
  if (p == 0.5) return 0.0;
  if (p < 0.5) return -student_t_quantile(1.0 - p, df);
  double lo = 0.0, hi = 1.0;
  while (student_t_cdf(hi, df) < p) {
    lo = hi;
    hi *= 2.0;
    SPO_CHECK(std::isfinite(hi), "Student t quantile for p = " << p << ", df = " << df << " overflows");
  }
  for (int i = 0; i < 200 && hi - lo > 4 * std::numeric_limits<double>::epsilon() * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

/// Mean, sample standard deviation (ddof = 1) and the two-sided 95% Student-t confidence interval of the mean,
/// mean -/+ t(0.975, n - 1) * std / sqrt(n).
struct Summary {
  double mean = 0;
  double std = 0;
  std::int64_t n = 0;
  double ci95_low = 0;
  double ci95_high = 0;
};

/// Summarizes n >= 2 finite values (e.g. one metric over seeds).
inline Summary summarize(std::span<const double> values) {
  const auto n = static_cast<std::int64_t>(values.size());
  SPO_CHECK(n >= 2, "a summary with a confidence interval needs at least 2 values, got " << n);
  double sum = 0;
  for (double v : values) {
    SPO_CHECK(std::isfinite(v), "cannot summarize a non-finite value " << v);
    sum += v;
  }
  Summary s;
  s.n = n;
  s.mean = sum / static_cast<double>(n);
  double ss = 0;
  for (double v : values) ss += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(ss / static_cast<double>(n - 1));
  const double half = student_t_quantile(0.975, static_cast<double>(n - 1)) * s.std / std::sqrt(static_cast<double>(n));
  s.ci95_low = s.mean - half;
  s.ci95_high = s.mean + half;
  return s;
}

/// Whether the two 95% intervals share a point (closed intervals). Disjoint intervals imply a difference at the 5%
/// level; overlapping ones do not imply the absence of one (use paired_difference for paired runs).
inline bool intervals_overlap(const Summary& a, const Summary& b) {
  return a.ci95_low <= b.ci95_high && b.ci95_low <= a.ci95_high;
}

/// Paired comparison of a against b: wins (a > b), ties and losses, the win rate (wins + ties / 2) / n and its
/// Wilson score 95% interval (Wilson 1927), with the half-counted ties included in the success count.
struct WinRate {
  std::int64_t wins = 0;
  std::int64_t ties = 0;
  std::int64_t losses = 0;
  std::int64_t n = 0;
  double rate = 0;
  double ci95_low = 0;
  double ci95_high = 0;
};

/// Wilson score interval for a proportion p observed over n trials at normal quantile z:
/// (p + z^2 / 2n -/+ z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n).
inline std::pair<double, double> wilson_interval(double p, std::int64_t n, double z = normal_quantile_975) {
  SPO_CHECK(n >= 1 && p >= 0 && p <= 1, "Wilson interval needs n >= 1 and p in [0, 1], got n = " << n << ", p = " << p);
  const double nn = static_cast<double>(n), z2 = z * z;
  const double center = (p + z2 / (2 * nn)) / (1 + z2 / nn);
  const double half = z / (1 + z2 / nn) * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

/// Win rate of scores_a over scores_b, compared element by element (same prompt and seed at index i).
inline WinRate win_rate(std::span<const double> scores_a, std::span<const double> scores_b) {
  SPO_CHECK(scores_a.size() == scores_b.size(),
            "win rate needs paired scores, got " << scores_a.size() << " and " << scores_b.size());
  SPO_CHECK(!scores_a.empty(), "win rate of no pairs");
  WinRate w;
  w.n = static_cast<std::int64_t>(scores_a.size());
  for (std::size_t i = 0; i < scores_a.size(); ++i) {
    SPO_CHECK(!std::isnan(scores_a[i]) && !std::isnan(scores_b[i]), "win rate: NaN score at pair " << i);
    if (scores_a[i] > scores_b[i])
      ++w.wins;
    else if (scores_a[i] < scores_b[i])
      ++w.losses;
    else
      ++w.ties;
  }
  w.rate = (static_cast<double>(w.wins) + 0.5 * static_cast<double>(w.ties)) / static_cast<double>(w.n);
  std::tie(w.ci95_low, w.ci95_high) = wilson_interval(w.rate, w.n);
  return w;
}

/// Paired mean difference d_i = a_i - b_i: its summary (mean, std, 95% t interval), the t statistic
/// mean / (std / sqrt(n)) and the two-sided p-value 2 P(T_{n-1} > |t|) of the paired t-test.
struct PairedDifference {
  Summary difference;
  double t = 0;
  double p_value = 1;
};

inline PairedDifference paired_difference(std::span<const double> a, std::span<const double> b) {
  SPO_CHECK(a.size() == b.size(), "paired difference needs equal lengths, got " << a.size() << " and " << b.size());
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  PairedDifference r;
  r.difference = summarize(d);
  const Summary& s = r.difference;
  if (s.std > 0) {
    r.t = s.mean / (s.std / std::sqrt(static_cast<double>(s.n)));
    const double df = static_cast<double>(s.n - 1);
    r.p_value = incomplete_beta(0.5 * df, 0.5, df / (df + r.t * r.t));  // 2 P(T > |t|), without cancellation
  } else {
    // Constant differences: the test statistic is +-inf (p = 0) unless all differences are 0 (t = 0, p = 1).
    r.t = s.mean == 0 ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), s.mean);
    r.p_value = s.mean == 0 ? 1.0 : 0.0;
  }
  return r;
}

}  // namespace spo::eval
