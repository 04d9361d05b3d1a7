// SPDX-License-Identifier: MIT
/// @brief The safetensors format: named tensors (F64/F32/F16/BF16, raw I64/I32/U8) plus string metadata, validated on
/// read.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/json.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; big-endian hosts are not supported");

/// Element types of the format (spellings as in the header: "F64", "F32", ...).
enum class Dtype { f64, f32, f16, bf16, i64, i32, u8 };

inline constexpr std::array<std::pair<std::string_view, Dtype>, 7> dtype_names{{{"F64", Dtype::f64},
                                                                                {"F32", Dtype::f32},
                                                                                {"F16", Dtype::f16},
                                                                                {"BF16", Dtype::bf16},
                                                                                {"I64", Dtype::i64},
                                                                                {"I32", Dtype::i32},
                                                                                {"U8", Dtype::u8}}};

inline std::string_view dtype_name(Dtype d) {
  for (const auto& [name, value] : dtype_names)
    if (value == d) return name;
  return "?";
}
inline std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (const auto& [n, value] : dtype_names)
    if (n == name) return value;
  return std::nullopt;
}
inline std::size_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::f64:
    case Dtype::i64:
      return 8;
    case Dtype::f32:
    case Dtype::i32:
      return 4;
    case Dtype::f16:
    case Dtype::bf16:
      return 2;
    case Dtype::u8:
      return 1;
  }
  return 0;
}
inline bool is_floating(Dtype d) { return d == Dtype::f64 || d == Dtype::f32 || d == Dtype::f16 || d == Dtype::bf16; }

/// The exact storage type of a scalar: float -> F32, double -> F64.
template <StorageScalar T>
inline constexpr Dtype native_dtype = std::same_as<T, double>     ? Dtype::f64
                                      : std::same_as<T, half>     ? Dtype::f16
                                      : std::same_as<T, bfloat16> ? Dtype::bf16
                                                                  : Dtype::f32;

/// "[d0, d1, ...]".
inline std::string shape_string(std::span<const std::int64_t> shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

namespace detail {
/// The keys of a map, in its order (the names() of the tensor stores).
template <class Map>
std::vector<std::string> keys_of(const Map& m) {
  std::vector<std::string> out;
  out.reserve(m.size());
  for (const auto& [k, unused] : m) out.push_back(k);
  return out;
}
}  // namespace detail

/// One stored tensor: element type, shape (rank 0 = one element; any rank) and little-endian row-major bytes.
struct StoredTensor {
  Dtype dtype = Dtype::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;

  /// The product of the extents; throws spo::error when a partial product leaves int64 (never undefined behaviour).
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape)
      if (__builtin_mul_overflow(n, d, &n))
        throw error("tensor shape " + shape_str() + " has more than 2^63-1 elements");
    return n;
  }
  std::string shape_str() const { return shape_string(shape); }
};

