// SPDX-License-Identifier: MIT
/// @brief Named<"key", L>: a layer whose parameters live under a fixed child key (torch's attribute name).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

#include "spo/core/device.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/parameter.hpp"

namespace spo::nn {

/// A string literal usable as a template argument: Named<"conv1", L>.
template <std::size_t N>
struct FixedString {
  char chars[N]{};
  constexpr FixedString(const char (&s)[N]) { std::copy_n(s, N, chars); }  // NOLINT: implicit from a literal
  constexpr std::string_view view() const { return {chars, N - 1}; }
};

/*!
  WHAT THIS REPRESENTS
    The layer L (it is-a L: same members, constructors and concept) whose parameter names gain the segment Key:
    visit_parameters(f, "down") names L's `weight` as "down.<Key>.weight". In a Sequential, a Named child is
    keyed by Key instead of its index.
!*/
template <FixedString Key, class L>
class Named : public L {
  static_assert(Layer<L>, "spo::nn::Named: the wrapped type must satisfy the concept spo::nn::Layer");

 public:
  using layer_type = L;
  static constexpr std::string_view key = Key.view();

  using L::L;
  Named() = default;
  Named(const L& layer) : L(layer) {}        // NOLINT: implicit, so containers can be built from plain layers
  Named(L&& layer) : L(std::move(layer)) {}  // NOLINT

  L& layer() { return *this; }
  const L& layer() const { return *this; }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    L::visit_parameters(f, join_name(prefix, key));
  }
};

namespace detail {
/// scalar_type / device_type of a layer, or float / cpu for a non-layer (so that only the concept check reports).
template <class L>
struct layer_types {
  using scalar_type = float;
  using device_type = cpu;
};
template <Layer L>
struct layer_types<L> {
  using scalar_type = typename L::scalar_type;
  using device_type = typename L::device_type;
};

template <class L>
struct is_named : std::false_type {};
template <FixedString Key, class L>
struct is_named<Named<Key, L>> : std::true_type {};
}  // namespace detail

/// True for Named<Key, L>: such a child carries its own key.
template <class L>
inline constexpr bool is_named_v = detail::is_named<std::remove_cvref_t<L>>::value;

}  // namespace spo::nn
