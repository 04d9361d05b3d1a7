// SPDX-License-Identifier: MIT
#include "spo/nn/conv2d.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/testing/gradcheck.hpp"

using namespace spo;

static_assert(nn::Layer<nn::Conv2d<double>>);
static_assert(nn::Layer<nn::Conv2d<float>>);

namespace {

/// Direct 7-loop convolution in double: the independent reference for forward, dx, dw and db.
struct NaiveConv {
  cpu_kernels::Conv2dShape s;

  template <class F>
  void for_each_tap(F&& f) const {  // f(n, o, i, j, c, p, q, x index) for every tap inside the image
    for (std::int64_t n = 0; n < s.batch; ++n)
      for (std::int64_t o = 0; o < s.out_channels; ++o)
        for (std::int64_t i = 0; i < s.out_h(); ++i)
          for (std::int64_t j = 0; j < s.out_w(); ++j)
            for (std::int64_t c = 0; c < s.in_channels; ++c)
              for (std::int64_t p = 0; p < s.kernel_h; ++p)
                for (std::int64_t q = 0; q < s.kernel_w; ++q) {
                  const std::int64_t h = i * s.stride_h - s.pad_h + p, w = j * s.stride_w - s.pad_w + q;
                  if (h < 0 || h >= s.height || w < 0 || w >= s.width) continue;
                  f(n, o, i, j, c, p, q, ((n * s.in_channels + c) * s.height + h) * s.width + w);
                }
  }
  std::int64_t y_index(std::int64_t n, std::int64_t o, std::int64_t i, std::int64_t j) const {
    return ((n * s.out_channels + o) * s.out_h() + i) * s.out_w() + j;
  }
  std::int64_t w_index(std::int64_t o, std::int64_t c, std::int64_t p, std::int64_t q) const {
    return ((o * s.in_channels + c) * s.kernel_h + p) * s.kernel_w + q;
  }

  template <class T>
  std::vector<double> forward(const T* x, const T* w, const T* b) const {
    std::vector<double> y(static_cast<std::size_t>(s.batch * s.out_channels * s.out_h() * s.out_w()), 0.0);
    for (std::int64_t n = 0; n < s.batch; ++n)
      for (std::int64_t o = 0; o < s.out_channels; ++o)
        for (std::int64_t i = 0; i < s.out_h() * s.out_w(); ++i) y[y_index(n, o, 0, 0) + i] = b ? b[o] : 0.0;
    for_each_tap([&](auto n, auto o, auto i, auto j, auto c, auto p, auto q, std::int64_t xi) {
      y[y_index(n, o, i, j)] += static_cast<double>(w[w_index(o, c, p, q)]) * static_cast<double>(x[xi]);
    });
    return y;
  }
  template <class T>
  void backward(const T* x, const T* w, const T* dy, std::vector<double>& dx, std::vector<double>& dw,
                std::vector<double>& db) const {
    dx.assign(static_cast<std::size_t>(s.batch * s.in_channels * s.height * s.width), 0.0);
    dw.assign(static_cast<std::size_t>(s.out_channels * s.in_channels * s.kernel_h * s.kernel_w), 0.0);
    db.assign(static_cast<std::size_t>(s.out_channels), 0.0);
    for_each_tap([&](auto n, auto o, auto i, auto j, auto c, auto p, auto q, std::int64_t xi) {
      const double g = dy[y_index(n, o, i, j)];
      dx[xi] += g * static_cast<double>(w[w_index(o, c, p, q)]);
      dw[w_index(o, c, p, q)] += g * static_cast<double>(x[xi]);
    });
    for (std::int64_t n = 0; n < s.batch; ++n)
      for (std::int64_t o = 0; o < s.out_channels; ++o)
        for (std::int64_t i = 0; i < s.out_h() * s.out_w(); ++i) db[o] += dy[y_index(n, o, 0, 0) + i];
  }
};

/// max |a - ref| / (1 + max |ref|)
template <class T>
double rel_diff(const Tensor<T>& a, const std::vector<double>& ref, double offset = 0.0) {
  REQUIRE(static_cast<std::size_t>(a.numel()) == ref.size());
  double err = 0.0, scale = 1.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[static_cast<std::int64_t>(i)]) - offset - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / scale;
}

struct Config {
  std::int64_t batch, in, out, h, w;
  nn::Conv2dOptions opt;
};

