// SPDX-License-Identifier: MIT
#include "spo/io/safetensors.hpp"

#include <bit>
#include <cmath>
#include <concepts>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <utility>

#include <doctest/doctest.h>

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

const fs::path data_dir = fs::path(SPO_TEST_DATA_DIR) / "safetensors";

json expected_values() { return parse_json(read_file_text(data_dir / "from_python.expected.json"), "expected"); }

double parse_value(const json& s) { return std::strtod(s.get<std::string>().c_str(), nullptr); }

/// Same value including the sign of zero; NaN equals NaN.
bool same(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

std::vector<double> values_of(const json& list) {
  std::vector<double> v;
  for (const auto& s : list) v.push_back(parse_value(s));
  return v;
}

/// Compares every tensor of `t` with the sidecar (dtype, shape, each value); integers through their raw bytes.
void check_against_expected(const NamedTensors& t, const json& expected) {
  REQUIRE(t.size() == expected["tensors"].size());
  for (const auto& [name, e] : expected["tensors"].items()) {
    INFO("tensor " << name);
    REQUIRE(t.contains(name));
    const auto& st = t.at(name);
    CHECK(dtype_name(st.dtype) == e["dtype"].get<std::string>());
    CHECK(st.shape == e["shape"].get<std::vector<std::int64_t>>());
    const auto want = values_of(e["values"]);
    REQUIRE(st.numel() == static_cast<std::int64_t>(want.size()));
    if (st.dtype == Dtype::i64) {
      for (std::size_t i = 0; i < want.size(); ++i)
        CHECK(io::detail::load_le<std::int64_t>(st.data.data() + 8 * i) ==
              std::stoll(e["values"][i].get<std::string>()));
      continue;
    }
    const auto as_double = t.get<double>(name);
    const auto as_float = t.get<float>(name);
    for (std::size_t i = 0; i < want.size(); ++i) {
      INFO("element " << i);
      CHECK(same(as_double[i], want[i]));
      CHECK(same(as_float[i], static_cast<float>(want[i])));
    }
  }
}

NamedTensors sample() {
  NamedTensors t;
  t.set("b.weight", Tensor<float>(Shape{2, 3}, {1, -2, 3.5f, 0.25f, -0.0f, 1e-30f}));
  t.set("a.half", Tensor<float>(Shape{3}, {1, 0.5f, -65504}), Dtype::f16);
  t.set("c.double", Tensor<double>(Shape{2}, {0.1, -1e300}));
  t.set("d.scalar", Tensor<float>(Shape{}, {7}));
  t.set("e.empty", Tensor<float>(Shape{0, 4}));
  t.metadata["format"] = "pt";
  return t;
}

std::uint64_t header_length(const std::vector<std::byte>& f) { return io::detail::load_le<std::uint64_t>(f.data()); }

/// A file image from a hand-written header (padding applied) and `data_bytes` zero bytes of data.
std::vector<std::byte> raw_file(const std::string& header, std::size_t data_bytes) {
  std::vector<std::byte> f(8);
  io::detail::store_le<std::uint64_t>(f.data(), header.size());
  for (char c : header) f.push_back(static_cast<std::byte>(c));
  f.resize(f.size() + data_bytes);
  return f;
}

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("spo_test_safetensors_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("reads every value of a file written by Python safetensors (F32/F16/BF16/F64/I64/I32/U8, 0-d, empty)") {
  const auto t = load_safetensors(data_dir / "from_python.safetensors");
  const json expected = expected_values();
  check_against_expected(t, expected);
  CHECK(t.metadata == expected["metadata"].get<std::map<std::string, std::string>>());
  CHECK(t.shape_of("scalar") == Shape{});
  CHECK(t.get<float>("scalar")[0] == 42.5f);
  CHECK(t.get<float>("empty").shape() == Shape{0, 3});
}

TEST_CASE("float -> F16/BF16 conversion agrees with numpy/torch rounding of the same sources") {
  const json expected = expected_values();
  for (const char* name : {"f16", "bf16"}) {
    const auto& e = expected["tensors"][name];
    const auto src = values_of(e["source"]), want = values_of(e["values"]);
    for (std::size_t i = 0; i < src.size(); ++i) {
      const float f = static_cast<float>(src[i]);
      const float got = std::string(name) == "f16" ? half_bits_to_float(float_to_half_bits(f))
                                                   : bf16_bits_to_float(float_to_bf16_bits(f));
      CHECK_MESSAGE(same(got, want[i]), name << "[" << i << "] source " << src[i]);
    }
  }
}

// The written file can be checked by the Python package:
//   SPO_SAFETENSORS_INTEROP_DIR=<dir> test_io_safetensors -tc="*written by spo*"
//   python tools/reference/safetensors_interop.py check <dir>/from_spo.safetensors
TEST_CASE("a file written by spo with every dtype reads back to the Python-rounded values") {
  const json expected = expected_values();
  NamedTensors t;
  t.metadata = expected["metadata"].get<std::map<std::string, std::string>>();
  const auto python = load_safetensors(data_dir / "from_python.safetensors");
  for (const auto& [name, e] : expected["tensors"].items()) {
    const auto dtype = *dtype_from_name(e["dtype"].get<std::string>());
    if (!is_floating(dtype)) {
      t.set_raw(name, python.at(name));  // integer tensors: raw bytes
      continue;
    }
    const auto src = values_of(e.contains("source") ? e["source"] : e["values"]);
    Shape shape(e["shape"].begin(), e["shape"].end());
    if (dtype == Dtype::f64)
      t.set(name, Tensor<double>(shape, src), dtype);
    else
      t.set(name, Tensor<float>(shape, std::vector<float>(src.begin(), src.end())), dtype);
  }
  const char* env = std::getenv("SPO_SAFETENSORS_INTEROP_DIR");
  const fs::path dir = env ? fs::path(env) : temp_dir();
  fs::create_directories(dir);
  const fs::path file = dir / "from_spo.safetensors";
  save_safetensors(file, t);
  write_file_atomic(fs::path(file.string() + ".expected.json"), expected.dump(1));
  const auto back = load_safetensors(file);
  check_against_expected(back, expected);
  CHECK(back.metadata == t.metadata);
  if (!env) fs::remove_all(dir);
}

TEST_CASE("writer layout: 8-byte padded header, data sorted by element size then name, exact round trip") {
  const auto t = sample();
  const auto f = serialize_safetensors(t);
  const auto n = header_length(f);
  CHECK(n % 8 == 0);
  const std::string header(reinterpret_cast<const char*>(f.data()) + 8, n);
  CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));
  const json h = json::parse(header);
  CHECK(h["c.double"]["data_offsets"] == json::array({0, 16}));   // F64 first
  CHECK(h["b.weight"]["data_offsets"] == json::array({16, 40}));  // then F32 by name
  CHECK(h["d.scalar"]["shape"] == json::array());
  CHECK(h["a.half"]["data_offsets"] == json::array({44, 50}));  // F16 last
  CHECK(h["__metadata__"]["format"] == "pt");
  CHECK(f.size() == 8 + n + 50);
  const auto back = parse_safetensors(f, "mem");
  CHECK(serialize_safetensors(back) == f);
  CHECK(back.get<float>("b.weight")[4] == 0.0f);
  CHECK(std::signbit(back.get<float>("b.weight")[4]));
  CHECK(back.get<double>("c.double")[1] == -1e300);
  CHECK(back.get<float>("a.half")[2] == -65504.0f);
  CHECK_THROWS_WITH_AS(back.get<float>("nope"), doctest::Contains("\"nope\""), error);
  Tensor<float> wrong(Shape{3, 2});
  CHECK_THROWS_WITH_AS(back.get_into<float>("b.weight", wrong.view()), doctest::Contains("[2, 3]"), error);
  NamedTensors bad;
  CHECK_THROWS_AS(bad.set("__metadata__", Tensor<float>(Shape{1})), error);
  CHECK_THROWS_AS(bad.set("x", Tensor<float>(Shape{1}), Dtype::i32), error);
}

