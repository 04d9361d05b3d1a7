// SPDX-License-Identifier: MIT
// The layout operations of tensor/cuda/layout.hpp against their CPU twins in tensor/layout.hpp, for float and double:
// concat_channels, split_channels, nchw_to_tokens, tokens_to_nchw, add_channel_bias and add_inplace move or add
// elements one at a time, so they must match exactly; sum_spatial sums in double on both sides (different orders),
// so |gpu - cpu| <= 2^-52 (S + 2) sum_s |x| + one rounding to T (float: 2^-24 |cpu|). Bad shapes throw the CPU's
// message (compared after "check failed: ", i.e. without the file and line).
#include "spo/tensor/cuda/layout.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/layout.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"

using namespace spo;

namespace {

template <class T>
Tensor<T, cpu> random_host(const Shape& s, Generator& gen, T mean = T(0), T stddev = T(1)) {
  auto t = Tensor<T, cpu>::uninitialized(s);
  fill_normal(t.view(), gen, mean, stddev);
  return t;
}

template <class T>
bool exactly_equal(const Tensor<T, cpu>& a, const Tensor<T, cpu>& b) {
  if (!(a.shape() == b.shape())) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}

/// The text of a spo::error after "check failed: " (the condition and message, without file and line).
template <class F>
std::string check_message(F&& f) {
  try {
    f();
  } catch (const spo::error& e) {
    const std::string what = e.what();
    const auto at = what.find("check failed: ");
    return at == std::string::npos ? what : what.substr(at);
  }
  return "<no exception>";
}

}  // namespace

TEST_CASE_TEMPLATE("concat_channels / split_channels == the CPU, exactly", T, float, double) {
  Generator gen{101, 0};
  INFO("seed 101");
  for (const auto& [sa, sb] :
       {std::pair{Shape{3, 5, 7, 2}, Shape{3, 4, 7, 2}}, std::pair{Shape{2, 1, 33}, Shape{2, 70, 33}},
        std::pair{Shape{1, 0, 4, 4}, Shape{1, 3, 4, 4}}, std::pair{Shape{2, 320, 16, 16}, Shape{2, 640, 16, 16}}}) {
    INFO(sa << " ++ " << sb);
    const auto a = random_host<T>(sa, gen), b = random_host<T>(sb, gen);
    const auto ref = concat_channels(a, b);
    const auto got = concat_channels(to_device(a), to_device(b));
    CHECK(exactly_equal(to_host(got), ref));
    for (const std::int64_t ca : {std::int64_t{0}, sa[1], ref.size(1)}) {
      const auto [ra, rb] = split_channels(ref, ca);
      const auto [ga, gb] = split_channels(got, ca);
      CHECK(exactly_equal(to_host(ga), ra));
      CHECK(exactly_equal(to_host(gb), rb));
    }
  }
  const Tensor<T, cuda> x(Shape{2, 3, 4}), y(Shape{3, 3, 4});
  const Tensor<T, cpu> hx(Shape{2, 3, 4}), hy(Shape{3, 3, 4});
  const auto msg = check_message([&] { (void)concat_channels(x, y); });
  CHECK(msg.find("[2, 3, 4] and [3, 3, 4]") != std::string::npos);
  CHECK(msg == check_message([&] { (void)concat_channels(hx, hy); }));
  CHECK(check_message([&] { (void)split_channels(x, 4); }) == check_message([&] { (void)split_channels(hx, 4); }));
}

