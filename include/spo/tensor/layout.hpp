// SPDX-License-Identifier: MIT
/// @brief Layout operations on host tensors: channel concatenation/split and NCHW <-> token-major permutations.
#pragma once

#include <cstdint>
#include <cstring>

#include "spo/core/parallel.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// cat([a, b], dim=1) of [B, Ca, ...] and [B, Cb, ...] -> [B, Ca + Cb, ...].
template <Scalar T>
Tensor<T, cpu> concat_channels(const Tensor<T, cpu>& a, const Tensor<T, cpu>& b) {
  SPO_CHECK(a.rank() >= 2 && b.rank() == a.rank() && a.size(0) == b.size(0) &&
                a.shape().numel_from(2) == b.shape().numel_from(2),
            "concat_channels: shapes " << a.shape() << " and " << b.shape() << " differ outside axis 1");
  Shape s = a.shape();
  s[1] = a.size(1) + b.size(1);
  auto out = Tensor<T, cpu>::uninitialized(s);  // [B, Ca + Cb, ...]
  const std::int64_t na = a.shape().numel_from(1), nb = b.shape().numel_from(1);
  for (std::int64_t i = 0; i < a.size(0); ++i) {
    std::memcpy(out.data() + i * (na + nb), a.data() + i * na, sizeof(T) * static_cast<std::size_t>(na));
    std::memcpy(out.data() + i * (na + nb) + na, b.data() + i * nb, sizeof(T) * static_cast<std::size_t>(nb));
  }
  return out;
}

/// Inverse of concat_channels: [B, Ca + Cb, ...] -> ([B, Ca, ...], [B, Cb, ...]).
template <Scalar T>
std::pair<Tensor<T, cpu>, Tensor<T, cpu>> split_channels(const Tensor<T, cpu>& x, std::int64_t channels_a) {
  SPO_CHECK(x.rank() >= 2 && channels_a >= 0 && channels_a <= x.size(1),
            "split_channels: cannot split " << channels_a << " channels off shape " << x.shape());
  Shape sa = x.shape(), sb = x.shape();
  sa[1] = channels_a;
  sb[1] = x.size(1) - channels_a;
  auto a = Tensor<T, cpu>::uninitialized(sa), b = Tensor<T, cpu>::uninitialized(sb);
  const std::int64_t na = sa.numel_from(1), nb = sb.numel_from(1);
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    std::memcpy(a.data() + i * na, x.data() + i * (na + nb), sizeof(T) * static_cast<std::size_t>(na));
    std::memcpy(b.data() + i * nb, x.data() + i * (na + nb) + na, sizeof(T) * static_cast<std::size_t>(nb));
  }
  return {std::move(a), std::move(b)};
}

/// [B, C, H, W] -> [B, H*W, C] (x.permute(0, 2, 3, 1).reshape(B, H*W, C)).
template <Scalar T>
Tensor<T, cpu> nchw_to_tokens(const Tensor<T, cpu>& x) {
  SPO_CHECK(x.rank() == 4, "nchw_to_tokens expects [B, C, H, W], got " << x.shape());
  const std::int64_t b = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  auto out = Tensor<T, cpu>::uninitialized(Shape{b, hw, c});  // [B, HW, C]
  parallel_for(0, b, [&](std::int64_t i) {
    const T* src = x.data() + i * c * hw;
    T* dst = out.data() + i * c * hw;
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t p = 0; p < hw; ++p) dst[p * c + ch] = src[ch * hw + p];
  });
  return out;
}

/// [B, H*W, C] -> [B, C, H, W].
template <Scalar T>
Tensor<T, cpu> tokens_to_nchw(const Tensor<T, cpu>& x, std::int64_t h, std::int64_t w) {
  SPO_CHECK(x.rank() == 3 && x.size(1) == h * w,
            "tokens_to_nchw: shape " << x.shape() << " is not [B, " << h * w << ", C]");
  const std::int64_t b = x.size(0), c = x.size(2), hw = h * w;
  auto out = Tensor<T, cpu>::uninitialized(Shape{b, c, h, w});  // [B, C, H, W]
  parallel_for(0, b, [&](std::int64_t i) {
    const T* src = x.data() + i * c * hw;
    T* dst = out.data() + i * c * hw;
    for (std::int64_t p = 0; p < hw; ++p)
      for (std::int64_t ch = 0; ch < c; ++ch) dst[ch * hw + p] = src[p * c + ch];
  });
  return out;
}

/// x[b, c, ...] += v[b, c] (a per-channel bias broadcast over spatial axes).
template <Scalar T>
void add_channel_bias(Tensor<T, cpu>& x, const Tensor<T, cpu>& v) {
  SPO_CHECK(x.rank() >= 2 && v.rank() == 2 && v.size(0) == x.size(0) && v.size(1) == x.size(1),
            "add_channel_bias: " << v.shape() << " does not broadcast over " << x.shape());
  const std::int64_t planes = x.size(0) * x.size(1), spatial = x.shape().numel_from(2);
  parallel_for(0, planes, [&](std::int64_t p) {
    T* px = x.data() + p * spatial;
    const T add = v[p];
    for (std::int64_t i = 0; i < spatial; ++i) px[i] += add;
  });
}

/// Sum over spatial axes: [B, C, ...] -> [B, C] (the backward of add_channel_bias).
template <Scalar T>
Tensor<T, cpu> sum_spatial(const Tensor<T, cpu>& x) {
  SPO_CHECK(x.rank() >= 2, "sum_spatial expects [B, C, ...], got " << x.shape());
  const std::int64_t planes = x.size(0) * x.size(1), spatial = x.shape().numel_from(2);
  auto out = Tensor<T, cpu>::uninitialized(Shape{x.size(0), x.size(1)});  // [B, C]
  for (std::int64_t p = 0; p < planes; ++p) {
    double acc = 0;
    const T* px = x.data() + p * spatial;
    for (std::int64_t i = 0; i < spatial; ++i) acc += px[i];
    out[p] = static_cast<T>(acc);
  }
  return out;
}

/// a += b elementwise (same shape).
template <Scalar T>
void add_inplace(Tensor<T, cpu>& a, const Tensor<T, cpu>& b) {
  check_same_shape(a.shape(), b.shape(), "add_inplace");
  T* pa = a.data();
  const T* pb = b.data();
  parallel_for(
      0, a.numel(), [&](std::int64_t i) { pa[i] += pb[i]; }, 1 << 14);
}

}  // namespace spo
