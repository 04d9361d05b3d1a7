// SPDX-License-Identifier: MIT
// Frechet distance: golden values from numpy (tools/reference/frechet_golden.py -> tests/data/frechet_golden.json),
// hand-computed statistics and closed forms.
#include "spo/eval/frechet.hpp"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "spo/io/safetensors.hpp"

using namespace spo;
using namespace spo::eval;
using nlohmann::json;

namespace {

const json& golden() {
  static const json j = [] {
    std::ifstream f(SPO_TEST_DATA_DIR "/frechet_golden.json");
    REQUIRE(f.good());
    return json::parse(f);
  }();
  return j;
}

/// Uniform doubles (z >> 11) * 2^-53 from splitmix64 (Steele, Lea & Flood 2014), as in frechet_golden.py.
std::vector<double> uniforms(std::uint64_t seed, std::size_t count) {
  std::vector<double> out(count);
  std::uint64_t state = seed;
  for (auto& u : out) {
    state += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    u = static_cast<double>(z >> 11) * 0x1.0p-53;
  }
  return out;
}

/// X = scale * (U - 0.5) @ W + shift * (j + 1) / F  [N, F]
Tensor<double> features(const json& p) {
  const auto n = p["n"].get<std::int64_t>(), f = p["f"].get<std::int64_t>();
  const double scale = p["scale"], shift = p["shift"];
  const auto u = uniforms(p["seed"].get<std::uint64_t>(), static_cast<std::size_t>(n * f));
  const auto w = uniforms(p["mix_seed"].get<std::uint64_t>(), static_cast<std::size_t>(f * f));
  Tensor<double> x(Shape{n, f});  // [N, F]
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < f; ++j) {
      double acc = 0;
      for (std::int64_t k = 0; k < f; ++k) acc += (u[i * f + k] - 0.5) * w[k * f + j];
      x[i * f + j] = scale * acc + shift * static_cast<double>(j + 1) / static_cast<double>(f);
    }
  return x;
}

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

GaussianStats diagonal(std::vector<double> mean, std::vector<double> var) {
  GaussianStats s;
  s.mean = Eigen::Map<Eigen::VectorXd>(mean.data(), static_cast<Eigen::Index>(mean.size()));
  s.cov = Eigen::Map<Eigen::VectorXd>(var.data(), static_cast<Eigen::Index>(var.size())).asDiagonal();
  s.count = 10;
  return s;
}

}  // namespace