TEST_CASE_TEMPLATE("16-bit tensors: their own dtype is copied bit for bit, other dtypes convert through float", H, half,
                   bfloat16) {
  constexpr Dtype own = std::same_as<H, half> ? Dtype::f16 : Dtype::bf16;
  constexpr Dtype other = std::same_as<H, half> ? Dtype::bf16 : Dtype::f16;
  static_assert(native_dtype<H> == own);
  Tensor<H> h(Shape{4, 1000});  // [4, 1000]: every 16th bit pattern, NaNs and infinities included
  for (std::int64_t i = 0; i < h.numel(); ++i) h[i] = H::from_bits(static_cast<std::uint16_t>(i * 16 + 3));
  NamedTensors t;
  t.set<H>("w16", h);                     // stored as its own dtype
  t.set<H>("w32", h.view(), Dtype::f32);  // widened
  const auto back = parse_safetensors(serialize_safetensors(t), "mem");
  CHECK(back.at("w16").dtype == own);
  const auto same16 = back.get<H>("w16");
  const auto from32 = back.get<H>("w32");
  const auto wide = back.get<float>("w16");
  std::int64_t mismatch = 0;
  for (std::int64_t i = 0; i < h.numel(); ++i) {
    mismatch += same16[i].bits != h[i].bits;
    const float f = static_cast<float>(h[i]);
    mismatch += std::bit_cast<std::uint32_t>(wide[i]) != std::bit_cast<std::uint32_t>(f);
    if (!std::isnan(f)) mismatch += from32[i].bits != h[i].bits;  // float -> H re-encodes exactly
  }
  CHECK(mismatch == 0);
  // The other 16-bit dtype and F64 convert through float.
  Tensor<float> x(Shape{5}, {1.0f + 0x1p-9f, -3.14159f, 70000.0f, 1e-7f, -0.0f});  // [5]
  NamedTensors u;
  u.set<float>("x", x.view(), other);
  u.set<float>("y", x.view(), Dtype::f64);
  const auto xb = parse_safetensors(serialize_safetensors(u), "mem");
  const auto xo = xb.get<H>("x"), xd = xb.get<H>("y");
  const auto xo_float = xb.get<float>("x");
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    CHECK(xo[i].bits == H(xo_float[i]).bits);
    CHECK(xd[i].bits == H(x[i]).bits);
  }
}

