// SPDX-License-Identifier: MIT
/// @brief Image formats as types: the channel count and resolution a diffusion model generates and a preference
/// model scores, so that a preference policy built for other images fails to compile against the model.
#pragma once

#include <concepts>
#include <cstdint>

namespace spo {

/// Images of Channels x Height x Width (a diffusion model's samples, a preference model's inputs).
template <std::int64_t Channels, std::int64_t Height, std::int64_t Width = Height>
struct ImageFormat {
  static_assert(Channels >= 1 && Height >= 1 && Width >= 1, "ImageFormat: extents must be positive");
  static constexpr std::int64_t channels = Channels;
  static constexpr std::int64_t height = Height;
  static constexpr std::int64_t width = Width;
};

namespace detail {
template <class F>
inline constexpr bool is_image_format = false;
template <std::int64_t C, std::int64_t H, std::int64_t W>
inline constexpr bool is_image_format<ImageFormat<C, H, W>> = true;
}  // namespace detail

/// A specialisation of ImageFormat.
template <class F>
concept ImageFormatType = detail::is_image_format<F>;

/// A policy that declares the images it works on: `using image_format = ImageFormat<C, H, W>;`.
template <class P>
concept HasImageFormat = requires {
  typename P::image_format;
}
&&ImageFormatType<typename P::image_format>;

/// Two policies (e.g. a diffusion model and a preference model) that work on the same images.
template <class A, class B>
concept SameImageFormat =
    HasImageFormat<A> && HasImageFormat<B> && std::same_as<typename A::image_format, typename B::image_format>;

/// Fashion-MNIST as spo's models see it: one channel, 28 x 28 padded to 32 x 32.
using FashionImage = ImageFormat<1, 32>;

}  // namespace spo