namespace detail {

template <class V>
V load_le(const std::byte* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
void store_le(std::byte* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

/// Element i of a stored tensor converted to T (floats round to nearest even; integers convert exactly when
/// representable).
template <StorageScalar T>
T decode_element(Dtype d, const std::byte* base, std::int64_t i) {
  switch (d) {
    case Dtype::f64:
      return static_cast<T>(load_le<double>(base + 8 * i));
    case Dtype::f32:
      return static_cast<T>(load_le<float>(base + 4 * i));
    case Dtype::f16:
      return static_cast<T>(half_bits_to_float(load_le<std::uint16_t>(base + 2 * i)));
    case Dtype::bf16:
      return static_cast<T>(bf16_bits_to_float(load_le<std::uint16_t>(base + 2 * i)));
    case Dtype::i64:
      return static_cast<T>(load_le<std::int64_t>(base + 8 * i));
    case Dtype::i32:
      return static_cast<T>(load_le<std::int32_t>(base + 4 * i));
    case Dtype::u8:
      return static_cast<T>(std::to_integer<std::uint8_t>(base[i]));
  }
  return T(0);
}

/// Stores v as dtype d. A double stored as F16/BF16 is rounded to float first (two roundings).
template <StorageScalar T>
void encode_element(Dtype d, std::byte* base, std::int64_t i, T v) {
  switch (d) {
    case Dtype::f64:
      store_le<double>(base + 8 * i, convert_scalar<double>(v));
      return;
    case Dtype::f32:
      store_le<float>(base + 4 * i, convert_scalar<float>(v));
      return;
    case Dtype::f16:
      store_le<std::uint16_t>(base + 2 * i, float_to_half_bits(convert_scalar<float>(v)));
      return;
    case Dtype::bf16:
      store_le<std::uint16_t>(base + 2 * i, float_to_bf16_bits(convert_scalar<float>(v)));
      return;
    default:
      break;
  }
  throw error("safetensors: cannot store floating-point values as " + std::string(dtype_name(d)));
}

}  // namespace detail

/// An element of a floating-point tensor that is not finite: its row-major index and "NaN", "+Inf" or "-Inf".
struct NonFiniteElement {
  std::int64_t index = 0;
  std::string_view kind;
};

namespace detail {

/// The first element of `n` IEEE values of type Bits (stored little-endian at `p`) whose exponent bits are all set.
/// Blocks are first tested without early exit (a loop the compiler vectorizes), and only a block holding such an
/// element is searched for its index.
template <class Bits>
std::optional<NonFiniteElement> find_non_finite_bits(const std::byte* p, std::int64_t n, Bits exponent, Bits mantissa) {
  constexpr std::int64_t block = 4096;
  const auto sign = static_cast<Bits>(Bits(1) << (8 * sizeof(Bits) - 1));
  for (std::int64_t start = 0; start < n; start += block) {
    const std::int64_t stop = std::min(n, start + block);
    Bits any = 0;
    for (std::int64_t i = start; i < stop; ++i)
      any |= Bits((load_le<Bits>(p + i * sizeof(Bits)) & exponent) == exponent);
    if (!any) continue;
    for (std::int64_t i = start; i < stop; ++i) {
      const Bits b = load_le<Bits>(p + i * sizeof(Bits));
      if ((b & exponent) != exponent) continue;
      return NonFiniteElement{i, (b & mantissa) ? "NaN" : (b & sign) ? "-Inf" : "+Inf"};
    }
  }
  return std::nullopt;
}

}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    A read-only view of one stored tensor: its dtype, shape and little-endian row-major bytes, wherever they live
    (a StoredTensor in memory, a mapped file). Valid while its owner is.
!*/
struct TensorBytes {
  Dtype dtype = Dtype::f32;
  std::span<const std::int64_t> shape;
  std::span<const std::byte> data;

  std::int64_t numel() const { return static_cast<std::int64_t>(data.size() / dtype_size(dtype)); }
  std::string shape_str() const { return shape_string(shape); }
};

inline TensorBytes bytes_of(const StoredTensor& t) { return {t.dtype, t.shape, t.data}; }

/// The first NaN or infinity of a floating-point tensor, read from its stored bytes in their dtype (F64, F32, F16,
/// BF16) without conversion; nullopt when every element is finite. Integer tensors hold no such values: nullopt.
inline std::optional<NonFiniteElement> find_non_finite(const TensorBytes& t) {
  const std::int64_t n = t.numel();
  const std::byte* p = t.data.data();
  switch (t.dtype) {
    case Dtype::f64:
      return detail::find_non_finite_bits<std::uint64_t>(p, n, 0x7ff0000000000000ull, 0x000fffffffffffffull);
    case Dtype::f32:
      return detail::find_non_finite_bits<std::uint32_t>(p, n, 0x7f800000u, 0x007fffffu);
    case Dtype::f16:
      return detail::find_non_finite_bits<std::uint16_t>(p, n, 0x7c00u, 0x03ffu);
    case Dtype::bf16:
      return detail::find_non_finite_bits<std::uint16_t>(p, n, 0x7f80u, 0x007fu);
    case Dtype::i64:
    case Dtype::i32:
    case Dtype::u8:
      return std::nullopt;
  }
  return std::nullopt;
}
inline std::optional<NonFiniteElement> find_non_finite(const StoredTensor& t) { return find_non_finite(bytes_of(t)); }

namespace detail {
/// Converts every element of `t` to T into `out` (t.numel() elements): a copy when the dtype is T's own.
template <StorageScalar T>
void decode_all(const TensorBytes& t, T* out) {
  const std::int64_t n = t.numel();
  const std::byte* p = t.data.data();
  if (t.dtype == native_dtype<T>) {
    if (n) std::memcpy(out, p, static_cast<std::size_t>(n) * sizeof(T));
    return;
  }
  // One loop per stored dtype, not a switch per element: a multi-GB half-precision checkpoint converts at about a
  // nanosecond per element.
  auto convert = [&](auto element) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = element(i);
  };
  switch (t.dtype) {
    case Dtype::f16:
      convert([&](std::int64_t i) { return static_cast<T>(half_bits_to_float(load_le<std::uint16_t>(p + 2 * i))); });
      return;
    case Dtype::bf16:
      convert([&](std::int64_t i) { return static_cast<T>(bf16_bits_to_float(load_le<std::uint16_t>(p + 2 * i))); });
      return;
    default:
      for (std::int64_t i = 0; i < n; ++i) out[i] = decode_element<T>(t.dtype, p, i);
  }
}
}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    The content of one safetensors file: tensors by name (sorted) and string -> string metadata.
    `source` names where it came from (a file path) and prefixes every error message.
!*/
class NamedTensors {
 public:
  using map_type = std::map<std::string, StoredTensor, std::less<>>;

