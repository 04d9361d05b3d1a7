// SPDX-License-Identifier: MIT
// What the training tests on spo::cuda share: the tiny text-conditioned model (two levels, cross-attention at the
// second, 8 x 8 images, 6 tokens) in double on either device with the same weights, a LoRA policy whose adapters are
// off their zero init, the DDIM scheduler of the tests, and the error measure their bounds are stated in.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/diffusion/scheduler_config.hpp"
#include "spo/model/fashion_default.hpp"
#include "spo/nn/lora.hpp"

#include "../support/tiny_model.hpp"

namespace spo::cuda_training_fixtures {

using Base = model::FashionModel<double, cpu>;
template <class D>
using BaseOn = model::FashionModel<double, D>;
template <class D>
using PolicyOn = model::FashionModel<double, D, nn::LoRA<nn::Linear<double, D>>>;
using Epsilon = diffusion::Ddim<diffusion::LinearBetas, diffusion::EpsilonPrediction>;

using test_support::tiny_text;
using test_support::tiny_unet;

template <class P>
diffusion::Ddim<diffusion::LinearBetas, P> scheduler(int steps, const char* prediction) {
  auto d = diffusion::make_scheduler<diffusion::LinearBetas, P>(
      diffusion::ScheduleSection{"linear", 1e-4, 0.02, 1000, prediction, "leading", 1});
  d.set_timesteps(steps);
  return d;
}

/// max |a - b| / max(max |b|, 1e-300): the error relative to the reference tensor's scale.
inline double scaled_diff(const Tensor<double, cpu>& a, const Tensor<double, cpu>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0, scale = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return worst / std::max(scale, 1e-300);
}
inline double scaled_diff(const Tensor<double, cuda>& a, const Tensor<double, cpu>& b) {
  return scaled_diff(to_host(a), b);
}

inline double scaled_diff(std::span<const double> a, std::span<const double> b) {
  REQUIRE(a.size() == b.size());
  const auto n = static_cast<std::int64_t>(b.size());
  return scaled_diff(Tensor<double, cpu>(Shape{n}, std::vector<double>(a.begin(), a.end())),
                     Tensor<double, cpu>(Shape{n}, std::vector<double>(b.begin(), b.end())));
}

inline Base make_base() {
  Generator g{21, 0};
  return model::make_fashion_model<Base>(tiny_unet, tiny_text, g);
}

/// A LoRA policy on D with base's weights and adapters whose B matrices are non-zero (so policy != reference).
template <class D>
PolicyOn<D> make_policy(Base& base) {
  Generator init{0, 0};
  auto host = model::make_fashion_model<PolicyOn<cpu>>(tiny_unet, tiny_text, init);
  nn::copy_parameters(base, host);
  nn::set_trainable(host, false);
  Generator lg{5, 0};
  host.unet().attach_lora(2, 2.0, lg);
  Generator gb{6, 0};
  host.visit_parameters([&](std::string_view name, auto& p) {
    if (std::string(name).find("lora_B") != std::string::npos) fill_uniform(p.value.view(), gb, -0.05, 0.05);
  });
  if constexpr (std::same_as<D, cpu>) {
    return host;
  } else {
    Generator i2{0, 0};
    auto dev = model::make_fashion_model<PolicyOn<cuda>>(tiny_unet, tiny_text, i2);
    Generator l2{5, 0};
    dev.unet().attach_lora(2, 2.0, l2);
    nn::copy_parameters(host, dev);
    return dev;
  }
}

template <class D>
BaseOn<D> base_on(Base& base) {
  if constexpr (std::same_as<D, cpu>) {
    return base;
  } else {
    Generator g{0, 0};
    auto dev = model::make_fashion_model<BaseOn<cuda>>(tiny_unet, tiny_text, g);
    nn::copy_parameters(base, dev);
    return dev;
  }
}

/// The LoRA parameters of a policy, concatenated in visiting order, on the host.
template <class Model>
Tensor<double, cpu> lora_weights(Model& m) {
  std::vector<double> w;
  m.visit_parameters([&](std::string_view name, auto& p) {
    if (name.find("lora_") == std::string_view::npos) return;
    const auto h = transfer<cpu>(p.value);
    w.insert(w.end(), h.data(), h.data() + h.numel());
  });
  return Tensor<double, cpu>(Shape{static_cast<std::int64_t>(w.size())}, w);
}

}  // namespace spo::cuda_training_fixtures
