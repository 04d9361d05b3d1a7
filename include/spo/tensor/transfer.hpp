// SPDX-License-Identifier: MIT
/// @brief Device-generic element copies and transfers between devices, for code templated on the device type.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo {

/// Copies n elements from src to dst, both in memory of device D (ordered on D's default stream).
template <Device D, StorageScalar T>
void copy_elements(const T* src, std::int64_t n, T* dst) {
  memory_ops<D>::copy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
}

/*!
  REQUIRES
    - sources.size() == rows.size() >= 1; every source is [B_i, ...] with the same row shape, 0 <= rows[i] < B_i
  ENSURES
    - row rows[i] of *sources[i] for every i, stacked in order: [rows.size(), ...] on D (one device copy per row)
!*/
template <Scalar T, Device D>
Tensor<T, D> gather_rows(std::span<const Tensor<T, D>* const> sources, std::span<const std::int64_t> rows) {
  SPO_CHECK(!sources.empty() && sources.size() == rows.size(),
            "gather_rows: " << sources.size() << " sources for " << rows.size() << " rows");
  Shape s = sources[0]->shape();
  SPO_CHECK(s.rank() >= 1, "gather_rows: expected a batched tensor, got shape " << s);
  const std::int64_t per = s[0] == 0 ? 0 : sources[0]->numel() / s[0];
  s[0] = static_cast<std::int64_t>(rows.size());
  auto out = Tensor<T, D>::uninitialized(s);  // [rows.size(), ...]
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Tensor<T, D>& x = *sources[i];
    SPO_CHECK(rows[i] >= 0 && rows[i] < x.size(0) && x.numel() == x.size(0) * per,
              "gather_rows: row " << rows[i] << " of a tensor of shape " << x.shape() << " (rows of " << per
                                  << " elements expected)");
    copy_elements<D>(x.data() + rows[i] * per, per, out.data() + static_cast<std::int64_t>(i) * per);
  }
  return out;
}

/// Rows `rows` of x [B, ...] stacked in order: [rows.size(), ...] on x's device (no rows: [0, ...]).
template <Scalar T, Device D>
Tensor<T, D> gather_rows(const Tensor<T, D>& x, std::span<const std::int64_t> rows) {
  if (rows.empty()) {
    Shape s = x.shape();
    SPO_CHECK(s.rank() >= 1, "gather_rows: expected a batched tensor, got shape " << s);
    s[0] = 0;
    return Tensor<T, D>::uninitialized(s);  // [0, ...]
  }
  const std::vector<const Tensor<T, D>*> sources(rows.size(), &x);
  return gather_rows<T, D>(sources, rows);
}

/*!
  A tensor on device To with the contents of x: a copy on the same device, else the device's transfer (to_host /
  to_device, found by argument-dependent lookup once the device's header, e.g. spo/cuda.hpp, is included).
!*/
template <Device To, StorageScalar T, Device From>
Tensor<T, To> transfer(const Tensor<T, From>& x) {
  if constexpr (std::same_as<To, From>)
    return x;
  else if constexpr (std::same_as<To, cpu>)
    return to_host(x);
  else
    return to_device(x);
}

/// The same for a tensor the caller gives up: moved, not copied, when it is already on To.
template <Device To, StorageScalar T, Device From>
Tensor<T, To> transfer(Tensor<T, From>&& x) {
  if constexpr (std::same_as<To, From>)
    return std::move(x);
  else
    return transfer<To>(std::as_const(x));
}

/// x in scalar To on its own device: x itself (moved, not copied) when it already is, else cast<To>(x) (one rounding
/// per element; the device's cast found by argument-dependent lookup, as for transfer).
template <StorageScalar To, StorageScalar From, Device D>
Tensor<To, D> as_scalar(Tensor<From, D> x) {
  if constexpr (std::same_as<To, From>)
    return x;
  else
    return cast<To>(x);
}

/// Standard normal numbers on device D from the generator's stream (the same numbers on every device).
template <Scalar T, Device D>
Tensor<T, D> random_normal(Shape shape, Generator& gen) {
  auto t = Tensor<T, D>::uninitialized(shape);  // shape
  fill_normal(t.view(), gen, T(0), T(1));
  return t;
}

}  // namespace spo
