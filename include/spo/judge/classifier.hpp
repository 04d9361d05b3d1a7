// SPDX-License-Identifier: MIT
/// @brief Fashion-MNIST judges: small convolutional classifiers (two architectures) with explicit backward.
#pragma once

#include <string_view>

#include "spo/nn/activation.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/group_norm.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/named.hpp"
#include "spo/nn/pooling.hpp"
#include "spo/nn/sequential.hpp"

namespace spo::judge {

/// conv 3x3 (stride s) -> GroupNorm -> SiLU, keys "conv.*", "norm.*".
template <Scalar T, Device D = cpu>
using ConvUnit = nn::Sequential<nn::Named<"conv", nn::Conv2d<T, D>>, nn::Named<"norm", nn::GroupNorm<T, D>>,
                                nn::Named<"act", nn::SiLU<T, D>>>;

template <Scalar T, Device D = cpu>
ConvUnit<T, D> conv_unit(std::int64_t in, std::int64_t out, std::int64_t stride, std::int64_t groups) {
  return ConvUnit<T, D>(nn::Conv2d<T, D>(in, out, 3, stride, 1), nn::GroupNorm<T, D>(groups, out), nn::SiLU<T, D>{});
}

/*!
  WHAT THIS REPRESENTS
    A VGG-style classifier of [B, 1, R, R] images in [-1, 1] into 10 classes: units of (conv, GroupNorm, SiLU) with
    widths w, 2w, 4w, 4w (strides 1, 2, 2, 2), global average pooling, and a linear head. Width w selects the judge
    (the training judge and the held-out judge use different widths and data halves).
!*/
template <Scalar T, Device D = cpu>
using Classifier = nn::Sequential<nn::Named<"features.0", ConvUnit<T, D>>, nn::Named<"features.1", ConvUnit<T, D>>,
                                  nn::Named<"features.2", ConvUnit<T, D>>, nn::Named<"features.3", ConvUnit<T, D>>,
                                  nn::Named<"pool", nn::GlobalAvgPool<T, D>>, nn::Named<"head", nn::Linear<T, D>>>;

template <Scalar T, Device D = cpu>
Classifier<T, D> make_classifier(std::int64_t width, Generator& gen) {
  const std::int64_t g = std::min<std::int64_t>(8, width);
  Classifier<T, D> c(conv_unit<T, D>(1, width, 1, g), conv_unit<T, D>(width, 2 * width, 2, g),
                     conv_unit<T, D>(2 * width, 4 * width, 2, g), conv_unit<T, D>(4 * width, 4 * width, 2, g),
                     nn::GlobalAvgPool<T, D>{}, nn::Linear<T, D>(4 * width, 10));
  c.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, D>& p) {
        if (name.ends_with("conv.weight") || name.ends_with("head.weight")) {
          const std::int64_t fan_in = p.value.numel() / p.value.size(0);
          const T bound = T(1) / std::sqrt(static_cast<T>(fan_in));
          fill_uniform(p.value.view(), gen, -bound, bound);
        }
      },
      {});
  return c;
}

}  // namespace spo::judge