  std::string source = "<memory>";
  std::map<std::string, std::string> metadata;

  /// Stores `t` under `name`, converted to `storage` (F64, F32, F16 or BF16). Replaces an existing entry.
  template <StorageScalar T>
  void set(std::string name, TensorView<const T, cpu> t, Dtype storage = native_dtype<T>) {
    SPO_CHECK(is_floating(storage),
              source << ": tensor \"" << name << "\": cannot store floating-point values as " << dtype_name(storage));
    StoredTensor s;
    s.dtype = storage;
    s.shape.assign(t.shape().begin(), t.shape().end());
    s.data.resize(static_cast<std::size_t>(t.numel()) * dtype_size(storage));
    if (storage == native_dtype<T>) {
      if (!s.data.empty()) std::memcpy(s.data.data(), t.data(), s.data.size());
    } else {
      for (std::int64_t i = 0; i < t.numel(); ++i) detail::encode_element<T>(storage, s.data.data(), i, t[i]);
    }
    set_raw(std::move(name), std::move(s));
  }
  template <StorageScalar T>
  void set(std::string name, const Tensor<T, cpu>& t, Dtype storage = native_dtype<T>) {
    set<T>(std::move(name), t.view(), storage);
  }
  /// Stores an already encoded tensor (any dtype); its byte count must match its shape.
  void set_raw(std::string name, StoredTensor t) {
    SPO_CHECK(name != "__metadata__", source << ": \"__metadata__\" is reserved and cannot name a tensor");
    for (auto d : t.shape) SPO_CHECK(d >= 0, source << ": tensor \"" << name << "\" has negative extent " << d);
    std::size_t bytes = 0;
    const bool too_large = __builtin_mul_overflow(static_cast<std::size_t>(t.numel()), dtype_size(t.dtype), &bytes);
    SPO_CHECK(!too_large && t.data.size() == bytes,
              source << ": tensor \"" << name << "\" of shape " << t.shape_str() << " and dtype " << dtype_name(t.dtype)
                     << " needs " << (too_large ? std::string("more than 2^64-1") : std::to_string(bytes))
                     << " bytes, got " << t.data.size());
    tensors_.insert_or_assign(std::move(name), std::move(t));
  }

  bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }
  std::size_t size() const { return tensors_.size(); }
  bool erase(std::string_view name) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) return false;
    tensors_.erase(it);
    return true;
  }
  const map_type& tensors() const { return tensors_; }
  /// The names, sorted.
  std::vector<std::string> names() const { return detail::keys_of(tensors_); }
  /// The stored bytes of `name` (an error naming it when absent).
  TensorBytes bytes(std::string_view name) const { return bytes_of(at(name)); }

  const StoredTensor& at(std::string_view name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw input_error(source + ": no tensor named \"" + std::string(name) + "\"");
    return it->second;
  }

  /// The stored shape as a spo::Shape (rank <= Shape::max_rank).
  Shape shape_of(std::string_view name) const {
    const auto& t = at(name);
    SPO_EXPECT(static_cast<int>(t.shape.size()) <= Shape::max_rank,
               source << ": tensor \"" << name << "\" has rank " << t.shape.size() << " > " << Shape::max_rank);
    return Shape(t.shape.begin(), t.shape.end());
  }

  /// The tensor converted to T (F16/BF16/F32 widen exactly; F64 -> float rounds to nearest even; into half or
  /// bfloat16 its own dtype is copied bit for bit, others round to nearest even through float).
  template <StorageScalar T>
  Tensor<T, cpu> get(std::string_view name) const {
    auto out = Tensor<T, cpu>::uninitialized(shape_of(name));
    decode_into<T>(name, out.data());
    return out;
  }
  /// Converts into `dst`, whose shape must equal the stored shape.
  template <StorageScalar T>
  void get_into(std::string_view name, TensorView<T, cpu> dst) const {
    const Shape s = shape_of(name);
    SPO_EXPECT(s == dst.shape(), source << ": tensor \"" << name << "\": stored shape " << s
                                        << " does not match destination shape " << dst.shape());
    decode_into<T>(name, dst.data());
  }

 private:
  template <StorageScalar T>
  void decode_into(std::string_view name, T* out) const {
    detail::decode_all<T>(bytes(name), out);
  }

  map_type tensors_;
};

/// Limit on the JSON header, as in the reference implementation (100 MB); larger values mean a corrupt file.
inline constexpr std::uint64_t safetensors_max_header_bytes = 100'000'000;

