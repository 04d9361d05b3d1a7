// SPDX-License-Identifier: MIT
/// @brief Tensor<T, Device>: owning, contiguous, row-major; TensorView<T, Device>: non-owning pointer + shape.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/tensor/allocator.hpp"
#include "spo/tensor/shape.hpp"

namespace spo {

/// Bulk memory operations of one device; the CUDA specialisation lives under tensor/cuda/.
template <Device D>
struct memory_ops;

template <>
struct memory_ops<cpu> {
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes) std::memset(dst, 0, bytes);
  }
};

/*!
  WHAT THIS REPRESENTS
    A non-owning view of numel() contiguous elements of type T (possibly const) on device D, with a shape.
    It never outlives the tensor or buffer it was made from.
!*/
template <class T, Device D = cpu>
class TensorView {
 public:
  using value_type = std::remove_const_t<T>;
  using device_type = D;

  TensorView() = default;
  TensorView(T* data, Shape shape) : data_(data), shape_(shape) {}
  /// A mutable view converts to a const view.
  template <class U>
  requires(std::is_const_v<T>&& std::same_as<std::remove_const_t<T>, U>) TensorView(TensorView<U, D> other)
      : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t size(int axis) const { return shape_[axis]; }
  int rank() const { return shape_.rank(); }

  T& operator[](std::int64_t i) const requires(D::host_accessible) { return data_[i]; }

  /// Rows [first, first + count) of the leading axis.
  TensorView slice(std::int64_t first, std::int64_t count) const {
    SPO_CHECK(shape_.rank() >= 1 && first >= 0 && count >= 0 && first + count <= shape_[0],
              "slice [" << first << ", " << first + count << ") out of range for shape " << shape_);
    Shape s = shape_;
    s[0] = count;
    return TensorView(data_ + first * shape_.numel_from(1), s);
  }
  /// Same memory, new shape with the same number of elements.
  TensorView reshaped(Shape s) const {
    SPO_CHECK(s.numel() == numel(), "cannot view shape " << shape_ << " as " << s);
    return TensorView(data_, s);
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

/*!
  WHAT THIS REPRESENTS
    An owning tensor: numel() contiguous elements on device D from caching_allocator<D>. Copying copies the
    elements (a deep copy, e.g. a frozen reference model is a plain copy of the policy); moving is O(1).
  INVARIANTS
    data() is 64-byte aligned or null; shape().numel() elements are allocated.
!*/
template <class T, Device D = cpu>
class Tensor {
 public:
  using value_type = T;
  using device_type = D;
  using view_type = TensorView<T, D>;
  using const_view_type = TensorView<const T, D>;

  Tensor() = default;
  /// Zero-filled tensor.
  explicit Tensor(Shape shape) : Tensor(uninitialized(shape)) { fill_zero(); }
  /// Host tensor from values (for tests and small constants).
  Tensor(Shape shape, std::initializer_list<T> values) requires(D::host_accessible)
      : Tensor(shape, std::vector<T>(values)) {}
  Tensor(Shape shape, const std::vector<T>& values) requires(D::host_accessible) : Tensor(uninitialized(shape)) {
    SPO_CHECK(static_cast<std::int64_t>(values.size()) == shape.numel(), values.size()
                                                                             << " values for shape " << shape);
    std::copy(values.begin(), values.end(), data_);
  }

  static Tensor uninitialized(Shape shape) {
    Tensor t;
    t.shape_ = shape;
    t.data_ = static_cast<T*>(caching_allocator<D>::instance().allocate(t.bytes()));
    return t;
  }
  static Tensor zeros_like(const Tensor& other) { return Tensor(other.shape()); }

  Tensor(const Tensor& other) : Tensor(uninitialized(other.shape_)) {
    memory_ops<D>::copy(data_, other.data_, bytes());
  }
  Tensor(Tensor&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), shape_(std::exchange(other.shape_, Shape{0})) {}
  Tensor& operator=(const Tensor& other) {
    if (this != &other) {
      if (shape_.numel() != other.shape_.numel()) *this = uninitialized(other.shape_);
      shape_ = other.shape_;
      memory_ops<D>::copy(data_, other.data_, bytes());
    }
    return *this;
  }
  Tensor& operator=(Tensor&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      shape_ = std::exchange(other.shape_, Shape{0});
    }
    return *this;
  }
  ~Tensor() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t size(int axis) const { return shape_[axis]; }
  int rank() const { return shape_.rank(); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }
  bool empty() const { return numel() == 0; }

  T& operator[](std::int64_t i) requires(D::host_accessible) { return data_[i]; }
  const T& operator[](std::int64_t i) const requires(D::host_accessible) { return data_[i]; }

  view_type view() { return view_type(data_, shape_); }
  const_view_type view() const { return const_view_type(data_, shape_); }
  operator view_type() { return view(); }
  operator const_view_type() const { return view(); }

  /// Changes the shape in place; the element count must not change.
  Tensor& reshape(Shape s) & {
    SPO_CHECK(s.numel() == numel(), "cannot reshape " << shape_ << " to " << s);
    shape_ = s;
    return *this;
  }
  Tensor reshape(Shape s) && {
    reshape(s);
    return std::move(*this);
  }

  void fill_zero() { memory_ops<D>::zero(data_, bytes()); }

 private:
  void release() noexcept {
    if (data_) caching_allocator<D>::instance().deallocate(data_, bytes());
    data_ = nullptr;
  }
  T* data_ = nullptr;
  Shape shape_{0};  // empty: one axis of extent 0 (a rank-0 shape would hold one element)
};

/// Throws with both shapes when they differ; `what` names the operation.
inline void check_same_shape(const Shape& a, const Shape& b, const char* what) {
  SPO_CHECK(a == b, what << ": shape " << a << " does not match " << b);
}

}  // namespace spo

/*!
  WHAT THIS REPRESENTS
    spo::kernels holds the device kernels of the layers and tensor operations: one overload per device, taking
    Tensor<T, cpu> or Tensor<T, cuda>, with the same name and contract. The CPU overloads are declared in the CPU
    headers beside the code that calls them, the CUDA overloads in the CUDA headers (spo/cuda.hpp includes them all).
    The namespace is inline in spo, so that a call made without qualification inside a device-generic template
    (e.g. gemm(...) in nn::Linear<T, D>) finds the overload of D by argument-dependent lookup on Tensor<T, D>, even
    when the CUDA headers are included after the template.
!*/
namespace spo::inline kernels {

/// True for a device whose kernel overloads are declared in this translation unit: spo::cpu always, spo::cuda once
/// a CUDA kernel header (tensor/cuda/kernels.hpp, included by all of them) is included. The device-generic layers
/// check it, so that forgetting spo/cuda.hpp is a readable static_assert rather than an overload error.
template <Device D>
inline constexpr bool kernels_declared = std::same_as<D, cpu>;

/// True for a device with kernels for the 16-bit storage scalars (half, bfloat16): spo::cuda, declared with its
/// kernels (tensor/cuda/kernels.hpp). The CPU's layer kernels are float and double.
template <Device D>
inline constexpr bool half_kernels = false;

}  // namespace spo::inline kernels