TEST_CASE_TEMPLATE("nchw_to_tokens / tokens_to_nchw == the CPU, exactly", T, float, double) {
  Generator gen{102, 0};
  INFO("seed 102");
  for (const Shape& s :
       {Shape{2, 37, 9, 7}, Shape{3, 70, 33, 2}, Shape{1, 1, 1, 1}, Shape{2, 320, 64, 64}, Shape{1, 5, 1, 40}}) {
    INFO(s);
    const auto x = random_host<T>(s, gen);
    const auto tokens = nchw_to_tokens(to_device(x));
    CHECK(exactly_equal(to_host(tokens), nchw_to_tokens(x)));
    const auto t = random_host<T>(Shape{s[0], s[2] * s[3], s[1]}, gen);
    CHECK(exactly_equal(to_host(tokens_to_nchw(to_device(t), s[2], s[3])), tokens_to_nchw(t, s[2], s[3])));
    CHECK(exactly_equal(to_host(tokens_to_nchw(tokens, s[2], s[3])), x));
  }
  const Tensor<T, cuda> bad(Shape{2, 10, 3});
  const Tensor<T, cpu> hbad(Shape{2, 10, 3});
  const auto msg = check_message([&] { (void)tokens_to_nchw(bad, 3, 4); });
  CHECK(msg.find("[2, 10, 3] is not [B, 12, C]") != std::string::npos);
  CHECK(msg == check_message([&] { (void)tokens_to_nchw(hbad, 3, 4); }));
  CHECK(check_message([&] { (void)nchw_to_tokens(bad); }) == check_message([&] { (void)nchw_to_tokens(hbad); }));
}

TEST_CASE_TEMPLATE("add_channel_bias, add_inplace (exact) and sum_spatial == the CPU", T, float, double) {
  Generator gen{103, 0};
  INFO("seed 103");
  for (const Shape& s :
       {Shape{2, 5, 9, 11}, Shape{3, 7, 1, 1}, Shape{2, 1280, 8, 8}, Shape{1, 4, 64, 64}, Shape{4, 3, 17}}) {
    INFO(s);
    auto x = random_host<T>(s, gen, T(0.5), T(2));
    const auto v = random_host<T>(Shape{s[0], s[1]}, gen);
    auto dx = to_device(x);
    add_channel_bias(dx, to_device(v));
    add_channel_bias(x, v);
    CHECK(exactly_equal(to_host(dx), x));

    const auto other = random_host<T>(s, gen);
    add_inplace(dx, to_device(other));
    add_inplace(x, other);
    CHECK(exactly_equal(to_host(dx), x));

    const auto ref = sum_spatial(x);
    const auto got = to_host(sum_spatial(dx));
    REQUIRE(got.shape() == ref.shape());
    const std::int64_t spatial = s.numel_from(2);
    const double to_t = std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
    double worst = 0;
    for (std::int64_t p = 0; p < ref.numel(); ++p) {
      double mass = 0;
      for (std::int64_t i = 0; i < spatial; ++i) mass += std::abs(static_cast<double>(x[p * spatial + i]));
      const double bound =
          0x1p-52 * static_cast<double>(spatial + 2) * mass + 2 * to_t * std::abs(static_cast<double>(ref[p]));
      worst = std::max(worst, std::abs(static_cast<double>(got[p]) - static_cast<double>(ref[p])) / (bound + 1e-300));
    }
    CHECK(worst <= 1.0);
  }
  Tensor<T, cuda> a(Shape{2, 3, 4});
  const Tensor<T, cuda> b(Shape{2, 4, 3}), v(Shape{2, 4});
  Tensor<T, cpu> ha(Shape{2, 3, 4});
  const Tensor<T, cpu> hb(Shape{2, 4, 3}), hv(Shape{2, 4});
  const auto msg = check_message([&] { add_inplace(a, b); });
  CHECK(msg.find("add_inplace: shape [2, 3, 4] does not match [2, 4, 3]") != std::string::npos);
  CHECK(msg == check_message([&] { add_inplace(ha, hb); }));
  CHECK(check_message([&] { add_channel_bias(a, v); }) == check_message([&] { add_channel_bias(ha, hv); }));
  CHECK(check_message([&] { add_channel_bias(a, v); }).find("[2, 4] does not broadcast over [2, 3, 4]") !=
        std::string::npos);
}
