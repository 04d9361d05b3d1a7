// SPDX-License-Identifier: MIT
/// @brief Eigen maps over host tensor memory (no copies): vectors, arrays and row-major matrices.
#pragma once

#include <Eigen/Core>

#include "spo/tensor/tensor.hpp"

namespace spo {

template <class T>
using RowMajorMatrix = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
using MatrixMap =
    Eigen::Map<std::conditional_t<std::is_const_v<T>, const RowMajorMatrix<T>, RowMajorMatrix<T>>, Eigen::Aligned64>;
template <class T>
using ArrayMap =
    Eigen::Map<std::conditional_t<std::is_const_v<T>, const Eigen::Array<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                                  Eigen::Array<std::remove_const_t<T>, Eigen::Dynamic, 1>>>;

/// The view as a rows x cols row-major matrix; rows * cols must equal numel().
template <class T>
MatrixMap<T> as_matrix(TensorView<T, cpu> v, std::int64_t rows, std::int64_t cols) {
  SPO_CHECK(rows * cols == v.numel(), "cannot map shape " << v.shape() << " as " << rows << "x" << cols);
  return MatrixMap<T>(v.data(), rows, cols);
}
/// The view as a matrix of [prod(shape[:-1]), shape[-1]].
template <class T>
MatrixMap<T> as_matrix(TensorView<T, cpu> v) {
  const std::int64_t cols = v.rank() == 0 ? 1 : v.shape()[-1];
  return as_matrix(v, cols == 0 ? 0 : v.numel() / cols, cols);
}
template <class T>
ArrayMap<T> as_array(TensorView<T, cpu> v) {
  return ArrayMap<T>(v.data(), v.numel());
}
template <class T>
ArrayMap<T> as_array(Tensor<T, cpu>& t) {
  return as_array(t.view());
}
template <class T>
ArrayMap<const T> as_array(const Tensor<T, cpu>& t) {
  return as_array(t.view());
}

}  // namespace spo