TEST_CASE("corrupt files are errors that name the file and the problem") {
  auto expect_error = [](const std::vector<std::byte>& f, const std::string& what) {
    INFO("expected: " << what);
    CHECK_THROWS_WITH_AS(parse_safetensors(f, "bad.safetensors"), doctest::Contains(what.c_str()), error);
    CHECK_THROWS_WITH_AS(parse_safetensors(f, "bad.safetensors"), doctest::Contains("bad.safetensors"), error);
  };
  const std::string ok = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_NOTHROW(parse_safetensors(raw_file(ok, 8)));
  expect_error(std::vector<std::byte>(5), "fewer than the 8-byte header length");
  {
    auto f = raw_file(ok, 8);
    io::detail::store_le<std::uint64_t>(f.data(), 1000);
    expect_error(f, "past the end");
    io::detail::store_le<std::uint64_t>(f.data(), ~std::uint64_t{0});
    expect_error(f, "exceeds the limit");
  }
  expect_error(raw_file(R"({"x":{"dtype":"F32",)", 8), "invalid JSON");
  expect_error(raw_file(R"([1,2])", 0), "not a JSON object");
  expect_error(raw_file(R"({"x":{"dtype":"F8","shape":[2],"data_offsets":[0,8]}})", 8), "unsupported dtype \"F8\"");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "does not match");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative integer");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), "non-negative integer");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
               "is too large");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8), "past the end");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "begin > end");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                        8),
               "overlaps");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "gap of 4 bytes");
  expect_error(raw_file(ok, 12), "cover 8 of 12");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                        8),
               "duplicate JSON key \"x\"");
  expect_error(raw_file(R"({"__metadata__":{"a":1},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
               "must be a string");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"crc":1}})", 8), "unknown field");
  expect_error(raw_file(R"({"x":{"dtype":"F32","shape":[2]}})", 8), "needs dtype, shape and data_offsets");
  CHECK_THROWS_WITH_AS(load_safetensors("/nonexistent/dir/file.safetensors"),
                       doctest::Contains("/nonexistent/dir/file.safetensors"), error);
}