std::string describe(const Config& c) {
  std::ostringstream os;
  os << "B=" << c.batch << " " << c.in << "->" << c.out << " " << c.h << "x" << c.w << " k=(" << c.opt.kernel[0] << ","
     << c.opt.kernel[1] << ") s=(" << c.opt.stride[0] << "," << c.opt.stride[1] << ") p=(" << c.opt.padding[0] << ","
     << c.opt.padding[1] << ") bias=" << c.opt.bias;
  return os.str();
}

const std::vector<Config> small_configs{
    {2, 3, 4, 5, 5, {{1, 1}, {1, 1}, {0, 0}, true}},   // 1x1
    {2, 3, 4, 5, 5, {{3, 3}, {1, 1}, {1, 1}, true}},   // 3x3 pad 1
    {2, 3, 2, 7, 7, {{3, 3}, {2, 2}, {1, 1}, false}},  // 3x3 stride 2 pad 1
    {1, 2, 3, 8, 8, {{4, 4}, {2, 2}, {1, 1}, true}},   // 4x4 stride 2
    {2, 2, 3, 4, 7, {{3, 2}, {1, 2}, {1, 0}, true}},   // non-square input and kernel
};

}  // namespace

TEST_CASE("Conv2d gradients match finite differences (double, im2col path)") {
  Generator g{11, 0};
  for (const auto& c : small_configs) {
    INFO(describe(c));
    nn::Conv2d<double> conv(c.in, c.out, c.opt);
    conv.reset_parameters(g);
    auto r = testing::gradcheck(conv, randn<double>(Shape{c.batch, c.in, c.h, c.w}, g));
    INFO(r.report << r.worst);
    CHECK(r.ok);
  }
}

TEST_CASE("Conv2d double forward and backward match the direct convolution") {
  Generator g{12, 0};
  for (const auto& c : small_configs) {
    INFO(describe(c));
    nn::Conv2d<double> conv(c.in, c.out, c.opt);
    conv.reset_parameters(g);
    auto x = randn<double>(Shape{c.batch, c.in, c.h, c.w}, g);
    auto y = conv.forward(x);
    const NaiveConv ref{conv.geometry(x.shape())};
    CHECK(y.shape() == Shape{c.batch, c.out, ref.s.out_h(), ref.s.out_w()});
    CHECK(rel_diff(y, ref.forward(x.data(), conv.weight().value.data(),
                                  c.opt.bias ? conv.bias().value.data() : nullptr)) < 1e-12);
  }
}

TEST_CASE("Conv2d float (oneDNN) forward, dx, dW and db match the direct convolution") {
  Generator g{13, 0};
  std::vector<Config> configs = small_configs;
  configs.push_back({3, 16, 32, 9, 9, {{3, 3}, {1, 1}, {1, 1}, true}});   // blocked layouts with a channel tail
  configs.push_back({2, 20, 24, 10, 6, {{1, 1}, {1, 1}, {0, 0}, true}});  // pointwise GEMM path
  configs.push_back({1, 20, 24, 10, 6, {{1, 1}, {1, 1}, {0, 0}, true}});  // pointwise, fewer images than threads
  configs.push_back({5, 20, 24, 10, 6, {{1, 1}, {2, 2}, {0, 0}, true}});  // 1x1 stride 2: the blocked path
  configs.push_back({2, 32, 16, 11, 11, {{3, 3}, {2, 2}, {1, 1}, false}});
  configs.push_back({2, 17, 5, 6, 9, {{4, 4}, {2, 2}, {1, 1}, true}});
  for (const auto& c : configs) {
    INFO(describe(c));
    nn::Conv2d<float> conv(c.in, c.out, c.opt);
    conv.reset_parameters(g);
    auto x = randn<float>(Shape{c.batch, c.in, c.h, c.w}, g);
    auto y = conv.forward(x);
    const NaiveConv ref{conv.geometry(x.shape())};
    const float* b = c.opt.bias ? conv.bias().value.data() : nullptr;
    CHECK(rel_diff(y, ref.forward(x.data(), conv.weight().value.data(), b)) < 1e-5);

    // Gradients accumulate: start from 1 and expect 1 + reference.
    as_array(conv.weight().grad) = 1.f;
    if (c.opt.bias) as_array(conv.bias().grad) = 1.f;
    auto dy = randn<float>(y.shape(), g);
    auto dx = conv.backward(dy);
    std::vector<double> rdx, rdw, rdb;
    ref.backward(x.data(), conv.weight().value.data(), dy.data(), rdx, rdw, rdb);
    CHECK(dx.shape() == x.shape());
    CHECK(rel_diff(dx, rdx) < 1e-5);
    CHECK(rel_diff(conv.weight().grad, rdw, 1.0) < 1e-5);
    if (c.opt.bias) CHECK(rel_diff(conv.bias().grad, rdb, 1.0) < 1e-5);
  }
}

