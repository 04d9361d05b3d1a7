// SPDX-License-Identifier: MIT
// The elementwise and pointwise kernels of spo::cuda in half and bfloat16 (tensor/cuda/ops.hpp: axpy, scale, fill;
// tensor/cuda/pointwise.hpp: the activations, GEGLU's gate, nearest 2x upsampling, the sinusoidal embedding;
// spm/cuda/spm_kernels.hpp: the token + position embeddings of a 16-bit CLIP text encoder) against the same formulas in
// double, or the CPU's float kernel, on the same 16-bit inputs.
// Each 16-bit element is read into float, the function evaluated in float and the output rounded once, so with u16
// the unit roundoff of the format (2^-11 half, 2^-8 bfloat16), per element:
//   axpy, scale:         |gpu - ref| <= u16 |ref| + 2^-23 (|y| + |alpha x|)     (float product and sum, then H)
//   activations:         |gpu - ref| <= u16 |ref| + 4e-6 |ref| + 2e-6 s        (the float bound of nn_pointwise.cpp;
//                        s = 1 forward, 1 + |dy| backward, 1 + |a| for the gate)
//   upsample forward:    exact (copies); backward: u16 |ref| + 2^-22 sum |dy|
//   sinusoidal forward:  |gpu - ref| <= u16 |ref| + 2^-24 + 1e-12              (double, then float, then H)
//   token embeddings:    bitwise H(float(token) + float(position)), the CPU's float lookup rounded once
// The 16-byte vectorised path and the element-by-element path (pointers off 16-byte alignment) give bitwise the same
// results, odd sizes included.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/spm/cuda/spm_kernels.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/cuda/pointwise.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/text/text_encoder.hpp"

#include "half_values.hpp"

using namespace spo;

namespace {

using cuda_test::unit_roundoff;

/// n values exactly representable in H (cuda_test::representable), as a vector of doubles.
template <class H>
std::vector<double> representable(std::int64_t n, Generator& gen, float stddev = 1.f) {
  const auto r = cuda_test::representable<H>(Shape{n}, gen, stddev);
  return {r.data(), r.data() + n};
}

template <class H>
Tensor<H, cuda> on_device(const std::vector<double>& v) {
  auto t = Tensor<double, cpu>::uninitialized(Shape{static_cast<std::int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data());
  return to_device(cast<H>(t));
}

template <class H>
std::vector<double> on_host(const Tensor<H, cuda>& t) {
  const auto r = cast<double>(to_host(t));
  return {r.data(), r.data() + r.numel()};
}

template <class H>
std::vector<std::uint16_t> bits_of(const Tensor<H, cuda>& t) {
  const auto h = to_host(t);
  std::vector<std::uint16_t> b(static_cast<std::size_t>(h.numel()));
  for (std::int64_t i = 0; i < h.numel(); ++i) b[static_cast<std::size_t>(i)] = h[i].bits;
  return b;
}

/// The activations in double: value and derivative.
struct Reference {
  cuda_kernels::PointwiseFunction f;
  const char* name;
  std::function<double(double)> value, derivative;
};

double sigmoid(double u) { return 1 / (1 + std::exp(-u)); }

const std::vector<Reference> functions = {
    {cuda_kernels::PointwiseFunction::silu, "SiLU", [](double x) { return x * sigmoid(x); },
     [](double x) { return sigmoid(x) * (1 + x * (1 - sigmoid(x))); }},
    {cuda_kernels::PointwiseFunction::gelu, "GELU",
     [](double x) { return 0.5 * x * (1 + std::erf(x / std::numbers::sqrt2)); },
     [](double x) {
       return 0.5 * (1 + std::erf(x / std::numbers::sqrt2)) +
              x * std::exp(-x * x / 2) / std::sqrt(2 * std::numbers::pi);
     }},
    {cuda_kernels::PointwiseFunction::gelu_tanh, "GELUTanh",
     [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x))); },
     [](double x) {
       const double u = std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x), t = std::tanh(u);
       return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * std::sqrt(2 / std::numbers::pi) * (1 + 3 * 0.044715 * x * x);
     }},
    {cuda_kernels::PointwiseFunction::quick_gelu, "QuickGELU", [](double x) { return x * sigmoid(1.702 * x); },
     [](double x) {
       const double s = sigmoid(1.702 * x);
       return s * (1 + 1.702 * x * (1 - s));
     }},
};

}  // namespace

