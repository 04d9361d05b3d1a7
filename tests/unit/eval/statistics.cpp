// SPDX-License-Identifier: MIT
// Summary statistics: Student-t quantiles against tables and closed forms, hand-computed summaries, Wilson intervals
// and paired t-tests.
#include "spo/eval/statistics.hpp"

#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include <doctest/doctest.h>

using namespace spo;
using namespace spo::eval;

TEST_CASE("incomplete beta and the Student t CDF match closed forms") {
  // I_x(a, 1) = x^a, I_x(1, b) = 1 - (1 - x)^b, I_{1/2}(a, a) = 1/2.
  CHECK(incomplete_beta(2.5, 1.0, 0.3) == doctest::Approx(std::pow(0.3, 2.5)).epsilon(1e-13));
  CHECK(incomplete_beta(1.0, 3.5, 0.8) == doctest::Approx(1.0 - std::pow(0.2, 3.5)).epsilon(1e-13));
  CHECK(incomplete_beta(7.0, 7.0, 0.5) == doctest::Approx(0.5).epsilon(1e-13));
  CHECK(incomplete_beta(2.5, 4.0, 0.3) == doctest::Approx(0.35219758590676721).epsilon(1e-12));  // mpmath.betainc
  CHECK(incomplete_beta(2.5, 4.0, 0.0) == 0.0);
  CHECK(incomplete_beta(2.5, 4.0, 1.0) == 1.0);
  for (double t : {-30.0, -2.0, -0.3, 0.0, 0.7, 1.5, 4.0, 100.0}) {
    CAPTURE(t);
    // df = 1 (Cauchy): 1/2 + atan(t) / pi; df = 2: 1/2 + t / (2 sqrt(2 + t^2));
    // df = 3: 1/2 + (t / (sqrt(3) (1 + t^2 / 3)) + atan(t / sqrt(3))) / pi.
    CHECK(student_t_cdf(t, 1) == doctest::Approx(0.5 + std::atan(t) / std::numbers::pi).epsilon(1e-13));
    CHECK(student_t_cdf(t, 2) == doctest::Approx(0.5 + t / (2 * std::sqrt(2 + t * t))).epsilon(1e-13));
    const double s3 = std::sqrt(3.0);
    CHECK(student_t_cdf(t, 3) ==
          doctest::Approx(0.5 + (t / (s3 * (1 + t * t / 3)) + std::atan(t / s3)) / std::numbers::pi).epsilon(1e-13));
  }
  CHECK(student_t_cdf(1.5, 7) == doctest::Approx(0.91135075650501498).epsilon(1e-13));  // mpmath
  CHECK(student_t_cdf(std::numeric_limits<double>::infinity(), 3) == 1.0);
}

TEST_CASE("Student t 0.975 quantiles match the table values") {
  // Table values (6-7 digits), then 17-digit values from mpmath (betainc + findroot at 30 digits).
  CHECK(std::abs(student_t_quantile(0.975, 1) - 12.7062) < 5e-5);
  CHECK(std::abs(student_t_quantile(0.975, 2) - 4.302653) < 5e-7);
  CHECK(std::abs(student_t_quantile(0.975, 4) - 2.776445) < 5e-7);
  CHECK(std::abs(student_t_quantile(0.975, 10) - 2.228139) < 5e-7);
  CHECK(std::abs(student_t_quantile(0.975, 30) - 2.042272) < 5e-7);
  CHECK(std::abs(student_t_quantile(0.975, 100) - 1.983972) < 5e-7);
  // Closed forms: df = 1 tan(pi (p - 1/2)), df = 2 (2p - 1) / sqrt(2 p (1 - p)).
  CHECK(student_t_quantile(0.975, 1) == doctest::Approx(std::tan(std::numbers::pi * 0.475)).epsilon(1e-12));
  CHECK(student_t_quantile(0.975, 2) == doctest::Approx(0.95 / std::sqrt(2 * 0.975 * 0.025)).epsilon(1e-12));
  CHECK(student_t_quantile(0.975, 3) == doctest::Approx(3.1824463052837096).epsilon(1e-12));
  CHECK(student_t_quantile(0.975, 10) == doctest::Approx(2.2281388519862747).epsilon(1e-12));
  CHECK(student_t_quantile(0.975, 30) == doctest::Approx(2.0422724563012383).epsilon(1e-12));
  CHECK(student_t_quantile(0.975, 100) == doctest::Approx(1.9839715185235523).epsilon(1e-12));
  CHECK(student_t_quantile(0.975, 2.5) == doctest::Approx(3.5746548420036832).epsilon(1e-12));  // Welch-style df
  // Symmetry, the median, and the normal limit.
  CHECK(student_t_quantile(0.025, 4) == doctest::Approx(-2.7764451051977944).epsilon(1e-12));
  CHECK(student_t_quantile(0.5, 4) == 0.0);
  CHECK(std::abs(student_t_quantile(0.975, 1e7) - normal_quantile_975) < 1e-6);
  CHECK_THROWS_AS(student_t_quantile(1.0, 4), spo::error);
  CHECK_THROWS_AS(student_t_quantile(0.975, 0), spo::error);
}