TEST_CASE("Conv2d float im2col reference path agrees with the oneDNN path") {
  Generator g{14, 0};
  const cpu_kernels::Conv2dShape s{2, 8, 16, 7, 7, 3, 3, 2, 2, 1, 1};
  auto x = randn<float>(Shape{s.batch, s.in_channels, s.height, s.width}, g);
  auto w = randn<float>(Shape{s.out_channels, s.in_channels, s.kernel_h, s.kernel_w}, g);
  auto b = randn<float>(Shape{s.out_channels}, g);
  Tensor<float> y1(Shape{s.batch, s.out_channels, s.out_h(), s.out_w()}), y2 = y1;
  cpu_kernels::conv2d_forward_im2col(s, x.data(), w.data(), b.data(), y1.data());
  cpu_kernels::conv2d_forward_dnnl(s, x.data(), w.data(), b.data(), y2.data());
  CHECK(max_abs_diff<float>(y1.view(), y2.view()) < 1e-4);

  auto dy = randn<float>(y1.shape(), g);
  Tensor<float> dx1(x.shape()), dx2(x.shape()), dw1(w.shape()), dw2(w.shape()), db1(b.shape()), db2(b.shape());
  cpu_kernels::conv2d_backward_data_im2col(s, dy.data(), w.data(), dx1.data());
  cpu_kernels::conv2d_backward_weights_im2col(s, x.data(), dy.data(), dw1.data(), db1.data());
  cpu_kernels::conv2d_backward<float>(s, x.data(), w.data(), dy.data(), dx2.data(), dw2.data(), db2.data());
  CHECK(max_abs_diff<float>(dx1.view(), dx2.view()) < 1e-4);
  CHECK(max_abs_diff<float>(dw1.view(), dw2.view()) < 1e-3);
  CHECK(max_abs_diff<float>(db1.view(), db2.view()) < 1e-3);
}

TEST_CASE("Conv2d frozen parameters get no gradient; keys follow torch") {
  Generator g{15, 0};
  nn::Conv2d<float> conv(3, 4, 3, 1, 1);
  conv.reset_parameters(g);
  std::vector<std::string> names;
  conv.visit_parameters([&](std::string_view n, auto& p) { names.emplace_back(n); }, "conv_in");
  CHECK(names == std::vector<std::string>{"conv_in.weight", "conv_in.bias"});
  CHECK(conv.weight().shape() == Shape{4, 3, 3, 3});
  CHECK(nn::parameter_count(conv) == 4 * 3 * 9 + 4);
  const float bound = 1.f / std::sqrt(27.f);
  CHECK(as_array(conv.weight().value).abs().maxCoeff() <= bound);
  CHECK(as_array(conv.weight().value).abs().maxCoeff() > 0.5f * bound);
  nn::set_trainable(conv, false);
  auto x = randn<float>(Shape{2, 3, 6, 6}, g);
  auto y = conv.forward(x);
  auto dx = conv.backward(randn<float>(y.shape(), g));
  CHECK(dx.shape() == x.shape());
  CHECK(conv.weight().grad.empty());
  CHECK(conv.bias().grad.empty());
}

TEST_CASE("Conv2d errors name the shapes") {
  nn::Conv2d<float> conv(3, 4, 3, 1, 1);
  CHECK_THROWS_WITH_AS(conv.forward(Tensor<float>(Shape{2, 5, 8, 8})), doctest::Contains("[2, 5, 8, 8]"), spo::error);
  CHECK_THROWS_WITH_AS(conv.forward(Tensor<float>(Shape{5, 8, 8})), doctest::Contains("[B, 3, H, W]"), spo::error);
  nn::Conv2d<float> big(3, 4, 5);
  CHECK_THROWS_WITH_AS(big.forward(Tensor<float>(Shape{1, 3, 4, 9})), doctest::Contains("[1, 3, 4, 9]"), spo::error);
  CHECK_THROWS_WITH_AS(conv.backward(Tensor<float>(Shape{2, 4, 8, 8})), doctest::Contains("without a forward"),
                       spo::error);
  conv.forward(Tensor<float>(Shape{2, 3, 8, 8}));
  CHECK_THROWS_WITH_AS(conv.backward(Tensor<float>(Shape{2, 4, 8, 7})),
                       doctest::Contains("[2, 4, 8, 7] does not match output shape [2, 4, 8, 8]"), spo::error);
  CHECK_THROWS_AS(nn::Conv2d<float>(3, 4, 0), spo::error);
}