TEST_CASE_TEMPLATE("axpy and scale in 16 bits: float arithmetic, one rounding; vectorised == element by element", H,
                   spo::half, bfloat16) {
  const double u16 = unit_roundoff<H>();
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{7}, std::int64_t{8}, std::int64_t{1001}}) {
    INFO("n = " << n);
    Generator gen{static_cast<std::uint64_t>(n), 0};
    const auto x = representable<H>(n + 1, gen), y = representable<H>(n + 1, gen);
    const float alpha = -0.37f;
    auto yd = on_device<H>(y);
    const auto xd = on_device<H>(x);
    // Elements [1, n + 1): pointers 2 bytes past the allocator's alignment, so the element-by-element path.
    auto y_off = on_device<H>(y);
    axpy<H>(alpha, TensorView<const H, cuda>(xd.data(), Shape{n}), TensorView<H, cuda>(yd.data(), Shape{n}));
    axpy<H>(alpha, TensorView<const H, cuda>(xd.data() + 1, Shape{n}), TensorView<H, cuda>(y_off.data() + 1, Shape{n}));
    const auto got = on_host(yd), got_off = on_host(y_off);
    for (std::int64_t i = 0; i < n; ++i) {
      const double ref = y[i] + static_cast<double>(alpha) * x[i];
      CHECK(std::abs(got[i] - ref) <= u16 * std::abs(ref) + 0x1p-23 * (std::abs(y[i]) + std::abs(alpha * x[i])));
      const double ref_off = y[i + 1] + static_cast<double>(alpha) * x[i + 1];
      CHECK(std::abs(got_off[i + 1] - ref_off) <=
            u16 * std::abs(ref_off) + 0x1p-23 * (std::abs(y[i + 1]) + std::abs(alpha * x[i + 1])));
    }
    CHECK(got[n] == y[n]);  // past the view: untouched
    CHECK(got_off[0] == y[0]);

    // The same data through both paths: bitwise equal.
    std::vector<double> padded(y.begin(), y.end());
    padded.insert(padded.begin(), 0.0);
    auto a = on_device<H>(y), shifted = on_device<H>(padded);  // shifted: y[i] at element i + 1
    scale<H>(1.7f, TensorView<H, cuda>(a.data(), Shape{n}));
    scale<H>(1.7f, TensorView<H, cuda>(shifted.data() + 1, Shape{n}));
    const auto ba = bits_of(a), bs = bits_of(shifted);
    for (std::int64_t i = 0; i < n; ++i) CHECK(ba[static_cast<std::size_t>(i)] == bs[static_cast<std::size_t>(i + 1)]);
    const auto sa = on_host(a);
    for (std::int64_t i = 0; i < n; ++i) {
      const double ref = static_cast<double>(1.7f) * y[i];
      CHECK(std::abs(sa[i] - ref) <= u16 * std::abs(ref) + 0x1p-23 * std::abs(ref));
    }
  }
  auto f = Tensor<H, cuda>::uninitialized(Shape{13});
  fill<H>(f.view(), H(2.5f));
  for (const double v : on_host(f)) CHECK(v == 2.5);
}

TEST_CASE_TEMPLATE("activations in 16 bits: forward, saved input and backward within one rounding of the float kernels",
                   H, spo::half, bfloat16) {
  const double u16 = unit_roundoff<H>();
  const std::int64_t n = 1027;
  Generator gen{9, 0};
  const auto x = representable<H>(n, gen, 3.f), dy = representable<H>(n, gen);
  const auto xd = on_device<H>(x), dyd = on_device<H>(dy);
  for (const Reference& r : functions) {
    INFO(r.name);
    auto y = Tensor<H, cuda>::uninitialized(Shape{n}), saved = Tensor<H, cuda>::uninitialized(Shape{n});
    auto dx = Tensor<H, cuda>::uninitialized(Shape{n});
    cuda_kernels::pointwise_forward<H>(r.f, xd.data(), y.data(), saved.data(), n);
    cuda_kernels::pointwise_backward<H>(r.f, xd.data(), dyd.data(), dx.data(), n);
    const auto yv = on_host(y), sv = on_host(saved), dxv = on_host(dx);
    auto y2 = Tensor<H, cuda>::uninitialized(Shape{n});
    cuda_kernels::pointwise_forward<H>(r.f, xd.data(), y2.data(), nullptr, n);  // the vectorised activation path
    CHECK(bits_of(y2) == bits_of(y));
    for (std::int64_t i = 0; i < n; ++i) {
      const double ref = r.value(x[i]), dref = dy[i] * r.derivative(x[i]);
      CHECK(sv[i] == x[i]);
      CHECK(std::abs(yv[i] - ref) <= (u16 + 4e-6) * std::abs(ref) + 2e-6);
      CHECK(std::abs(dxv[i] - dref) <= (u16 + 4e-6) * std::abs(dref) + 2e-6 * (1 + std::abs(dy[i])));
    }
  }
}

TEST_CASE_TEMPLATE("GEGLU's gate in 16 bits: y = a f(g), dh = (dy f(g), dy a f'(g))", H, spo::half, bfloat16) {
  const double u16 = unit_roundoff<H>();
  const std::int64_t rows = 5, dim = 37;
  Generator gen{10, 0};
  const auto h = representable<H>(rows * 2 * dim, gen, 2.f), dy = representable<H>(rows * dim, gen);
  const auto hd = on_device<H>(h), dyd = on_device<H>(dy);
  const Reference& gelu = functions[1];
  auto y = Tensor<H, cuda>::uninitialized(Shape{rows * dim}),
       dh = Tensor<H, cuda>::uninitialized(Shape{rows * 2 * dim});
  cuda_kernels::gated_forward<H>(gelu.f, hd.data(), y.data(), rows, dim);
  cuda_kernels::gated_backward<H>(gelu.f, hd.data(), dyd.data(), dh.data(), rows, dim);
  const auto yv = on_host(y), dhv = on_host(dh);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < dim; ++j) {
      const double a = h[r * 2 * dim + j], g = h[r * 2 * dim + dim + j], d = dy[r * dim + j];
      const double ry = a * gelu.value(g), ra = d * gelu.value(g), rg = d * a * gelu.derivative(g);
      CHECK(std::abs(yv[r * dim + j] - ry) <= (u16 + 4e-6) * std::abs(ry) + 2e-6 * (1 + std::abs(a)));
      CHECK(std::abs(dhv[r * 2 * dim + j] - ra) <= (u16 + 4e-6) * std::abs(ra) + 2e-6 * (1 + std::abs(d)));
      CHECK(std::abs(dhv[r * 2 * dim + dim + j] - rg) <= (u16 + 4e-6) * std::abs(rg) + 2e-6 * (1 + std::abs(d * a)));
    }
}

