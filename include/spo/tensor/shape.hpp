// SPDX-License-Identifier: MIT
/// @brief Shape: a small fixed-capacity list of extents (row-major, last axis contiguous).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>

#include "spo/core/error.hpp"

namespace spo {

class Shape {
 public:
  static constexpr int max_rank = 6;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) {
    SPO_CHECK(static_cast<int>(dims.size()) <= max_rank, "rank " << dims.size() << " exceeds " << max_rank);
    for (auto d : dims) push_back(d);
  }
  template <class It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<std::int64_t>(*first));
  }

  int rank() const { return rank_; }
  std::int64_t operator[](int axis) const { return dims_[normalize(axis)]; }
  std::int64_t& operator[](int axis) { return dims_[normalize(axis)]; }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  /// Product of the extents from `axis` to the end (the stride of axis - 1).
  std::int64_t numel_from(int axis) const {
    std::int64_t n = 1;
    for (int i = axis; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  void push_back(std::int64_t d) {
    SPO_CHECK(rank_ < max_rank, "rank exceeds " << max_rank);
    SPO_CHECK(d >= 0, "negative extent " << d);
    dims_[rank_++] = d;
  }
  const std::int64_t* begin() const { return dims_.data(); }
  const std::int64_t* end() const { return dims_.data() + rank_; }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) {
    os << '[';
    for (int i = 0; i < s.rank_; ++i) os << (i ? ", " : "") << s.dims_[i];
    return os << ']';
  }
  std::string str() const {
    std::ostringstream os;
    os << *this;
    return os.str();
  }

 private:
  int normalize(int axis) const {
    const int a = axis < 0 ? axis + rank_ : axis;
    SPO_CHECK(a >= 0 && a < rank_, "axis " << axis << " out of range for rank " << rank_);
    return a;
  }
  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

}  // namespace spo
