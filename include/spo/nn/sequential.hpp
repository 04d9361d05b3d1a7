// SPDX-License-Identifier: MIT
/// @brief Compile-time containers: Sequential<Layers...> (torch.nn.Sequential) and Repeat<N, Block>.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "spo/core/device.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/named.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::nn {

namespace detail {

template <class First, class... Rest>
consteval bool same_scalar_and_device() {
  if constexpr ((Layer<First> && ... && Layer<Rest>)) {
    return ((std::same_as<typename First::scalar_type, typename Rest::scalar_type> &&
             std::same_as<typename First::device_type, typename Rest::device_type>)&&...);
  } else {
    return true;
  }
}

template <class First, class...>
struct first_of {
  using type = First;
};

}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    y = c_{n-1}(... c_1(c_0(x))), backward in reverse order. Parameter names are "<i>.<name>" for the i-th child,
    as torch.nn.Sequential, or "<Key>.<name>" for a Named<Key, L> child.
  REQUIRES
    - every child satisfies spo::nn::Layer, all with the same scalar_type and device_type (static_assert)
!*/
template <class... Children>
class Sequential {
  static_assert(sizeof...(Children) > 0, "spo::nn::Sequential: needs at least one child");
  static_assert((Layer<Children> && ...), "spo::nn::Sequential: every child must satisfy the concept spo::nn::Layer");
  static_assert(detail::same_scalar_and_device<Children...>(),
                "spo::nn::Sequential: every child (an spo::nn::Layer) must have the same scalar_type (spo::Scalar) "
                "and device_type (spo::Device)");

 public:
  using scalar_type = typename detail::layer_types<typename detail::first_of<Children...>::type>::scalar_type;
  using device_type = typename detail::layer_types<typename detail::first_of<Children...>::type>::device_type;
  using tensor = Tensor<scalar_type, device_type>;
  static constexpr std::size_t size = sizeof...(Children);

  Sequential() = default;
  /// One argument per child, each converted to (or used to construct) that child.
  template <class... Args>
  requires(sizeof...(Args) == sizeof...(Children) &&
           (std::constructible_from<Children, Args&&> && ...)) explicit Sequential(Args&&... args)
      : children_(Children(std::forward<Args>(args))...) {}
  /// One tuple of constructor arguments per child: Sequential<A, B>(std::piecewise_construct, {a_args}, {b_args}).
  template <class... Tuples>
  requires(sizeof...(Tuples) == sizeof...(Children)) Sequential(std::piecewise_construct_t, Tuples&&... args)
      : children_(std::make_from_tuple<Children>(std::forward<Tuples>(args))...) {}

  tensor forward(const tensor& x) { return forward_from<0>(x); }
  tensor backward(const tensor& dy) { return backward_from<sizeof...(Children) - 1>(dy); }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    [&]<std::size_t... I>(std::index_sequence<I...>) { (visit_child<I>(f, prefix), ...); }
    (std::index_sequence_for<Children...>{});
  }

  template <std::size_t I>
  auto& get() {
    return std::get<I>(children_);
  }
  template <std::size_t I>
  const auto& get() const {
    return std::get<I>(children_);
  }

 private:
  template <std::size_t I>
  tensor forward_from(const tensor& x) {
    if constexpr (I + 1 == sizeof...(Children))
      return std::get<I>(children_).forward(x);
    else
      return forward_from<I + 1>(std::get<I>(children_).forward(x));
  }
  template <std::size_t I>
  tensor backward_from(const tensor& dy) {
    if constexpr (I == 0)
      return std::get<0>(children_).backward(dy);
    else
      return backward_from<I - 1>(std::get<I>(children_).backward(dy));
  }
  template <std::size_t I, class F>
  void visit_child(F& f, std::string_view prefix) {
    auto& child = std::get<I>(children_);
    if constexpr (is_named_v<decltype(child)>)
      child.visit_parameters(f, prefix);
    else
      child.visit_parameters(f, join_name(prefix, std::to_string(I)));
  }

  std::tuple<Children...> children_;
};

/*!
  WHAT THIS REPRESENTS
    N copies of Block applied in sequence (dlib's repeat; torch's nn.Sequential / ModuleList of identical blocks):
    parameter names "0.<name>", "1.<name>", ...
  REQUIRES
    - Block satisfies spo::nn::Layer (static_assert), N > 0
!*/
template <std::size_t N, class Block>
class Repeat {
  static_assert(N > 0, "spo::nn::Repeat: needs at least one block");
  static_assert(Layer<Block>, "spo::nn::Repeat: the block must satisfy the concept spo::nn::Layer");

 public:
  using block_type = Block;
  using scalar_type = typename detail::layer_types<Block>::scalar_type;
  using device_type = typename detail::layer_types<Block>::device_type;
  using tensor = Tensor<scalar_type, device_type>;
  static constexpr std::size_t size = N;

  Repeat() = default;
  /// Every block is constructed from the same arguments (a prototype block is copied).
  template <class... Args>
  requires(sizeof...(Args) > 0 && std::constructible_from<Block, const Args&...>) explicit Repeat(const Args&... args)
      : blocks_([&]<std::size_t... I>(std::index_sequence<I...>) {
          return std::array<Block, N>{((void)I, Block(args...))...};
        }(std::make_index_sequence<N>{})) {}

  tensor forward(const tensor& x) {
    tensor h = blocks_[0].forward(x);
    for (std::size_t i = 1; i < N; ++i) h = blocks_[i].forward(h);
    return h;
  }
  tensor backward(const tensor& dy) {
    tensor g = blocks_[N - 1].backward(dy);
    for (std::size_t i = N - 1; i-- > 0;) g = blocks_[i].backward(g);
    return g;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    for (std::size_t i = 0; i < N; ++i) blocks_[i].visit_parameters(f, join_name(prefix, std::to_string(i)));
  }

  Block& operator[](std::size_t i) { return blocks_[i]; }
  const Block& operator[](std::size_t i) const { return blocks_[i]; }
  template <std::size_t I>
  Block& get() {
    static_assert(I < N, "spo::nn::Repeat::get: index out of range");
    return blocks_[I];
  }

 private:
  std::array<Block, N> blocks_;
};

}  // namespace spo::nn
