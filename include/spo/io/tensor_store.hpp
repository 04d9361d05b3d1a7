// SPDX-License-Identifier: MIT
/// @brief TensorStore: anything that serves named stored tensors (a safetensors file in memory, a mapped file, a
/// sharded checkpoint), and reading its tensors into spo tensors.
#pragma once

#include <concepts>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::io {

/*!
  WHAT THIS REPRESENTS
    A read-only collection of named stored tensors, as state-dict loading reads it.
  REQUIRES
    - s.source: where the tensors come from (a path), the prefix of every error message
    - s.contains(name); s.names(): every name; s.bytes(name): the stored dtype, shape and bytes of one tensor, valid
      while s lives (an spo::input_error naming s.source and the name when absent)
!*/
template <class S>
concept TensorStore = requires(const S& s, std::string_view name) {
  { s.source } -> std::convertible_to<std::string>;
  { s.contains(name) } -> std::same_as<bool>;
  { s.names() } -> std::same_as<std::vector<std::string>>;
  { s.bytes(name) } -> std::same_as<TensorBytes>;
};
static_assert(TensorStore<NamedTensors>);

/// The stored shape of `name` as a spo::Shape; an error naming the store when its rank exceeds Shape::max_rank.
template <TensorStore S>
Shape stored_shape(const S& s, std::string_view name) {
  const TensorBytes t = s.bytes(name);
  SPO_EXPECT(static_cast<int>(t.shape.size()) <= Shape::max_rank,
             s.source << ": tensor \"" << name << "\" has rank " << t.shape.size() << " > " << Shape::max_rank);
  return Shape(t.shape.begin(), t.shape.end());
}

/// Tensor `name` converted to T (F16/BF16/F32 widen exactly; F64 -> float rounds to nearest even; an F16 tensor
/// read as half, or BF16 as bfloat16, is copied bit for bit: 16-bit weights load without a float copy).
template <StorageScalar T, TensorStore S>
Tensor<T, cpu> read_tensor(const S& s, std::string_view name) {
  auto out = Tensor<T, cpu>::uninitialized(stored_shape(s, name));
  detail::decode_all<T>(s.bytes(name), out.data());
  return out;
}

/// Converts tensor `name` into `dst`, whose shape must equal the stored shape (an error naming both otherwise).
template <StorageScalar T, TensorStore S>
void read_tensor_into(const S& s, std::string_view name, TensorView<T, cpu> dst) {
  const Shape shape = stored_shape(s, name);
  SPO_EXPECT(shape == dst.shape(), s.source << ": tensor \"" << name << "\": stored shape " << shape
                                            << " does not match destination shape " << dst.shape());
  detail::decode_all<T>(s.bytes(name), dst.data());
}

}  // namespace spo::io
