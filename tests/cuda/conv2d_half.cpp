// SPDX-License-Identifier: MIT
// cuDNN convolutions of spo::cuda in half and bfloat16 (cuda_kernels::conv2d_*, tensor/cuda/cudnn.hpp: 16-bit tensors,
// FP32 compute, the bias by spo's own kernels) against nn::Conv2d<double, cpu> run on the same 16-bit inputs.
// Bound, per element r of each result, with u16 the unit roundoff of the format (2^-11 half, 2^-8 bfloat16) and
// u = 2^-24 (the FP32 accumulation):
//   |r_gpu - r_ref| <= 2 u16 m_r + 4 (L + 2) u m_r + 256 u max(m)
// where m is the same result computed in double on |x|, |w|, |b|, |dy| (and the pre-filled |dW0|, |db0|), L the
// reduction length (Cin kh kw + 1 for y, Cout kh kw for dx, B Ho Wo + 1 for dW and db). 2 u16 m_r covers the
// roundings of the output (y: the convolution, then the bias; dW, db: the accumulated sum), the rest is the FP32
// bound of nn_conv2d.cpp. Products of 16-bit values are exact in FP32, so tensor-core algorithms meet it; an
// indexing error is of the order of m itself.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/cuda/conv2d.hpp"
#include "spo/tensor/cuda/bias.hpp"
#include "spo/tensor/cuda/cudnn.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/ops.hpp"

#include "conv2d_cases.hpp"
#include "half_values.hpp"

using namespace spo;
using cuda_test::representable;
using cuda_test::unit_roundoff;

namespace {

using Case = cuda_test::Conv2dCase;

/// The float and double geometries plus two with tensor-core sized channel counts.
std::vector<Case> half_cases() {
  auto cases = cuda_test::conv2d_cases();
  cases.push_back({"3x3 pad 1, 32 -> 64 channels", 2, 32, 64, 16, 16, {{3, 3}, {1, 1}, {1, 1}, true}});
  cases.push_back({"3x3 pad 1, 64 -> 32 channels, no bias", 2, 64, 32, 8, 12, {{3, 3}, {1, 1}, {1, 1}, false}});
  return cases;
}

Tensor<double, cpu> abs_of(const Tensor<double, cpu>& t) {
  auto r = Tensor<double, cpu>::uninitialized(t.shape());  // t.shape
  for (std::int64_t i = 0; i < t.numel(); ++i) r[i] = std::abs(t[i]);
  return r;
}

template <class H>
Tensor<H, cuda> on_device(const Tensor<double, cpu>& t) {
  return to_device(cast<H>(t));
}

template <class H>
Tensor<double, cpu> on_host(const Tensor<H, cuda>& t) {
  return cast<double>(to_host(t));
}

/// Largest |gpu - ref| / bound over the elements (the header's bound); +inf on NaN or a shape mismatch.
double worst_ratio(const Tensor<double, cpu>& gpu, const Tensor<double, cpu>& ref, const Tensor<double, cpu>& mag,
                   double length, double u16) {
  if (!(gpu.shape() == ref.shape()) || !(mag.shape() == ref.shape())) return INFINITY;
  constexpr double u = 0x1p-24;
  double m_max = 0;
  for (std::int64_t i = 0; i < mag.numel(); ++i) m_max = std::max(m_max, mag[i]);
  double worst = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double bound = 2 * u16 * mag[i] + 4 * (length + 2) * u * mag[i] + 256 * u * m_max + 1e-300;
    const double d = std::abs(gpu[i] - ref[i]);
    if (!(d == d)) return INFINITY;
    worst = std::max(worst, d / bound);
  }
  return worst;
}

