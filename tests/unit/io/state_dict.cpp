// SPDX-License-Identifier: MIT
#include "spo/io/state_dict.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/layer.hpp"
#include "spo/nn/linear.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;
using namespace spo::io;
namespace fs = std::filesystem;

namespace {

template <Scalar T>
struct TwoLayer {
  nn::Linear<T> proj{3, 4};
  nn::Linear<T> out{4, 2, false};
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    proj.visit_parameters(f, nn::join_name(prefix, "proj"));
    out.visit_parameters(f, nn::join_name(prefix, "out"));
  }
};

template <Scalar T>
TwoLayer<T> random_model(std::uint64_t seed) {
  TwoLayer<T> m;
  Generator g{seed, 0};
  m.proj.reset_parameters(g);
  m.out.reset_parameters(g);
  return m;
}

template <class A, class B>
bool same_values(A& a, B& b) {
  std::vector<double> va, vb;
  a.visit_parameters(
      [&](std::string_view, auto& p) {
        for (std::int64_t i = 0; i < p.value.numel(); ++i) va.push_back(p.value[i]);
      },
      {});
  b.visit_parameters(
      [&](std::string_view, auto& p) {
        for (std::int64_t i = 0; i < p.value.numel(); ++i) vb.push_back(p.value[i]);
      },
      {});
  return va == vb;
}

