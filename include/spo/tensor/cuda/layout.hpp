// SPDX-License-Identifier: MIT
/// @brief Layout operations on spo::cuda tensors (channel concat/split, NCHW <-> tokens, channel bias, spatial sums,
/// a += b): the device twins of tensor/layout.hpp with the same semantics and error messages, found by ADL from the
/// model templates. The launchers are defined in layout.cuh and instantiated for float, double, half and bfloat16 in
/// instantiate/layout.cu (16-bit arithmetic in float, one rounding per output).
#pragma once

#include <cstdint>
#include <utility>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// out[i, 0:na] = a[i, :], out[i, na:na+nb] = b[i, :] for i < outer (rows of na and nb elements).
template <StorageScalar T>
void concat_rows(const T* a, const T* b, T* out, std::int64_t outer, std::int64_t na, std::int64_t nb);
/// The inverse of concat_rows: a[i, :] = x[i, 0:na], b[i, :] = x[i, na:na+nb].
template <StorageScalar T>
void split_rows(const T* x, T* a, T* b, std::int64_t outer, std::int64_t na, std::int64_t nb);
/// out[b, c, r] = x[b, r, c] for x [batch, rows, cols] (a batched transpose through shared-memory tiles).
template <StorageScalar T>
void batched_transpose(const T* x, T* out, std::int64_t batch, std::int64_t rows, std::int64_t cols);
/// x[p, i] += v[p] for p < planes, i < spatial.
template <StorageScalar T>
void add_plane_bias(T* x, const T* v, std::int64_t planes, std::int64_t spatial);
/// out[p] = T(sum_i x[p, i]) * scale (sum in double; scale 1 leaves the rounded sum unchanged).
template <StorageScalar T>
void sum_planes(const T* x, T* out, std::int64_t planes, std::int64_t spatial, compute_type_t<T> scale);
/// out[p, i] = v[p] * scale for p < planes, i < spatial.
template <StorageScalar T>
void broadcast_planes(const T* v, T* out, std::int64_t planes, std::int64_t spatial, compute_type_t<T> scale);

}  // namespace spo::cuda_kernels

namespace spo {

/// cat([a, b], dim=1) of [B, Ca, ...] and [B, Cb, ...] -> [B, Ca + Cb, ...].
template <StorageScalar T>
Tensor<T, cuda> concat_channels(const Tensor<T, cuda>& a, const Tensor<T, cuda>& b) {
  SPO_CHECK(a.rank() >= 2 && b.rank() == a.rank() && a.size(0) == b.size(0) &&
                a.shape().numel_from(2) == b.shape().numel_from(2),
            "concat_channels: shapes " << a.shape() << " and " << b.shape() << " differ outside axis 1");
  Shape s = a.shape();
  s[1] = a.size(1) + b.size(1);
  auto out = Tensor<T, cuda>::uninitialized(s);  // [B, Ca + Cb, ...]
  cuda_kernels::concat_rows<T>(a.data(), b.data(), out.data(), a.size(0), a.shape().numel_from(1),
                               b.shape().numel_from(1));
  return out;
}

/// Inverse of concat_channels: [B, Ca + Cb, ...] -> ([B, Ca, ...], [B, Cb, ...]).
template <StorageScalar T>
std::pair<Tensor<T, cuda>, Tensor<T, cuda>> split_channels(const Tensor<T, cuda>& x, std::int64_t channels_a) {
  SPO_CHECK(x.rank() >= 2 && channels_a >= 0 && channels_a <= x.size(1),
            "split_channels: cannot split " << channels_a << " channels off shape " << x.shape());
  Shape sa = x.shape(), sb = x.shape();
  sa[1] = channels_a;
  sb[1] = x.size(1) - channels_a;
  auto a = Tensor<T, cuda>::uninitialized(sa);  // [B, Ca, ...]
  auto b = Tensor<T, cuda>::uninitialized(sb);  // [B, Cb, ...]
  cuda_kernels::split_rows<T>(x.data(), a.data(), b.data(), x.size(0), sa.numel_from(1), sb.numel_from(1));
  return {std::move(a), std::move(b)};
}

/// [B, C, H, W] -> [B, H*W, C] (x.permute(0, 2, 3, 1).reshape(B, H*W, C)).
template <StorageScalar T>
Tensor<T, cuda> nchw_to_tokens(const Tensor<T, cuda>& x) {
  SPO_CHECK(x.rank() == 4, "nchw_to_tokens expects [B, C, H, W], got " << x.shape());
  const std::int64_t b = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  auto out = Tensor<T, cuda>::uninitialized(Shape{b, hw, c});  // [B, HW, C]
  cuda_kernels::batched_transpose<T>(x.data(), out.data(), b, c, hw);
  return out;
}

/// [B, H*W, C] -> [B, C, H, W].
template <StorageScalar T>
Tensor<T, cuda> tokens_to_nchw(const Tensor<T, cuda>& x, std::int64_t h, std::int64_t w) {
  SPO_CHECK(x.rank() == 3 && x.size(1) == h * w,
            "tokens_to_nchw: shape " << x.shape() << " is not [B, " << h * w << ", C]");
  const std::int64_t b = x.size(0), c = x.size(2), hw = h * w;
  auto out = Tensor<T, cuda>::uninitialized(Shape{b, c, h, w});  // [B, C, H, W]
  cuda_kernels::batched_transpose<T>(x.data(), out.data(), b, hw, c);
  return out;
}

/// x[b, c, ...] += v[b, c] (a per-channel bias broadcast over spatial axes).
template <StorageScalar T>
void add_channel_bias(Tensor<T, cuda>& x, const Tensor<T, cuda>& v) {
  SPO_CHECK(x.rank() >= 2 && v.rank() == 2 && v.size(0) == x.size(0) && v.size(1) == x.size(1),
            "add_channel_bias: " << v.shape() << " does not broadcast over " << x.shape());
  cuda_kernels::add_plane_bias<T>(x.data(), v.data(), x.size(0) * x.size(1), x.shape().numel_from(2));
}

/// Sum over spatial axes: [B, C, ...] -> [B, C] (the backward of add_channel_bias; sums in double).
template <StorageScalar T>
Tensor<T, cuda> sum_spatial(const Tensor<T, cuda>& x) {
  SPO_CHECK(x.rank() >= 2, "sum_spatial expects [B, C, ...], got " << x.shape());
  auto out = Tensor<T, cuda>::uninitialized(Shape{x.size(0), x.size(1)});  // [B, C]
  cuda_kernels::sum_planes<T>(x.data(), out.data(), x.size(0) * x.size(1), x.shape().numel_from(2), 1);
  return out;
}

/// a += b elementwise (same shape).
template <StorageScalar T>
void add_inplace(Tensor<T, cuda>& a, const Tensor<T, cuda>& b) {
  check_same_shape(a.shape(), b.shape(), "add_inplace");
  axpy<T>(1, b.view(), a.view());
}

}  // namespace spo