template <class H>
void check_case(const Case& c, std::uint64_t seed) {
  const double u16 = unit_roundoff<H>();
  INFO(std::string(c.name) << ", seed " << seed << ", " << (std::same_as<H, spo::half> ? "half" : "bfloat16"));
  Generator gen{seed, 0};
  nn::Conv2d<double, cpu> ref(c.in, c.out, c.opt), mag(c.in, c.out, c.opt);
  const auto s = ref.geometry(Shape{c.batch, c.in, c.height, c.width});
  const auto g = cuda_kernels::conv2d_geometry(s);
  ref.weight().value = representable<H>(ref.weight().shape(), gen);  // [Cout, Cin, kh, kw]
  if (c.opt.bias) ref.bias().value = representable<H>(ref.bias().shape(), gen);
  const auto dw0 = representable<H>(ref.weight().shape(), gen);  // pre-filled: backward must add to it
  const auto db0 = representable<H>(Shape{c.out}, gen);
  ref.weight().grad = dw0;
  if (c.opt.bias) ref.bias().grad = db0;
  const auto x = representable<H>(Shape{c.batch, c.in, c.height, c.width}, gen);       // [B, Cin, H, W]
  const auto dy = representable<H>(Shape{c.batch, c.out, s.out_h(), s.out_w()}, gen);  // [B, Cout, Ho, Wo]

  mag.weight().value = abs_of(ref.weight().value);
  mag.weight().grad = abs_of(dw0);
  if (c.opt.bias) {
    mag.bias().value = abs_of(ref.bias().value);
    mag.bias().grad = abs_of(db0);
  }
  const auto m_y = mag.forward(abs_of(x));     // [B, Cout, Ho, Wo]
  const auto m_dx = mag.backward(abs_of(dy));  // [B, Cin, H, W]
  const auto y_ref = ref.forward(x);
  const auto dx_ref = ref.backward(dy);

  const auto xd = on_device<H>(x), wd = on_device<H>(ref.weight().value), dyd = on_device<H>(dy);
  const auto bd = c.opt.bias ? on_device<H>(ref.bias().value) : Tensor<H, cuda>();
  auto yd = Tensor<H, cuda>::uninitialized(y_ref.shape()), dxd = Tensor<H, cuda>::uninitialized(x.shape());
  auto dwd = on_device<H>(dw0), dbd = on_device<H>(db0);
  cuda_kernels::conv2d_forward<H>(g, xd.data(), wd.data(), c.opt.bias ? bd.data() : nullptr, yd.data());
  cuda_kernels::conv2d_backward_data<H>(g, wd.data(), dyd.data(), dxd.data());
  cuda_kernels::conv2d_backward_filter<H>(g, xd.data(), dyd.data(), dwd.data(), 1.f);
  if (c.opt.bias) cuda_kernels::conv2d_backward_bias<H>(g, dyd.data(), dbd.data());

  const double taps = static_cast<double>(c.opt.kernel[0] * c.opt.kernel[1]);
  const double pixels = static_cast<double>(s.batch * s.out_h() * s.out_w());
  const double r_y = worst_ratio(on_host(yd), y_ref, m_y, c.in * taps + 1, u16);
  const double r_dx = worst_ratio(on_host(dxd), dx_ref, m_dx, c.out * taps, u16);
  const double r_dw = worst_ratio(on_host(dwd), ref.weight().grad, mag.weight().grad, pixels + 1, u16);
  MESSAGE(c.name << ": worst error / bound: y " << r_y << ", dx " << r_dx << ", dW " << r_dw);
  CHECK(r_y <= 1.0);
  CHECK(r_dx <= 1.0);
  CHECK(r_dw <= 1.0);
  if (c.opt.bias) {
    const double r_db = worst_ratio(on_host(dbd), ref.bias().grad, mag.bias().grad, pixels + 1, u16);
    MESSAGE("  db " << r_db);
    CHECK(r_db <= 1.0);
  }
  const auto& plan = cuda_kernels::conv2d_plan<H>(g);
  MESSAGE("  cuDNN algorithm (math type, fallback): forward "
          << plan.forward_algo << " (" << plan.forward_math << ", " << plan.forward_fallback << "), data "
          << plan.data_algo << " (" << plan.data_math << "), filter " << plan.filter_algo << " (" << plan.filter_math
          << ")");
  for (const cudnnMathType_t m : {plan.forward_math, plan.data_math, plan.filter_math})
    CHECK(m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

}  // namespace

static_assert(cuda_kernels::cudnn_data_type<spo::half> == CUDNN_DATA_HALF);
static_assert(cuda_kernels::cudnn_data_type<bfloat16> == CUDNN_DATA_BFLOAT16);
static_assert(cuda_kernels::cudnn_compute_type<spo::half> == CUDNN_DATA_FLOAT);
static_assert(cuda_kernels::cudnn_compute_type<bfloat16> == CUDNN_DATA_FLOAT);
static_assert(cuda_kernels::cudnn_compute_type<double> == CUDNN_DATA_DOUBLE);

TEST_CASE_TEMPLATE("cuDNN convolutions in 16 bits: y, dx, dW and db within the FP32 bound plus one rounding", H,
                   spo::half, bfloat16) {
  std::uint64_t seed = 500;
  for (const Case& c : half_cases()) check_case<H>(c, seed++);
}

TEST_CASE_TEMPLATE("channel bias kernels in 16 bits: y += b[c] and db += sum over (n, s), each rounded once", H,
                   spo::half, bfloat16) {
  const double u16 = unit_roundoff<H>();
  const std::int64_t batch = 3, channels = 5, spatial = 77;
  Generator gen{77, 0};
  const auto y0 = representable<H>(Shape{batch, channels, spatial}, gen);
  const auto b = representable<H>(Shape{channels}, gen);
  const auto db0 = representable<H>(Shape{channels}, gen);
  auto yd = on_device<H>(y0), dbd = on_device<H>(db0);
  const auto bd = on_device<H>(b);
  cuda_kernels::add_channel_bias<H>(batch, channels, spatial, bd.data(), yd.data());
  cuda_kernels::channel_sum_accumulate<H>(batch, channels, spatial, on_device<H>(y0).data(), dbd.data());
  const auto y = on_host(yd), db = on_host(dbd);
  for (std::int64_t i = 0; i < y0.numel(); ++i) {
    const double want = y0[i] + b[(i / spatial) % channels];           // exact in double; the device rounds it once
    CHECK(std::abs(y[i] - want) <= (u16 + 0x1p-24) * std::abs(want));  // float sum, one rounding to H
  }
  for (std::int64_t c = 0; c < channels; ++c) {
    double want = db0[c], mag = std::abs(db0[c]);
    for (std::int64_t n = 0; n < batch; ++n)
      for (std::int64_t s = 0; s < spatial; ++s) {
        want += y0[(n * channels + c) * spatial + s];
        mag += std::abs(y0[(n * channels + c) * spatial + s]);
      }
    CHECK(std::abs(db[c] - want) <= (u16 + 0x1p-24) * std::abs(want) + 0x1p-40 * mag);  // double sum, via float
  }
}