namespace detail {

struct HeaderEntry {
  std::string name;
  StoredTensor info;  // dtype and shape; data not yet filled
  std::uint64_t begin = 0, end = 0;
};
struct ParsedHeader {
  std::vector<HeaderEntry> entries;
  std::map<std::string, std::string> metadata;
};

[[noreturn]] inline void corrupt(std::string_view source, const std::string& what) {
  throw input_error(std::string(source) + ": invalid safetensors file: " + what);
}

inline std::uint64_t header_uint(const json& v, std::string_view source, const std::string& what) {
  if (!v.is_number_unsigned()) corrupt(source, what + " must be a non-negative integer, got " + v.dump());
  return v.get<std::uint64_t>();
}

/// Validates the JSON header against a data buffer of `data_size` bytes: every tensor's byte range matches its
/// dtype and shape, and the ranges tile [0, data_size) exactly (no gap, no overlap, no trailing bytes).
inline ParsedHeader parse_header(std::string_view text, std::uint64_t data_size, std::string_view source) {
  const json j = parse_json(text, std::string(source) + ": safetensors header");
  if (!j.is_object()) corrupt(source, "the header is not a JSON object");
  ParsedHeader out;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) corrupt(source, "__metadata__ must be an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) corrupt(source, "__metadata__[\"" + mk + "\"] must be a string, got " + mv.dump());
        out.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    const std::string where = "tensor \"" + key + "\"";
    if (!value.is_object()) corrupt(source, where + " must be an object");
    for (const auto& [field, unused] : value.items())
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        corrupt(source, where + " has unknown field \"" + field + "\"");
    if (!value.contains("dtype") || !value.contains("shape") || !value.contains("data_offsets"))
      corrupt(source, where + " needs dtype, shape and data_offsets");
    HeaderEntry e;
    e.name = key;
    const json& dt = value["dtype"];
    if (!dt.is_string()) corrupt(source, where + ": dtype must be a string");
    const auto dtype = dtype_from_name(dt.get<std::string>());
    if (!dtype) corrupt(source, where + ": unsupported dtype \"" + dt.get<std::string>() + "\"");
    e.info.dtype = *dtype;
    const json& sh = value["shape"];
    if (!sh.is_array()) corrupt(source, where + ": shape must be an array");
    // Every partial product of the extents must fit int64, in any order (StoredTensor::numel() multiplies from the
    // front, Shape::numel_from() from the back), so the product of the nonzero extents must, even when an extent of
    // 0 makes the element count itself 0.
    std::int64_t nonzero = 1;
    bool has_zero = false, overflow = false;
    for (const auto& d : sh) {
      const std::uint64_t extent = header_uint(d, source, where + ": shape extent");
      const auto signed_extent = static_cast<std::int64_t>(std::min<std::uint64_t>(extent, INT64_MAX));
      e.info.shape.push_back(signed_extent);
      if (extent == 0)
        has_zero = true;
      else
        overflow = overflow || extent > static_cast<std::uint64_t>(INT64_MAX) ||
                   __builtin_mul_overflow(nonzero, signed_extent, &nonzero);
    }
    if (overflow) {
      std::string shape = "[";
      for (std::size_t i = 0; i < sh.size(); ++i) shape += (i ? ", " : "") + sh[i].dump();
      corrupt(source, where + ": shape " + shape + "] is too large: the product of its nonzero extents exceeds 2^63-1");
    }
    const std::int64_t numel = has_zero ? 0 : nonzero;
    const json& off = value["data_offsets"];
    if (!off.is_array() || off.size() != 2) corrupt(source, where + ": data_offsets must be [begin, end]");
    e.begin = header_uint(off[0], source, where + ": data_offsets[0]");
    e.end = header_uint(off[1], source, where + ": data_offsets[1]");
    if (e.begin > e.end) corrupt(source, where + ": data_offsets begin > end");
    if (e.end > data_size)
      corrupt(source, where + ": data_offsets end " + std::to_string(e.end) + " is past the end of the " +
                          std::to_string(data_size) + "-byte data buffer");
    std::uint64_t nbytes = 0;
    overflow = __builtin_mul_overflow(static_cast<std::uint64_t>(numel), dtype_size(*dtype), &nbytes);
    if (overflow || nbytes != e.end - e.begin)
      corrupt(source, where + ": shape " + e.info.shape_str() + " of " + std::string(dtype_name(*dtype)) +
                          " does not match its " + std::to_string(e.end - e.begin) + "-byte range");
    out.entries.push_back(std::move(e));
  }
  std::vector<const HeaderEntry*> order;
  for (const auto& e : out.entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
    return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
  });
  std::uint64_t expected = 0;
  for (const HeaderEntry* e : order) {
    if (e->begin < expected) corrupt(source, "tensor \"" + e->name + "\" overlaps the previous tensor");
    if (e->begin > expected)
      corrupt(source, "gap of " + std::to_string(e->begin - expected) + " bytes before tensor \"" + e->name + "\"");
    expected = e->end;
  }
  if (expected != data_size)
    corrupt(source,
            "the tensors cover " + std::to_string(expected) + " of " + std::to_string(data_size) + " data bytes");
  return out;
}