StateDictSaveOptions save_opts(std::optional<Dtype> dtype, bool trainable_only = false, std::string prefix = {}) {
  StateDictSaveOptions o;
  o.dtype = dtype;
  o.trainable_only = trainable_only;
  o.prefix = std::move(prefix);
  return o;
}
StateDictLoadOptions load_opts(bool strict, std::string prefix = {}) {
  StateDictLoadOptions o;
  o.strict = strict;
  o.prefix = std::move(prefix);
  return o;
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("spo_test_state_dict_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

static_assert(ParameterVisitable<nn::Linear<float>>);
static_assert(ParameterVisitable<TwoLayer<double>>);

TEST_CASE("save and load round trip through a file with torch key names") {
  TempDir dir;
  auto a = random_model<float>(1);
  save_state_dict(dir.path / "m.safetensors", a, {}, {{"format", "pt"}});
  const auto file = load_safetensors(dir.path / "m.safetensors");
  std::vector<std::string> keys;
  for (const auto& [k, v] : file.tensors()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"out.weight", "proj.bias", "proj.weight"});
  CHECK(file.metadata.at("format") == "pt");
  CHECK(file.at("proj.weight").dtype == Dtype::f32);
  auto b = random_model<float>(2);
  CHECK(!same_values(a, b));
  const auto r = load_state_dict(b, dir.path / "m.safetensors");
  CHECK(r.loaded.size() == 3);
  CHECK(r.missing.empty());
  CHECK(r.unexpected.empty());
  CHECK(same_values(a, b));
}

TEST_CASE("dtype conversion on save and load") {
  auto a = random_model<double>(3);
  a.proj.bias().value = Tensor<double>(Shape{4}, {0.25, -1.5, 0.1, 3.0});
  auto f16 = state_dict(a, save_opts(Dtype::f16));
  CHECK(f16.at("proj.bias").dtype == Dtype::f16);
  auto b = random_model<float>(4);
  load_state_dict(b, f16);
  CHECK(b.proj.bias().value[0] == 0.25f);
  CHECK(b.proj.bias().value[1] == -1.5f);
  CHECK(b.proj.bias().value[2] != 0.1f);                              // 0.1 is not representable in f16 ...
  CHECK(std::abs(b.proj.bias().value[2] - 0.1f) <= 0.1f * 0x1p-11f);  // ... but within half an f16 ulp
  auto c = random_model<double>(5);
  load_state_dict(c, state_dict(a));  // F64 -> double: exact
  CHECK(same_values(a, c));
  auto d = random_model<double>(6);
  load_state_dict(d, state_dict(b));  // F32 -> double: exact widening
  CHECK(same_values(b, d));
}

TEST_CASE("strict loading names missing and unexpected keys; non-strict loads the rest and reports them") {
  auto a = random_model<float>(7);
  auto dict = state_dict(a);
  dict.source = "ckpt.safetensors";
  dict.erase("out.weight");
  dict.set("extra.lora_A", Tensor<float>(Shape{2, 2}));
  auto b = random_model<float>(8);
  const auto before = state_dict(b);
  CHECK_THROWS_WITH_AS(load_state_dict(b, dict), doctest::Contains("missing keys \"out.weight\""), error);
  CHECK_THROWS_WITH_AS(load_state_dict(b, dict), doctest::Contains("unexpected keys \"extra.lora_A\""), error);
  CHECK_THROWS_WITH_AS(load_state_dict(b, dict), doctest::Contains("ckpt.safetensors"), error);
  CHECK(serialize_safetensors(state_dict(b)) == serialize_safetensors(before));  // untouched after a failed load
  const auto r = load_state_dict(b, dict, load_opts(false));
  CHECK(r.missing == std::vector<std::string>{"out.weight"});
  CHECK(r.unexpected == std::vector<std::string>{"extra.lora_A"});
  CHECK(r.loaded.size() == 2);
  CHECK(b.proj.weight().value[0] == a.proj.weight().value[0]);
  CHECK(b.out.weight().value[0] == before.get<float>("out.weight")[0]);
}

TEST_CASE("shape mismatches are errors even when non-strict, listing each key with both shapes") {
  TwoLayer<float> a;
  a.proj = nn::Linear<float>(5, 4);  // weight [4, 5] instead of [4, 3]
  auto dict = state_dict(a);
  dict.set("out.weight", Tensor<float>(Shape{2, 4, 1}));
  auto b = random_model<float>(9);
  const auto before = serialize_safetensors(state_dict(b));
  for (bool strict : {true, false}) {
    CHECK_THROWS_WITH_AS(load_state_dict(b, dict, load_opts(strict)),
                         doctest::Contains("\"proj.weight\": file has [4, 5], model has [4, 3]"), error);
    CHECK_THROWS_WITH_AS(load_state_dict(b, dict, load_opts(strict)),
                         doctest::Contains("\"out.weight\": file has [2, 4, 1], model has [2, 4]"), error);
  }
  CHECK(serialize_safetensors(state_dict(b)) == before);
}

TEST_CASE("trainable-only files (adapters) load non-strictly; prefixes select a sub-dict") {
  auto a = random_model<float>(10);
  nn::set_trainable(a.proj, false);
  auto adapter = state_dict(a, save_opts(std::nullopt, true));
  CHECK(adapter.size() == 1);
  CHECK(adapter.contains("out.weight"));
  auto b = random_model<float>(11);
  const float proj0 = b.proj.weight().value[0];
  CHECK_THROWS_AS(load_state_dict(b, adapter), error);
  const auto r = load_state_dict(b, adapter, load_opts(false));
  CHECK(r.missing.size() == 2);
  CHECK(b.proj.weight().value[0] == proj0);
  CHECK(b.out.weight().value[0] == a.out.weight().value[0]);

  NamedTensors both;
  append_state_dict(a, both, save_opts(std::nullopt, false, "unet"));
  append_state_dict(b, both, save_opts(std::nullopt, false, "ref"));
  auto c = random_model<float>(12);
  load_state_dict(c, both, load_opts(true, "unet"));  // strict within the prefix; "ref.*" keys are outside it
  CHECK(same_values(a, c));
}

TEST_CASE(
    "non-finite weights are rejected naming the file, tensor, element and kind; check_finite = false skips the scan") {
  TempDir dir;
  const float inf = std::numeric_limits<float>::infinity();
  auto a = random_model<float>(13);
  struct Case {
    Dtype dtype;
    float value;
    const char* kind;
  };
  for (const Case c :
       {Case{Dtype::f32, std::numeric_limits<float>::quiet_NaN(), "NaN"}, Case{Dtype::f64, inf, "+Inf"},
        Case{Dtype::f16, -inf, "-Inf"}, Case{Dtype::bf16, std::numeric_limits<float>::quiet_NaN(), "NaN"},
        Case{Dtype::f16, 1e6f, "+Inf"}}) {  // a float beyond the F16 range is stored as +Inf
    INFO("dtype " << dtype_name(c.dtype) << ", value " << c.value);
    auto bad = random_model<float>(13);
    bad.proj.weight().value[7] = c.value;
    const fs::path file = dir.path / "bad.safetensors";
    save_state_dict(file, bad, save_opts(c.dtype));
    auto b = random_model<float>(14);
    const auto before = serialize_safetensors(state_dict(b));
    const std::string expected = file.string() + ": tensor \"proj.weight\" (" + std::string(dtype_name(c.dtype)) +
                                 " [4, 3]): element 7 is " + c.kind;
    CHECK_THROWS_WITH_AS(load_state_dict(b, file), doctest::Contains(expected.c_str()), input_error);
    CHECK(serialize_safetensors(state_dict(b)) == before);  // untouched
    // In memory, under a prefix, non-strictly: the same check, naming the dict's source and the full key.
    NamedTensors dict;
    dict.source = "adapter.safetensors";
    append_state_dict(bad, dict, save_opts(c.dtype, false, "unet"));
    CHECK_THROWS_WITH_AS(load_state_dict(b, dict, load_opts(false, "unet")),
                         doctest::Contains("adapter.safetensors: tensor \"unet.proj.weight\""), input_error);
    CHECK(serialize_safetensors(state_dict(b)) == before);
    // Opting out loads the value as stored.
    StateDictLoadOptions skip;
    skip.check_finite = false;
    load_state_dict(b, file, skip);
    CHECK(!std::isfinite(b.proj.weight().value[7]));
    CHECK(b.proj.weight().value[6] == static_cast<float>(dict.get<float>("unet.proj.weight")[6]));
  }
  // Tensors that are not loaded (unexpected keys, other prefixes) are not scanned.
  auto dict = state_dict(a);
  dict.set("extra", Tensor<float>(Shape{2}, {std::numeric_limits<float>::quiet_NaN(), 0}));
  auto b = random_model<float>(15);
  CHECK(load_state_dict(b, dict, load_opts(false)).unexpected == std::vector<std::string>{"extra"});
  CHECK(same_values(a, b));
}

namespace {

/// Parameters stored in 16 bits, as a half-precision model holds its frozen weights.
struct SixteenBit {
  nn::Parameter<half> w{Shape{2, 3}};
  nn::Parameter<bfloat16> b{Shape{3}};
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(nn::join_name(prefix, "w"), w);
    f(nn::join_name(prefix, "b"), b);
  }
};

template <class H>
std::vector<std::uint16_t> bits_of(const Tensor<H>& t) {
  std::vector<std::uint16_t> v;
  for (std::int64_t i = 0; i < t.numel(); ++i) v.push_back(t[i].bits);
  return v;
}

}  // namespace