TEST_CASE_TEMPLATE("nearest 2x upsampling and the sinusoidal embedding in 16 bits", H, spo::half, bfloat16) {
  const double u16 = unit_roundoff<H>();
  const std::int64_t planes = 3, h = 5, w = 7;
  Generator gen{11, 0};
  const auto x = representable<H>(planes * h * w, gen), dy = representable<H>(planes * 4 * h * w, gen);
  auto y = Tensor<H, cuda>::uninitialized(Shape{planes * 4 * h * w}),
       dx = Tensor<H, cuda>::uninitialized(Shape{planes * h * w});
  cuda_kernels::upsample_nearest2x_forward<H>(on_device<H>(x).data(), y.data(), planes, h, w);
  cuda_kernels::upsample_nearest2x_backward<H>(on_device<H>(dy).data(), dx.data(), planes, h, w);
  const auto yv = on_host(y), dxv = on_host(dx);
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t i = 0; i < 2 * h; ++i)
      for (std::int64_t j = 0; j < 2 * w; ++j) CHECK(yv[(p * 2 * h + i) * 2 * w + j] == x[(p * h + i / 2) * w + j / 2]);
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t i = 0; i < h; ++i)
      for (std::int64_t j = 0; j < w; ++j) {
        double ref = 0, mag = 0;
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) {
            const double v = dy[(p * 2 * h + 2 * i + a) * 2 * w + 2 * j + b];
            ref += v;
            mag += std::abs(v);
          }
        CHECK(std::abs(dxv[(p * h + i) * w + j] - ref) <= u16 * std::abs(ref) + 0x1p-22 * mag);
      }

  cuda_kernels::SinusoidParams sp;
  sp.embedding_dim = 33;  // odd: the last column is the zero pad
  sp.flip_sin_to_cos = true;
  sp.downscale_freq_shift = 0;
  const std::vector<double> t = {0, 1, 17, 500, 999};  // exactly representable in both formats
  const std::int64_t n = static_cast<std::int64_t>(t.size()), half_dim = sp.embedding_dim / 2;
  auto emb = Tensor<H, cuda>::uninitialized(Shape{n * sp.embedding_dim});
  cuda_kernels::sinusoidal_embedding_forward<H>(on_device<H>(t).data(), emb.data(), n, sp);
  const auto ev = on_host(emb);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t k = 0; k < half_dim; ++k) {
      const double f = std::exp(-std::log(10000.0) * static_cast<double>(k) / static_cast<double>(half_dim));
      const double c = std::cos(t[static_cast<std::size_t>(i)] * f), s = std::sin(t[static_cast<std::size_t>(i)] * f);
      CHECK(std::abs(ev[i * sp.embedding_dim + k] - c) <= u16 * std::abs(c) + 0x1p-24 + 1e-12);  // cos first (flip)
      CHECK(std::abs(ev[i * sp.embedding_dim + half_dim + k] - s) <= u16 * std::abs(s) + 0x1p-24 + 1e-12);
    }
    CHECK(ev[i * sp.embedding_dim + sp.embedding_dim - 1] == 0.0);
  }
}

TEST_CASE_TEMPLATE("token + position embeddings in 16 bits: the CPU's float sum of the two entries, rounded once", H,
                   spo::half, bfloat16) {
  Generator g{17, 0};
  const std::int64_t vocab = 50, length = 7, width = 13, batch = 3;
  const auto token = cuda_test::representable<H, float>(Shape{vocab, width}, g);            // [V, W]
  const auto position = cuda_test::representable<H, float>(Shape{length, width}, g, 0.5f);  // [L, W]
  std::vector<std::int32_t> ids;                                                            // [B * L], repeats included
  for (std::int64_t i = 0; i < batch * length; ++i) ids.push_back(static_cast<std::int32_t>((i * 17 + 3) % vocab));
  const auto ref = cast<H>(embedding_lookup(token, position, ids, batch));  // [B, L, W]
  const auto got = to_host(embedding_lookup(to_device(cast<H>(token)), to_device(cast<H>(position)), ids, batch));
  REQUIRE(got.shape() == ref.shape());
  int mismatches = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) mismatches += got[i].bits != ref[i].bits;
  CHECK(mismatches == 0);
}