TEST_CASE("summarize: mean, sample std and the t interval") {
  // {1, 2, 3, 4, 5}: mean 3, std sqrt(10 / 4), half-width t(0.975, 4) * sqrt(2.5 / 5).
  const std::vector<double> v{1, 2, 3, 4, 5};
  const Summary s = summarize(v);
  CHECK(s.n == 5);
  CHECK(s.mean == doctest::Approx(3.0).epsilon(1e-15));
  CHECK(s.std == doctest::Approx(std::sqrt(2.5)).epsilon(1e-15));
  const double half = 2.7764451051977944 * std::sqrt(0.5);
  CHECK(s.ci95_low == doctest::Approx(3.0 - half).epsilon(1e-12));
  CHECK(s.ci95_high == doctest::Approx(3.0 + half).epsilon(1e-12));
  // {0, 2}: mean 1, std sqrt(2), half-width t(0.975, 1) * sqrt(2) / sqrt(2) = 12.7062047...
  const std::vector<double> two{0, 2};
  const Summary t = summarize(two);
  CHECK(t.ci95_low == doctest::Approx(1.0 - 12.706204736174705).epsilon(1e-12));
  CHECK(t.ci95_high == doctest::Approx(1.0 + 12.706204736174705).epsilon(1e-12));
  // Constant values: a zero-width interval.
  const std::vector<double> same{0.5, 0.5, 0.5};
  CHECK(summarize(same).std == 0.0);
  CHECK(summarize(same).ci95_low == summarize(same).ci95_high);
  CHECK_THROWS_AS(summarize(std::vector<double>{1.0}), spo::error);
  CHECK_THROWS_AS(summarize(std::vector<double>{1.0, std::numeric_limits<double>::quiet_NaN()}), spo::error);
  CHECK_THROWS_AS(summarize(std::vector<double>{1.0, std::numeric_limits<double>::infinity()}), spo::error);
}

TEST_CASE("intervals_overlap") {
  Summary a, b;
  a.ci95_low = 0.0, a.ci95_high = 1.0;
  b.ci95_low = 1.0, b.ci95_high = 2.0;
  CHECK(intervals_overlap(a, b));  // touching closed intervals
  CHECK(intervals_overlap(b, a));
  b.ci95_low = 1.01;
  CHECK_FALSE(intervals_overlap(a, b));
  CHECK_FALSE(intervals_overlap(b, a));
  b.ci95_low = -1.0, b.ci95_high = 3.0;  // containment
  CHECK(intervals_overlap(a, b));
  CHECK(intervals_overlap(b, a));
}

