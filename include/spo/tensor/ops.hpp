// SPDX-License-Identifier: MIT
/// @brief Elementwise and reduction operations on host tensors used across layers, losses and tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "spo/core/half.hpp"
#include "spo/core/parallel.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// Fills t with standard normal numbers from the generator's stream and advances it (see Generator).
template <Scalar T>
void fill_normal(TensorView<T, cpu> t, Generator& gen, T mean = T(0), T stddev = T(1)) {
  const std::uint64_t first = gen.reserve(static_cast<std::uint64_t>(t.numel()));
  const std::uint64_t seed = gen.seed;
  T* p = t.data();
  const std::int64_t n = t.numel();
  // One Philox block and two Box-Muller pairs give 4 consecutive elements (the same values as rng::normal_at).
  parallel_for(
      0, (n + 3) / 4,
      [&](std::int64_t blk) {
        const auto z = rng::normal4(seed, first + static_cast<std::uint64_t>(blk));
        const std::int64_t base = 4 * blk;
        for (std::int64_t j = 0; j < 4 && base + j < n; ++j)
          p[base + j] = mean + stddev * static_cast<T>(z[static_cast<std::size_t>(j)]);
      },
      1024);
}

/// Fills t with uniform numbers in [lo, hi) from the generator's stream and advances it.
template <Scalar T>
void fill_uniform(TensorView<T, cpu> t, Generator& gen, T lo = T(0), T hi = T(1)) {
  const std::uint64_t first = gen.reserve(static_cast<std::uint64_t>(t.numel()));
  const std::uint64_t seed = gen.seed;
  T* p = t.data();
  parallel_for(
      0, t.numel(),
      [&](std::int64_t i) {
        p[i] = lo + (hi - lo) * static_cast<T>(rng::uniform_at(seed, first, static_cast<std::uint64_t>(i)));
      },
      4096);
}

/// Every element of t set to value.
template <Scalar T>
void fill(TensorView<T, cpu> t, T value) {
  std::fill_n(t.data(), t.numel(), value);
}

template <Scalar T>
Tensor<T, cpu> randn(Shape shape, Generator& gen, T stddev = T(1)) {
  auto t = Tensor<T, cpu>::uninitialized(shape);
  fill_normal(t.view(), gen, T(0), stddev);
  return t;
}

/// y += alpha * x
template <Scalar T>
void axpy(T alpha, TensorView<const T, cpu> x, TensorView<T, cpu> y) {
  check_same_shape(x.shape(), y.shape(), "axpy");
  as_array(y) += alpha * as_array(x);
}

/// y *= alpha
template <Scalar T>
void scale(T alpha, TensorView<T, cpu> y) {
  as_array(y) *= alpha;
}

/// Sum of elementwise products, accumulated in double.
template <Scalar T>
double dot(TensorView<const T, cpu> a, TensorView<const T, cpu> b) {
  check_same_shape(a.shape(), b.shape(), "dot");
  return (as_array(a).template cast<double>() * as_array(b).template cast<double>()).sum();
}

template <Scalar T>
double max_abs_diff(TensorView<const T, cpu> a, TensorView<const T, cpu> b) {
  check_same_shape(a.shape(), b.shape(), "max_abs_diff");
  if (a.numel() == 0) return 0.0;
  return (as_array(a).template cast<double>() - as_array(b).template cast<double>()).abs().maxCoeff();
}

/// Converts between scalar types on the host (e.g. float parameters into a double model for gradient checks, float
/// weights into half storage): convert_scalar per element.
template <StorageScalar To, StorageScalar From>
Tensor<To, cpu> cast(const Tensor<From, cpu>& t) {
  auto out = Tensor<To, cpu>::uninitialized(t.shape());  // t.shape
  if constexpr (Scalar<To> && Scalar<From>) {
    as_array(out.view()) = as_array(t.view()).template cast<To>();
  } else {
    const From* src = t.data();
    To* dst = out.data();
    parallel_for(
        0, t.numel(), [&](std::int64_t i) { dst[i] = convert_scalar<To>(src[i]); }, std::int64_t{1} << 16);
  }
  return out;
}

}  // namespace spo