TEST_CASE("a shape whose extents multiply past int64 is rejected, even when an extent of 0 makes it empty") {
  auto header = [](const std::string& shape) {
    return R"({"x":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,0]}})";
  };
  for (const std::string shape : {"[9223372036854775807,2,0]", "[0,4611686018427387904,4]",
                                  "[2,0,9223372036854775807,2]", "[9223372036854775808]", "[3037000500,3037000500]"}) {
    INFO("shape " << shape);
    CHECK_THROWS_WITH_AS(parse_safetensors(raw_file(header(shape), 0), "huge.safetensors"),
                         doctest::Contains("huge.safetensors: invalid safetensors file: tensor \"x\": shape ["),
                         input_error);
    CHECK_THROWS_WITH_AS(parse_safetensors(raw_file(header(shape), 0), "huge.safetensors"),
                         doctest::Contains("] is too large: the product of its nonzero extents exceeds 2^63-1"),
                         input_error);
  }
  CHECK_THROWS_WITH_AS(parse_safetensors(raw_file(header("[9223372036854775807,2,0]"), 0), "huge.safetensors"),
                       doctest::Contains("shape [9223372036854775807, 2, 0] is too large"), input_error);
  // Extents whose product fits int64 are fine, however large, when the tensor is empty.
  const auto t = parse_safetensors(raw_file(header("[0,9223372036854775807]"), 0), "empty.safetensors");
  CHECK(t.at("x").numel() == 0);
  CHECK(t.get<float>("x").numel() == 0);
  CHECK(parse_safetensors(raw_file(header("[3037000499,3037000499,0]"), 0)).at("x").numel() == 0);
  // numel() itself never overflows silently.
  StoredTensor s;
  s.shape = {INT64_MAX, 2, 0};
  CHECK_THROWS_WITH_AS(s.numel(), "tensor shape [9223372036854775807, 2, 0] has more than 2^63-1 elements", error);
  s.shape = {INT64_MAX, 1};
  CHECK(s.numel() == INT64_MAX);
  // set_raw checks the byte count without wrapping: 2^62 F64 elements need 2^65 bytes, not 0.
  s.dtype = Dtype::f64;
  s.shape = {std::int64_t{1} << 62};
  NamedTensors named;
  CHECK_THROWS_WITH_AS(named.set_raw("x", s), doctest::Contains("needs more than 2^64-1 bytes, got 0"), error);
}

