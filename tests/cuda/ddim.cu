// SPDX-License-Identifier: MIT
// DDIM transition mean and per-step log-probability on spo::cuda against diffusion::Ddim on the CPU
// (Ddim<ScaledLinearBetas, EpsilonPrediction>, 20 steps, eta = 1, clamped previous timestep, per-batch timesteps
// including t = 1 whose t_prev clamps to 0).
// Bounds, as |gpu - cpu| <= abs + rel |cpu|:
//   mean: both sides evaluate sqrt(abar_prev) x0 + dir eps in double and round once to T; a fused multiply-add may
//         change the double by an ulp, so float results may differ by 1 ulp: rel 2^-23; double: abs 1e-14.
//   log-prob given the CPU mean: the double sum differs only in order (relative ~per * 2^-53), then rounds to T:
//         float rel 2^-23 + abs 1e-12; double rel 1e-12.
//   log-prob of the GPU mean (end to end): a 1-ulp change of mu_i moves log p by (x_prev - mu) / (std^2 per) per
//         element, i.e. ~ z ulp(mu) / std with z ~ N(0, 1): float abs 1e-5 rel 1e-6; double abs 1e-12.
#include <vector>

#include <doctest/doctest.h>

#include "spo/diffusion/cuda/ddim_kernels.cuh"
#include "spo/tensor/cuda/memory.hpp"

#include "reference.hpp"

using namespace spo;

namespace {

template <class T>
cuda_test::DdimCase<T> cpu_case(const Shape& s, double eta, std::uint64_t seed) {
  if constexpr (std::is_same_v<T, float>)
    return cuda_test::cpu_ddim_case_float(s, eta, seed);
  else
    return cuda_test::cpu_ddim_case_double(s, eta, seed);
}

}  // namespace

TEST_CASE_TEMPLATE("transition_mean and transition_log_prob == Ddim::mean and Ddim::log_prob", T, float, double) {
  constexpr bool is_float = std::is_same_v<T, float>;
  // [B, C, H, W]: a batch smaller than one block per sample; a large sample (12 partial sums); a batch over
  // ddim_batch_per_launch (two launches); a sample not a multiple of the block size.
  const std::vector<Shape> shapes{Shape{5, 4, 16, 16}, Shape{2, 3, 64, 64}, Shape{130, 1, 5, 7}, Shape{3, 3, 17, 19}};
  std::uint64_t seed = 500;
  for (const auto& s : shapes) {
    for (const double eta : {1.0, 0.3}) {
      INFO("shape " << s << ", eta " << eta << ", seed " << seed);
      const auto ref = cpu_case<T>(s, eta, seed++);
      const auto coeffs = diffusion::cuda_kernels::ddim_coefficients(ref.transitions);

      const auto mu = diffusion::transition_mean(to_device(ref.x0), to_device(ref.eps), coeffs);  // s
      CHECK(mu.shape() == s);
      CHECK(cuda_test::worst_ratio(to_host(mu), ref.mu, is_float ? 1e-38 : 1e-14, is_float ? 0x1p-23 : 1e-300) <= 1.0);

      const auto x_prev = to_device(ref.x_prev);
      const auto lp = diffusion::transition_log_prob(x_prev, to_device(ref.mu), coeffs);  // [B]
      CHECK(lp.shape() == Shape{s[0]});
      CHECK(cuda_test::worst_ratio(to_host(lp), ref.log_prob, is_float ? 1e-12 : 1e-300, is_float ? 0x1p-23 : 1e-12) <=
            1.0);

      const auto lp_e2e = diffusion::transition_log_prob(x_prev, mu, coeffs);  // [B]
      CHECK(cuda_test::worst_ratio(to_host(lp_e2e), ref.log_prob, is_float ? 1e-5 : 1e-12, is_float ? 1e-6 : 1e-300) <=
            1.0);
    }
  }
}

TEST_CASE("transition_log_prob is deterministic and uses a caller's workspace when given") {
  const auto ref = cuda_test::cpu_ddim_case_float(Shape{4, 3, 64, 64}, 1.0, 77);
  const auto coeffs = diffusion::cuda_kernels::ddim_coefficients(ref.transitions);
  const auto x_prev = to_device(ref.x_prev), mu = to_device(ref.mu);
  const auto first = to_host(diffusion::transition_log_prob(x_prev, mu, coeffs));
  using LogProb = diffusion::cuda_kernels::DdimLogProb<float>;
  Tensor<float, cuda> lp(Shape{4});
  LogProb::Arguments args{4, 3 * 64 * 64, x_prev.data(), mu.data(), lp.data(), coeffs, nullptr};
  auto ws = Tensor<double, cuda>::uninitialized(Shape{static_cast<std::int64_t>(LogProb::workspace_size(args) / 8)});
  args.workspace = ws.data();
  for (int rep = 0; rep < 3; ++rep) {
    LogProb::run(args);
    const auto again = to_host(lp);
    for (int b = 0; b < 4; ++b) REQUIRE(again[b] == first[b]);
  }
}

TEST_CASE("transition ops reject mismatched shapes and coefficient counts") {
  Tensor<float, cuda> a(Shape{2, 3}), b(Shape{2, 4});
  const std::vector<diffusion::cuda_kernels::DdimCoefficients> c(2, {0.9, 0.3, 0.1});
  CHECK_THROWS_WITH_AS(diffusion::transition_mean(a, b, c), doctest::Contains("[2, 4]"), spo::error);
  CHECK_THROWS_WITH_AS(diffusion::transition_log_prob(a, a, std::span(c).first(1)),
                       doctest::Contains("1 coefficient sets for batch 2"), spo::error);
}