TEST_CASE("gaussian_stats: hand-computed mean and unbiased covariance") {
  // x = [[1, 2], [3, 4], [5, 0]]: mean (3, 2), centered [[-2, 0], [0, 2], [2, -2]], cov = Xc^T Xc / 2.
  const double x[] = {1, 2, 3, 4, 5, 0};
  const GaussianStats s = gaussian_stats(x, 3, 2);
  CHECK(s.count == 3);
  CHECK(s.mean(0) == doctest::Approx(3.0).epsilon(1e-15));
  CHECK(s.mean(1) == doctest::Approx(2.0).epsilon(1e-15));
  CHECK(s.cov(0, 0) == doctest::Approx(4.0).epsilon(1e-15));
  CHECK(s.cov(0, 1) == doctest::Approx(-2.0).epsilon(1e-15));
  CHECK(s.cov(1, 0) == doctest::Approx(-2.0).epsilon(1e-15));
  CHECK(s.cov(1, 1) == doctest::Approx(4.0).epsilon(1e-15));
  // The same data as float through the tensor overload.
  const GaussianStats f = gaussian_stats(Tensor<float>(Shape{3, 2}, {1, 2, 3, 4, 5, 0}));
  CHECK((f.cov - s.cov).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((f.mean - s.mean).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("frechet_distance: golden values from numpy, including a rank-deficient case (N < F)") {
  const json& cases = golden()["cases"];
  REQUIRE(cases.size() >= 5);
  for (const json& c : cases) {
    const std::string name = c["name"];
    CAPTURE(name);
    const Tensor<double> xa = features(c["a"]), xb = features(c["b"]);
    // Generator parity with the Python script.
    double sum_a = 0;
    for (std::int64_t i = 0; i < xa.numel(); ++i) sum_a += xa[i];
    CHECK(rel(sum_a, c["a"]["sum"]) < 1e-11);
    CHECK(rel(xa[0], c["a"]["x00"]) < 1e-13);
    CHECK(rel(xb[0], c["b"]["x00"]) < 1e-13);
    // Statistics against numpy.cov (ddof = 1).
    for (const auto& [x, key] : {std::pair{&xa, "a"}, std::pair{&xb, "b"}}) {
      const GaussianStats s = gaussian_stats(*x);
      const json& ref = c[key];
      CHECK(s.count == ref["n"].get<std::int64_t>());
      CHECK(rel(s.mean(0), ref["mean0"]) < 1e-12);
      CHECK(rel(s.cov.trace(), ref["cov_trace"]) < 1e-12);
      CHECK(rel(s.cov(0, 0), ref["cov00"]) < 1e-12);
      CHECK(rel(s.cov(0, 1), ref["cov01"]) < 1e-10);
    }
    const double d = frechet_distance(xa, xb);
    CHECK(rel(d, c["distance"]) < 1e-9);
    // Full-rank cases also match the FID formula with sqrtm of S_a S_b from a general eigendecomposition.
    if (xa.size(0) > xa.size(1) && xb.size(0) > xb.size(1)) CHECK(rel(d, c["distance_fid_eig"]) < 1e-9);
    CHECK(rel(frechet_distance(xb, xa), d) < 1e-10);
  }
}

TEST_CASE("frechet_distance: identical sets give 0, and the distance is symmetric") {
  const json& c = golden()["cases"][3];
  const Tensor<double> xa = features(c["a"]);
  const GaussianStats s = gaussian_stats(xa);
  CHECK(frechet_distance(s, s) <= 1e-12 * s.cov.trace());
  CHECK(frechet_distance(s, s) >= 0.0);
  // Rank-deficient (N = 3 < F = 64) against itself: no sqrt of rounding-level eigenvalues survives.
  const GaussianStats r = gaussian_stats(xa.data(), 3, 64);
  CHECK(frechet_distance(r, r) <= 1e-12 * r.cov.trace());
}

TEST_CASE("frechet_distance: closed forms for commuting covariances") {
  // Diagonal Gaussians: d^2 = sum (mu_a - mu_b)^2 + sum (sqrt(va) - sqrt(vb))^2.
  const std::vector<double> ma{0.5, -1.0, 2.0, 0.0}, mb{0.0, 1.0, 2.5, -3.0};
  const std::vector<double> va{1.0, 4.0, 0.25, 2.0}, vb{9.0, 1.0, 0.25, 0.5};
  double expected = 0;
  for (std::size_t i = 0; i < ma.size(); ++i)
    expected += (ma[i] - mb[i]) * (ma[i] - mb[i]) + std::pow(std::sqrt(va[i]) - std::sqrt(vb[i]), 2);
  CHECK(rel(frechet_distance(diagonal(ma, va), diagonal(mb, vb)), expected) < 1e-13);
  // A zero variance (singular covariance) in one component.
  CHECK(rel(frechet_distance(diagonal({0, 0}, {0.0, 1.0}), diagonal({0, 0}, {4.0, 1.0})), 4.0) < 1e-13);
  // S_b = c^2 S_a for a full S_a: tr((S_a S_b)^(1/2)) = c tr(S_a), so d^2 = |dmu|^2 + (1 - c)^2 tr(S_a).
  GaussianStats a;
  a.mean = Eigen::Vector3d(1, 2, 3);
  a.cov = (Eigen::Matrix3d() << 4, 1, 0.5, 1, 3, -1, 0.5, -1, 2).finished();
  GaussianStats b = a;
  b.mean = Eigen::Vector3d(0, 2, 5);
  b.cov = 2.25 * a.cov;
  CHECK(rel(frechet_distance(a, b), 1.0 + 4.0 + 0.25 * 9.0) < 1e-13);
}

TEST_CASE("frechet_distance and gaussian_stats reject invalid input") {
  const double x[] = {1, 2, 3, 4, 5, 0};
  CHECK_THROWS_AS(gaussian_stats(x, 1, 6), spo::error);                                       // N < 2
  CHECK_THROWS_AS(gaussian_stats(Tensor<double>(Shape{6}, {1, 2, 3, 4, 5, 0})), spo::error);  // not [N, F]
  const double bad[] = {1, 2, std::numeric_limits<double>::quiet_NaN(), 4};
  CHECK_THROWS_AS(gaussian_stats(bad, 2, 2), spo::error);
  const double inf[] = {1, 2, std::numeric_limits<double>::infinity(), 4};
  CHECK_THROWS_AS(gaussian_stats(inf, 2, 2), spo::error);
  const GaussianStats a = gaussian_stats(x, 3, 2), b = gaussian_stats(x, 2, 3);
  CHECK_THROWS_AS(frechet_distance(a, b), spo::error);  // F = 2 vs F = 3
  CHECK_THROWS_AS(frechet_distance(Tensor<double>(Shape{3, 2}), Tensor<double>(Shape{2, 3})), spo::error);
  GaussianStats c = a;
  c.cov.resize(2, 3);
  c.cov.setZero();
  CHECK_THROWS_AS(frechet_distance(c, a), spo::error);  // covariance not [F, F]
  GaussianStats d = a;
  d.mean(1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(frechet_distance(a, d), spo::error);
}

TEST_CASE("nuclear_norm: the rank-deficient L_a^T L_b on which Eigen 3.4.0's BDCSVD crashed") {
  // [128, 128], 84 zero columns (the progress evaluation's 80 images give a covariance of rank <= 79), saved from the
  // DDPO run (seed 3, round 12) that segfaulted inside BDCSVD::computeSVDofM.
  const auto t = spo::io::load_safetensors(SPO_TEST_DATA_DIR "/frechet/bdcsvd_crash.safetensors").get<double>("cross");
  REQUIRE(t.shape() == spo::Shape{128, 128});
  Eigen::MatrixXd m(128, 128);
  for (std::int64_t i = 0; i < 128; ++i)
    for (std::int64_t j = 0; j < 128; ++j) m(i, j) = t[i * 128 + j];
  const double norm = spo::eval::nuclear_norm(m);
  // Independent reference: singular values as square roots of the eigenvalues of m^T m (absolute error of about
  // sqrt(eps) * sigma_max per near-zero value, so the bound is 1e-6 relative).
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(m.transpose() * m);
  double reference = 0;
  for (Eigen::Index i = 0; i < eig.eigenvalues().size(); ++i)
    reference += std::sqrt(std::max(eig.eigenvalues()(i), 0.0));
  CHECK(std::abs(norm - reference) <= 1e-6 * reference);
  CHECK(std::abs(spo::eval::nuclear_norm(m.transpose()) - norm) <= 1e-12 * norm);
  CHECK(reference > 1.0);
}

TEST_CASE("nuclear_norm: diagonal and non-finite input") {
  Eigen::MatrixXd d = Eigen::MatrixXd::Zero(3, 3);
  d.diagonal() << 2.0, -3.0, 0.5;
  CHECK(spo::eval::nuclear_norm(d) == doctest::Approx(5.5).epsilon(1e-15));
  d(0, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(spo::eval::nuclear_norm(d), doctest::Contains("non-finite"), spo::error);
}