TEST_CASE("win_rate: ties count half, Wilson score interval") {
  // a > b, a < b, tie, a > b: 2 wins, 1 tie, 1 loss -> 2.5 / 4.
  const std::vector<double> a{3, 1, 2, 2}, b{1, 2, 2, 0};
  const WinRate w = win_rate(a, b);
  CHECK(w.wins == 2);
  CHECK(w.ties == 1);
  CHECK(w.losses == 1);
  CHECK(w.n == 4);
  CHECK(w.rate == 0.625);
  // (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n) with z = 1.959964, evaluated by hand in Python.
  CHECK(w.ci95_low == doctest::Approx(0.21942652006536284).epsilon(1e-12));
  CHECK(w.ci95_high == doctest::Approx(0.9081007708209878).epsilon(1e-12));
  // 0 of 10: [0, z^2 / (n + z^2)] = [0, 0.27753...] (the classic "rule of three" companion).
  const auto [lo0, hi0] = wilson_interval(0.0, 10);
  CHECK(lo0 == 0.0);
  CHECK(hi0 == doctest::Approx(0.2775327998628892).epsilon(1e-12));
  const auto [lo, hi] = wilson_interval(0.5, 100);
  CHECK(lo == doctest::Approx(0.4038315303659956).epsilon(1e-12));
  CHECK(hi == doctest::Approx(0.5961684696340044).epsilon(1e-12));
  CHECK_THROWS_AS(win_rate(a, std::vector<double>{1, 2}), spo::error);
  CHECK_THROWS_AS(win_rate(std::vector<double>{}, std::vector<double>{}), spo::error);
  CHECK_THROWS_AS(win_rate(std::vector<double>{std::numeric_limits<double>::quiet_NaN()}, std::vector<double>{1}),
                  spo::error);
}

TEST_CASE("paired_difference: paired t interval, statistic and p-value") {
  // d = a - b = {0.3, -0.1, 0.6, 0.5}: mean 0.325, std sqrt(0.2875 / 3), t = mean / (std / 2), df = 3.
  const std::vector<double> a{5.1, 4.9, 6.0, 5.5}, b{4.8, 5.0, 5.4, 5.0};
  const PairedDifference r = paired_difference(a, b);
  const double std_d = std::sqrt(0.2875 / 3), t = 0.325 / (std_d / 2);
  CHECK(r.difference.n == 4);
  CHECK(r.difference.mean == doctest::Approx(0.325).epsilon(1e-13));
  CHECK(r.difference.std == doctest::Approx(std_d).epsilon(1e-12));
  CHECK(r.difference.ci95_low == doctest::Approx(0.325 - 3.1824463052837096 * std_d / 2).epsilon(1e-12));
  CHECK(r.difference.ci95_high == doctest::Approx(0.325 + 3.1824463052837096 * std_d / 2).epsilon(1e-12));
  CHECK(r.t == doctest::Approx(t).epsilon(1e-12));
  // Two-sided p = 2 (1 - F_3(|t|)) with the closed-form df = 3 CDF; 0.1266... by hand.
  const double s3 = std::sqrt(3.0);
  const double f3 = 0.5 + (t / (s3 * (1 + t * t / 3)) + std::atan(t / s3)) / std::numbers::pi;
  CHECK(r.p_value == doctest::Approx(2 * (1 - f3)).epsilon(1e-11));
  CHECK(r.p_value == doctest::Approx(0.12660263155492713).epsilon(1e-9));
  // Swapping a and b flips the sign, keeps p.
  const PairedDifference s = paired_difference(b, a);
  CHECK(s.t == doctest::Approx(-t).epsilon(1e-12));
  CHECK(s.p_value == doctest::Approx(r.p_value).epsilon(1e-12));
  // Constant differences.
  const std::vector<double> c{1, 2, 3}, c1{0, 1, 2};
  CHECK(paired_difference(c, c1).p_value == 0.0);
  CHECK(std::isinf(paired_difference(c, c1).t));
  CHECK(paired_difference(c, c).p_value == 1.0);
  CHECK(paired_difference(c, c).t == 0.0);
  CHECK_THROWS_AS(paired_difference(c, std::vector<double>{1, 2}), spo::error);
  CHECK_THROWS_AS(paired_difference(std::vector<double>{1}, std::vector<double>{2}), spo::error);
}
