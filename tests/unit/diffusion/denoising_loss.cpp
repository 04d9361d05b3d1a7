// SPDX-License-Identifier: MIT
#include "spo/diffusion/denoising_loss.hpp"

#include <doctest/doctest.h>

#include "spo/diffusion/ddim.hpp"
#include "spo/testing/gradcheck.hpp"

using namespace spo;
using namespace spo::diffusion;

TEST_CASE("targets: eps for epsilon, v = sqrt(a) eps - sqrt(1-a) x0, x0 for sample; x0 is recoverable") {
  NoiseSchedule ns(ScaledLinearBetas{}, 1000, false);
  Generator g{2, 0};
  auto x0 = randn<double>(Shape{2, 3, 4}, g);
  auto eps = randn<double>(Shape{2, 3, 4}, g);
  std::vector<std::int64_t> t{10, 700};
  auto xt = ns.add_noise(x0, eps, t);
  auto v = training_target<VPrediction>(ns, x0, eps, t);
  CHECK(max_abs_diff<double>(v.view(), ns.velocity(x0, eps, t).view()) < 1e-15);
  CHECK(max_abs_diff<double>(training_target<EpsilonPrediction>(ns, x0, eps, t).view(), eps.view()) == 0.0);
  CHECK(max_abs_diff<double>(training_target<SamplePrediction>(ns, x0, eps, t).view(), x0.view()) == 0.0);
  // A perfect v model lets VPrediction::interpret recover x0 and eps exactly.
  for (std::int64_t i = 0; i < x0.numel(); ++i) {
    const double a = ns.alpha_cumprod(t[i / 12]);
    auto r = VPrediction::interpret(v[i], xt[i], a);
    CHECK(r.x0 == doctest::Approx(x0[i]).epsilon(1e-12));
    CHECK(r.eps == doctest::Approx(eps[i]).epsilon(1e-12));
    auto e = EpsilonPrediction::interpret(eps[i], xt[i], a);
    CHECK(e.x0 == doctest::Approx(x0[i]).epsilon(1e-10));
  }
}

TEST_CASE("mse_loss value and gradient (finite differences)") {
  Generator g{4, 0};
  auto u = randn<double>(Shape{3, 5}, g);
  auto target = randn<double>(Shape{3, 5}, g);
  auto r = mse_loss(u, target);
  double ref = 0;
  for (std::int64_t i = 0; i < 15; ++i) ref += (u[i] - target[i]) * (u[i] - target[i]) / 15.0;
  CHECK(r.loss == doctest::Approx(ref).epsilon(1e-14));
  Tensor<double> grad;
  auto res = testing::gradcheck_function([&] { return Tensor<double>(Shape{1}, {mse_loss(u, target).loss}); },
                                         [&](const Tensor<double>& dy) {
                                           grad = mse_loss(u, target).grad;
                                           as_array(grad.view()) *= dy[0];
                                         },
                                         {{"model_output", &u, &grad}});
  INFO(res.report << res.worst);
  CHECK(res.ok);
}

TEST_CASE("log-prob gradient passes a finite-difference check (v prediction, clip_sample)") {
  DdimConfig cfg{1000, TimestepSpacing::leading, 1, true, 1.0, false};
  Ddim<ScaledLinearBetas, VPrediction> ddim(ScaledLinearBetas{}, cfg);
  ddim.set_timesteps(20);
  Generator g{8, 0};
  auto x = randn<double>(Shape{2, 2, 3, 3}, g);
  auto u = randn<double>(Shape{2, 2, 3, 3}, g);
  auto prev = randn<double>(Shape{2, 2, 3, 3}, g);
  std::vector<std::int64_t> t{751, 51};
  Tensor<double> grad;
  auto res = testing::gradcheck_function(
      [&] { return ddim.log_prob(u, t, x, prev, 1.0); },
      [&](const Tensor<double>& dy) { grad = ddim.log_prob_backward(u, t, x, prev, 1.0, dy); },
      {{"model_output", &u, &grad}});
  INFO(res.report << res.worst);
  CHECK(res.ok);
}