/// Splits a file of `file_size` bytes into header length and header text using `read(offset, bytes, dst)`.
template <class Read>
NamedTensors read_safetensors_with(std::uint64_t file_size, std::string_view source, Read&& read) {
  if (file_size < 8)
    corrupt(source, "file has " + std::to_string(file_size) + " bytes, fewer than the 8-byte header length");
  std::array<std::byte, 8> len_bytes;
  read(0, 8, len_bytes.data());
  const auto n = load_le<std::uint64_t>(len_bytes.data());
  if (n > safetensors_max_header_bytes)
    corrupt(source, "header length " + std::to_string(n) + " exceeds the limit of " +
                        std::to_string(safetensors_max_header_bytes) + " bytes");
  if (n > file_size - 8)
    corrupt(source, "header length " + std::to_string(n) + " is past the end of the " + std::to_string(file_size) +
                        "-byte file");
  std::string text(n, '\0');
  read(8, n, reinterpret_cast<std::byte*>(text.data()));
  ParsedHeader h = parse_header(text, file_size - 8 - n, source);
  NamedTensors out;
  out.source = std::string(source);
  out.metadata = std::move(h.metadata);
  for (auto& e : h.entries) {
    e.info.data.resize(e.end - e.begin);
    if (!e.info.data.empty()) read(8 + n + e.begin, e.end - e.begin, e.info.data.data());
    out.set_raw(std::move(e.name), std::move(e.info));
  }
  return out;
}

/// Header JSON (padded with spaces to a multiple of 8 bytes) and the data order. Tensors are laid out by
/// decreasing element size, then by name, as the reference writer does, so every tensor is aligned to its dtype.
inline std::pair<std::string, std::vector<const std::pair<const std::string, StoredTensor>*>> build_header(
    const NamedTensors& t) {
  std::vector<const std::pair<const std::string, StoredTensor>*> order;
  for (const auto& kv : t.tensors()) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return dtype_size(a->second.dtype) > dtype_size(b->second.dtype); });
  json h = json::object();
  std::uint64_t offset = 0;
  for (auto* kv : order) {
    const auto& s = kv->second;
    h[kv->first] = {{"dtype", std::string(dtype_name(s.dtype))},
                    {"shape", s.shape},
                    {"data_offsets", {offset, offset + s.data.size()}}};
    offset += s.data.size();
  }
  if (!t.metadata.empty()) h["__metadata__"] = t.metadata;
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return {std::move(text), std::move(order)};
}

template <class Sink>
void write_safetensors_with(const NamedTensors& t, Sink&& sink) {
  auto [header, order] = build_header(t);
  std::array<std::byte, 8> len;
  store_le<std::uint64_t>(len.data(), header.size());
  sink(len.data(), len.size());
  sink(reinterpret_cast<const std::byte*>(header.data()), header.size());
  for (auto* kv : order) sink(kv->second.data.data(), kv->second.data.size());
}

}  // namespace detail

/// Parses a complete file image; any structural problem throws spo::input_error naming `source`.
inline NamedTensors parse_safetensors(std::span<const std::byte> file, std::string_view source = "<memory>") {
  return detail::read_safetensors_with(file.size(), source, [&](std::uint64_t offset, std::uint64_t n, std::byte* dst) {
    std::memcpy(dst, file.data() + offset, n);
  });
}

/// Reads a file tensor by tensor (no second copy of the data); errors name the path. A path that is not a regular
/// file throws spo::input_error (require_regular_file).
inline NamedTensors load_safetensors(const std::filesystem::path& path) {
  const std::string source = path.string();
  require_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) ::spo::io::detail::throw_io(path, "cannot open for reading", errno);
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw error(source + ": cannot determine size: " + ec.message());
  return detail::read_safetensors_with(size, source, [&](std::uint64_t offset, std::uint64_t n, std::byte* dst) {
    in.seekg(static_cast<std::streamoff>(offset));
    if (!in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n)))
      throw error(source + ": read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) + " failed");
  });
}

/// The complete file image.
inline std::vector<std::byte> serialize_safetensors(const NamedTensors& t) {
  std::vector<std::byte> out;
  detail::write_safetensors_with(t, [&](const std::byte* p, std::size_t n) { out.insert(out.end(), p, p + n); });
  return out;
}

/// Writes the file atomically (see AtomicFileWriter): a crash leaves either the old or the new file.
inline void save_safetensors(const std::filesystem::path& path, const NamedTensors& t) {
  AtomicFileWriter w(path);
  detail::write_safetensors_with(t, [&](const std::byte* p, std::size_t n) { w.write(p, n); });
  w.commit();
}

}  // namespace spo::io
