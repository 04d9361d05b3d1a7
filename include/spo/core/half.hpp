// SPDX-License-Identifier: MIT
/// @brief The half-precision storage scalars spo::half (IEEE 754 binary16) and spo::bfloat16, and their float
/// conversions: round to nearest even, NaN/Inf/subnormals exact, the same on the host and in device code.
#pragma once

#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <type_traits>

#include "spo/core/device.hpp"
#include "spo/core/host_device.hpp"

namespace spo {

/*!
  binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; largest finite 65504, smallest normal 2^-14,
  smallest subnormal 2^-24. Conversions are pure integer arithmetic, so they do not depend on the floating-point
  environment (rounding mode, flush-to-zero). NaN keeps its sign and top payload bits and is made quiet.
!*/
SPO_HOST_DEVICE inline std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // Inf or NaN
    if (a == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  // 65520 = 65504 + ulp/2 is a tie between 65504 (odd mantissa) and 2^16, which rounds to Inf.
  if (a >= 0x477ff000u) return sign | 0x7c00u;
  if (a >= 0x38800000u) {  // normal in f16: rebias exponent 127 -> 15 (subtract 112 << 23), round 13 dropped bits
    const std::uint32_t odd = (a >> 13) & 1u;
    return static_cast<std::uint16_t>(sign | ((a + 0xfffu + odd - 0x38000000u) >> 13));
  }
  // f16 subnormal (or zero): the result is round(|f| / 2^-24), |f| = full * 2^(e - 150).
  const int e = static_cast<int>(a >> 23);
  if (e < 102) return sign;  // |f| < 2^-25: rounds to zero (2^-25 itself is a tie to even zero, handled below)
  const std::uint32_t full = (a & 0x7fffffu) | 0x800000u;
  const int shift = 126 - e;  // in [14, 24]
  std::uint32_t q = full >> shift;
  const std::uint32_t rem = full & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (q & 1u))) ++q;  // q may become 0x400, the smallest normal
  return static_cast<std::uint16_t>(sign | q);
}

SPO_HOST_DEVICE inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  const std::uint32_t m = h & 0x3ffu;
  if (e == 0x1fu) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return std::bit_cast<float>(sign);
    // subnormal m * 2^-24: normalise so the leading one becomes the implicit bit.
    const int lead = std::bit_width(m) - 1;  // position of the leading one, 0..9
    const std::uint32_t exp = static_cast<std::uint32_t>(lead - 24 + 127);
    const std::uint32_t mant = (m << (23 - lead)) & 0x7fffffu;
    return std::bit_cast<float>(sign | (exp << 23) | mant);
  }
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

/// bfloat16 is the top half of a binary32: 8 exponent bits, 7 mantissa bits.
SPO_HOST_DEVICE inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  const std::uint32_t odd = (x >> 16) & 1u;
  return static_cast<std::uint16_t>((x + 0x7fffu + odd) >> 16);  // carries into the exponent give Inf correctly
}

SPO_HOST_DEVICE inline float bf16_bits_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// The conversions of the binary16 format (Format of float16).
struct binary16_format {
  SPO_HOST_DEVICE static std::uint16_t encode(float f) { return float_to_half_bits(f); }
  SPO_HOST_DEVICE static float decode(std::uint16_t b) { return half_bits_to_float(b); }
};

/// The conversions of the bfloat16 format (Format of float16).
struct bfloat16_format {
  SPO_HOST_DEVICE static std::uint16_t encode(float f) { return float_to_bf16_bits(f); }
  SPO_HOST_DEVICE static float decode(std::uint16_t b) { return bf16_bits_to_float(b); }
};

/*!
  WHAT THIS REPRESENTS
    A 16-bit floating-point storage scalar: the bit pattern of a value in Format (binary16_format: IEEE binary16,
    spo::half; bfloat16_format: the top 16 bits of a binary32, spo::bfloat16). Values are stored in it and converted
    from and to float (round to nearest even on the way in, exact on the way out); arithmetic is done in float
    (compute_type_t). Layout-compatible with CUDA's __half / __nv_bfloat16 and with the F16 / BF16 dtypes of
    safetensors, so tensors of it are filled straight from a checkpoint's bytes.
!*/
template <class Format>
struct float16 {
  std::uint16_t bits = 0;
  float16() = default;
  SPO_HOST_DEVICE explicit float16(float f) : bits(Format::encode(f)) {}
  SPO_HOST_DEVICE explicit operator float() const { return Format::decode(bits); }
  SPO_HOST_DEVICE static float16 from_bits(std::uint16_t b) {
    float16 h;
    h.bits = b;
    return h;
  }
  friend bool operator==(float16 a, float16 b) { return a.bits == b.bits; }  ///< bitwise (NaN == NaN, -0 != +0)
};

using half = float16<binary16_format>;
using bfloat16 = float16<bfloat16_format>;

static_assert(sizeof(half) == 2 && std::is_trivially_copyable_v<half> && std::is_standard_layout_v<half>);
static_assert(sizeof(bfloat16) == 2 && std::is_trivially_copyable_v<bfloat16> && std::is_standard_layout_v<bfloat16>);

/// The 16-bit storage scalars.
template <class T>
concept HalfScalar = std::same_as<T, half> || std::same_as<T, bfloat16>;

/// What a tensor may hold for a network: the compute scalars (float, double) and the 16-bit storage scalars.
template <class T>
concept StorageScalar = Scalar<T> || HalfScalar<T>;

/// The scalar arithmetic on T happens in: T itself for float and double, float for the 16-bit types.
template <StorageScalar T>
using compute_type_t = std::conditional_t<HalfScalar<T>, float, T>;

/// x converted to the storage scalar To: a plain conversion between float and double, through float (rounded to
/// nearest even) into a 16-bit type, exact out of one.
template <StorageScalar To, StorageScalar From>
SPO_HOST_DEVICE To convert_scalar(From x) {
  if constexpr (std::same_as<To, From>)
    return x;
  else if constexpr (HalfScalar<To>)
    return To(static_cast<float>(x));
  else
    return static_cast<To>(static_cast<float>(x));
}

}  // namespace spo