TEST_CASE("find_non_finite: the first NaN or infinity of each floating dtype, by its stored bits") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const Dtype d : {Dtype::f32, Dtype::f64, Dtype::f16, Dtype::bf16}) {
    INFO("dtype " << dtype_name(d));
    NamedTensors t;
    // Finite extremes: largest values, subnormals, signed zeros.
    const float big = d == Dtype::f16 ? 65504.0f : d == Dtype::bf16 ? 0x1.fep127f : std::numeric_limits<float>::max();
    const float tiny = d == Dtype::f16 ? 0x1p-24f : std::numeric_limits<float>::denorm_min();
    Tensor<float> finite(Shape{5000});
    for (std::int64_t i = 0; i < finite.numel(); ++i)
      finite[i] = i % 5 == 0 ? big : i % 5 == 1 ? -big : i % 5 == 2 ? tiny : i % 5 == 3 ? -0.0f : 0.5f;
    t.set("finite", finite, d);
    CHECK(!find_non_finite(t.at("finite")).has_value());
    for (const auto& [value, kind] :
         {std::pair{nan, "NaN"}, std::pair{-nan, "NaN"}, std::pair{inf, "+Inf"}, std::pair{-inf, "-Inf"}}) {
      for (const std::int64_t at : {std::int64_t{0}, std::int64_t{4095}, std::int64_t{4096}, std::int64_t{4999}}) {
        Tensor<float> x = finite;
        x[at] = value;
        if (at + 7 < x.numel()) x[at + 7] = nan;  // only the first counts
        t.set("x", x, d);
        const auto bad = find_non_finite(t.at("x"));
        REQUIRE(bad.has_value());
        CHECK(bad->index == at);
        CHECK(bad->kind == kind);
      }
    }
  }
  // F64 values beyond the float range are finite; integer tensors are never scanned.
  NamedTensors t;
  t.set("d", Tensor<double>(Shape{2}, {1e300, -1e-320}));
  CHECK(!find_non_finite(t.at("d")).has_value());
  StoredTensor ints{Dtype::i32, {1}, std::vector<std::byte>(4, std::byte{0xff})};
  ints.data[2] = std::byte{0x80};  // the bits of a float NaN, as an integer
  ints.data[3] = std::byte{0x7f};
  CHECK(!find_non_finite(ints).has_value());
  CHECK(!find_non_finite(StoredTensor{Dtype::f32, {0}, {}}).has_value());
}

TEST_CASE("load_safetensors rejects a directory, a device and a missing path with input_error naming it") {
  const fs::path dir = temp_dir();
  CHECK_THROWS_WITH_AS(load_safetensors(dir), (dir.string() + ": is a directory, expected a file").c_str(),
                       input_error);
  CHECK_THROWS_WITH_AS(load_safetensors("/dev/zero"), "/dev/zero: not a regular file", input_error);
  CHECK_THROWS_WITH_AS(load_safetensors(dir / "none.safetensors"),
                       (dir.string() + "/none.safetensors: no such file").c_str(), input_error);
  fs::remove_all(dir);
}

TEST_CASE("fuzz: truncations and header byte flips throw spo::error or load consistently") {
  const auto good = serialize_safetensors(sample());
  for (std::size_t len = 0; len < good.size(); ++len) {
    const std::vector<std::byte> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    CHECK_THROWS_AS(parse_safetensors(cut, "cut"), error);
  }
  const std::uint32_t seed = 12345;
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::size_t header_end = 8 + header_length(good);
  int loaded = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto f = good;
    const int flips = 1 + static_cast<int>(gen() % 3);
    for (int k = 0; k < flips; ++k) {
      const std::size_t pos = gen() % header_end;
      f[pos] = static_cast<std::byte>(iter % 2 ? gen() % 256 : std::to_integer<unsigned>(f[pos]) ^ (1u << (gen() % 8)));
    }
    try {
      const auto t = parse_safetensors(f, "flipped");
      ++loaded;
      std::int64_t bytes = 0;
      for (const auto& [name, st] : t.tensors()) {
        REQUIRE(st.data.size() == static_cast<std::size_t>(st.numel()) * dtype_size(st.dtype));
        bytes += static_cast<std::int64_t>(st.data.size());
        if (is_floating(st.dtype) && st.shape.size() <= static_cast<std::size_t>(Shape::max_rank))
          CHECK(t.get<double>(name).numel() == st.numel());
      }
      CHECK(static_cast<std::size_t>(bytes) + header_end == f.size());
    } catch (const error&) {
    }
  }
  MESSAGE(loaded << " of 4000 flipped files still loaded");
}