TEST_CASE("16-bit parameters load bit for bit from their own dtype, round from the others, and save natively") {
  const Tensor<float> w(Shape{2, 3}, {0.1f, -2.5f, 65504.f, 1e-7f, 3.14159f, -0.0f});
  const Tensor<float> b(Shape{3}, {1e30f, 0.3f, -7.0f});
  NamedTensors f32, f16;
  f32.set<float>("w", w.view());
  f32.set<float>("b", b.view());
  f16.set<float>("w", w.view(), Dtype::f16);   // the file holds half bits
  f16.set<float>("b", b.view(), Dtype::bf16);  // and bfloat16 bits
  SixteenBit m;
  load_state_dict(m, f16, load_opts(true));
  // F16 into half and BF16 into bfloat16 copy the stored bits: no float copy in between.
  CHECK(bits_of(m.w.value) == bits_of(cast<half>(w)));
  CHECK(bits_of(m.b.value) == bits_of(cast<bfloat16>(b)));
  const auto& stored_w = f16.at("w");
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, stored_w.data.data() + 2 * i, 2);
    CHECK(m.w.value[i].bits == bits);
  }
  // F32 rounds to nearest even, as cast does.
  SixteenBit r;
  load_state_dict(r, f32, load_opts(true));
  CHECK(bits_of(r.w.value) == bits_of(cast<half>(w)));
  CHECK(bits_of(r.b.value) == bits_of(cast<bfloat16>(b)));
  // Saving keeps each parameter's own dtype, and the file loads back bit for bit.
  const auto saved = state_dict(m);
  CHECK(saved.at("w").dtype == Dtype::f16);
  CHECK(saved.at("b").dtype == Dtype::bf16);
  SixteenBit back;
  load_state_dict(back, saved, load_opts(true));
  CHECK(bits_of(back.w.value) == bits_of(m.w.value));
  CHECK(bits_of(back.b.value) == bits_of(m.b.value));
  // A finite F32 value beyond half's range is an error naming the tensor and the element, and nothing loads.
  NamedTensors big;
  big.set<float>("w", Tensor<float>(Shape{2, 3}, {0, 0, 0, 7e4f, 0, 0}).view());
  big.set<float>("b", b.view());  // 1e30 fits bfloat16
  CHECK_THROWS_WITH_AS(load_state_dict(back, big, load_opts(true)),
                       doctest::Contains("\"w\": element 3 (70000) overflows half (stored as F32)"), input_error);
  CHECK(bits_of(back.w.value) == bits_of(m.w.value));
  CHECK(bits_of(back.b.value) == bits_of(m.b.value));
  // 65519 still rounds to half's largest finite value, 65504.
  big.set<float>("w", Tensor<float>(Shape{2, 3}, {65519.f, 0, 0, 0, 0, 0}).view());
  load_state_dict(back, big, load_opts(true));
  CHECK(static_cast<float>(back.w.value[0]) == 65504.f);
}
