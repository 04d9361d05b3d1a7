// SPDX-License-Identifier: MIT
// nn::Conv2d<T, cuda> (cuDNN) against nn::Conv2d<T, cpu> (oneDNN for float, im2col + GEMM for double): output, dx,
// dW and db (the gradients pre-filled with random values, so accumulation is checked too), float and double.
// Bound, per element r of each result: |r_gpu - r_cpu| <= 4 (L + 2) u m_r + 256 u max(m) [+ 1e-2 m_r + 1e-3 max(m)
// with TF32], where m is the same result computed in double on |x|, |w|, |b|, |dy| (and |dW0|, |db0|): the sum
// of |terms| that the standard summation bound (Higham 3.1) scales with; L is the reduction length (Cin kh kw
// for y, Cout kh kw for dx, B Ho Wo for dW and db); u = 2^-24 (float) or 2^-53 (double). The factor 4 and the
// max(m) term leave room for Winograd/FFT algorithms, whose error follows the tensor's scale rather than each
// element's; any indexing error is of the order of m itself. TF32 rounds both inputs of each product to 10
// mantissa bits (<= 2^-10 relative each), well inside 1e-2 m_r.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/nn/conv2d.hpp"
#include "spo/nn/cuda/conv2d.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/layer.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/ops.hpp"

#include "conv2d_cases.hpp"
#include "reference.hpp"

using namespace spo;

static_assert(nn::Layer<nn::Conv2d<float, cuda>>);
static_assert(nn::Layer<nn::Conv2d<double, cuda>>);

namespace {

using Case = cuda_test::Conv2dCase;
const auto& cases = cuda_test::conv2d_cases();

enum class Frozen { none, weight, both };

/// Resets spo::cuda_runtime's TF32 permission when the scope ends, even when a check throws.
struct Tf32Scope {
  explicit Tf32Scope(bool on) { cuda_runtime::set_allow_tf32(on); }
  ~Tf32Scope() { cuda_runtime::set_allow_tf32(false); }
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;
};

template <class T>
Tensor<double, cpu> abs_double(const Tensor<T, cpu>& t) {
  auto r = Tensor<double, cpu>::uninitialized(t.shape());  // t.shape
  for (std::int64_t i = 0; i < t.numel(); ++i) r[i] = std::abs(static_cast<double>(t[i]));
  return r;
}

template <class T>
Tensor<T, cpu> normal(const Shape& shape, Generator& gen) {
  auto t = Tensor<T, cpu>::uninitialized(shape);  // shape
  fill_normal(t.view(), gen, T(0), T(1));
  return t;
}

/// Largest |gpu - cpu| / bound over the elements (see the header comment); +inf on NaN or a shape mismatch.
template <class T>
double worst_ratio(const Tensor<T, cpu>& gpu, const Tensor<T, cpu>& ref, const Tensor<double, cpu>& mag, double length,
                   bool tf32) {
  if (!(gpu.shape() == ref.shape()) || !(mag.shape() == ref.shape())) return INFINITY;
  const double u = std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
  double m_max = 0;
  for (std::int64_t i = 0; i < mag.numel(); ++i) m_max = std::max(m_max, mag[i]);
  double worst = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    double bound = 4 * (length + 2) * u * mag[i] + 256 * u * m_max + 1e-300;
    if (tf32) bound += 1e-2 * mag[i] + 1e-3 * m_max;
    const double d = std::abs(static_cast<double>(gpu[i]) - static_cast<double>(ref[i]));
    if (!(d == d)) return INFINITY;
    worst = std::max(worst, d / bound);
  }
  return worst;
}

template <class T>
void check_case(const Case& c, std::uint64_t seed, Frozen frozen = Frozen::none, bool tf32 = false) {
  INFO(std::string(c.name) << ": x [" << c.batch << ", " << c.in << ", " << c.height << ", " << c.width << "], " << c.in
                           << " -> " << c.out << ", frozen " << static_cast<int>(frozen) << ", tf32 " << tf32
                           << ", seed " << seed);
  Generator gen{seed, 0};
  nn::Conv2d<T, cpu> ref(c.in, c.out, c.opt);
  ref.reset_parameters(gen);
  nn::Conv2d<T, cuda> dev(c.in, c.out, c.opt);
  if (frozen != Frozen::none) ref.weight().set_trainable(false);
  if (frozen == Frozen::both && c.opt.bias) ref.bias().set_trainable(false);
  nn::copy_parameters(ref, dev);  // values and trainable flags
  REQUIRE(dev.weight().trainable == (frozen == Frozen::none));

  // Pre-filled gradients: backward must add to them.
  if (ref.weight().trainable) ref.weight().grad = normal<T>(ref.weight().shape(), gen);
  if (c.opt.bias && ref.bias().trainable) ref.bias().grad = normal<T>(ref.bias().shape(), gen);
  nn::copy_gradients(ref, dev);  // onto the device (copy_gradients copies every trainable parameter's grad)

  const auto s = ref.geometry(Shape{c.batch, c.in, c.height, c.width});
  const auto x = normal<T>(Shape{c.batch, c.in, c.height, c.width}, gen);       // [B, Cin, H, W]
  const auto dy = normal<T>(Shape{c.batch, c.out, s.out_h(), s.out_w()}, gen);  // [B, Cout, Ho, Wo]

  // Magnitudes: the same computation in double on absolute values (weight and bias always trainable here).
  nn::Conv2d<double, cpu> mag(c.in, c.out, c.opt);
  mag.weight().value = abs_double(ref.weight().value);
  if (c.opt.bias) mag.bias().value = abs_double(ref.bias().value);
  if (ref.weight().trainable) mag.weight().grad = abs_double(ref.weight().grad);
  if (c.opt.bias && ref.bias().trainable) mag.bias().grad = abs_double(ref.bias().grad);
  const auto m_y = mag.forward(abs_double(x));     // [B, Cout, Ho, Wo]
  const auto m_dx = mag.backward(abs_double(dy));  // [B, Cin, H, W]

  Tf32Scope tf32_scope(tf32);
  const auto y_ref = ref.forward(x);
  const auto y_dev = to_host(dev.forward(to_device(x)));
  const auto dx_ref = ref.backward(dy);
  const auto dx_dev = to_host(dev.backward(to_device(dy)));

  const double taps = static_cast<double>(c.opt.kernel[0] * c.opt.kernel[1]);
  const double pixels = static_cast<double>(s.batch * s.out_h() * s.out_w());
  const double r_y = worst_ratio(y_dev, y_ref, m_y, c.in * taps + 1, tf32);
  const double r_dx = worst_ratio(dx_dev, dx_ref, m_dx, c.out * taps, tf32);
  MESSAGE(std::string(c.name) << " (" << std::string(std::is_same_v<T, float> ? "float" : "double")
                              << std::string(tf32 ? ", tf32" : "") << "): worst error / bound: y " << r_y << ", dx "
                              << r_dx);
  CHECK(r_y <= 1.0);
  CHECK(r_dx <= 1.0);

  const auto& plan = cuda_kernels::conv2d_plan<T>({s.batch, s.in_channels, s.height, s.width, s.out_channels,
                                                   s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w});
  MESSAGE("  cuDNN algorithm (math type, fallback, workspace bytes): forward "
          << plan.forward_algo << " (" << plan.forward_math << ", " << plan.forward_fallback << ", "
          << plan.forward_workspace << "), data " << plan.data_algo << " (" << plan.data_math << ", "
          << plan.data_fallback << ", " << plan.data_workspace << "), filter " << plan.filter_algo << " ("
          << plan.filter_math << ", " << plan.filter_fallback << ", " << plan.filter_workspace << ")");
  for (const cudnnMathType_t m : {plan.forward_math, plan.data_math, plan.filter_math}) {
    if (std::is_same_v<T, float> && !tf32) CHECK(m == CUDNN_FMA_MATH);  // FP32 stays FP32
    CHECK(m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);                  // never FP16 down-conversion
  }

  if (frozen == Frozen::none) {
    const double r_dw = worst_ratio(to_host(dev.weight().grad), ref.weight().grad, mag.weight().grad, pixels + 1, tf32);
    MESSAGE("  dW " << r_dw);
    CHECK(r_dw <= 1.0);
  } else {
    CHECK(dev.weight().grad.numel() == 0);  // frozen: no gradient memory, none formed
  }
  if (c.opt.bias && frozen != Frozen::both) {
    const double r_db = worst_ratio(to_host(dev.bias().grad), ref.bias().grad, mag.bias().grad, pixels + 1, tf32);
    MESSAGE("  db " << r_db);
    CHECK(r_db <= 1.0);
  }
  if (c.opt.bias && frozen == Frozen::both) CHECK(dev.bias().grad.numel() == 0);
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const spo::error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE_TEMPLATE("Conv2d<cuda>: output, dx, dW and db match Conv2d<cpu>", T, float, double) {
  std::uint64_t seed = 1000;
  for (const Case& c : cases) check_case<T>(c, seed++);
}

TEST_CASE_TEMPLATE("Conv2d<cuda>: a frozen weight gives dx (and db) only and keeps no weight gradient", T, float,
                   double) {
  check_case<T>(cases[0], 2000, Frozen::weight);
  check_case<T>(cases[2], 2001, Frozen::both);
  check_case<T>(cases[6], 2002, Frozen::both);
  check_case<T>(cases[5], 2003, Frozen::weight);
}

TEST_CASE("Conv2d<cuda, float> with TF32 allowed stays within TF32 rounding of the CPU; the flag is reset after") {
  check_case<float>(cases[8], 3000, Frozen::none, true);
  check_case<float>(cases[2], 3001, Frozen::none, true);
  check_case<float>(cases[2], 3002, Frozen::weight, true);
  CHECK_FALSE(cuda_runtime::allow_tf32());
  // FP32 again after TF32: the plans are keyed by math type, so the FMA plan must be used.
  check_case<float>(cases[8], 3003);
}

TEST_CASE_TEMPLATE("Conv2d<cuda>: reset_parameters draws the CPU layer's numbers; keys weight and bias", T, float,
                   double) {
  nn::Conv2d<T, cpu> ref(5, 7, nn::Conv2dOptions{{3, 2}, {1, 1}, {1, 0}, true});
  nn::Conv2d<T, cuda> dev(5, 7, nn::Conv2dOptions{{3, 2}, {1, 1}, {1, 0}, true});
  Generator g_ref{77, 5}, g_dev{77, 5};
  ref.reset_parameters(g_ref);
  dev.reset_parameters(g_dev);
  CHECK(g_ref == g_dev);
  const double ulp = std::is_same_v<T, float> ? 0x1p-23 : 0x1p-52;
  CHECK(cuda_test::worst_ratio(to_host(dev.weight().value), ref.weight().value, ulp, ulp) <= 1.0);
  CHECK(cuda_test::worst_ratio(to_host(dev.bias().value), ref.bias().value, ulp, ulp) <= 1.0);
  CHECK(dev.weight().shape() == Shape{7, 5, 3, 2});
  CHECK(dev.bias().shape() == Shape{7});

  std::vector<std::string> names;
  dev.visit_parameters([&](std::string_view name, nn::Parameter<T, cuda>&) { names.emplace_back(name); }, "conv_in");
  CHECK(names == std::vector<std::string>{"conv_in.weight", "conv_in.bias"});
  nn::Conv2d<T, cuda> no_bias(4, 2, 1, 1, 0, false);
  names.clear();
  no_bias.visit_parameters([&](std::string_view name, nn::Parameter<T, cuda>&) { names.emplace_back(name); }, {});
  CHECK(names == std::vector<std::string>{"weight"});
  CHECK(no_bias.in_channels() == 4);
  CHECK(no_bias.out_channels() == 2);
  CHECK_FALSE(no_bias.options().bias);
}

TEST_CASE("Conv2d<cuda>: bad inputs throw naming the shapes") {
  nn::Conv2d<float, cuda> conv(4, 6, 3, 1, 1);
  const std::string wrong_channels = error_of([&] { conv.forward(Tensor<float, cuda>(Shape{2, 5, 8, 8})); });
  INFO(wrong_channels);
  CHECK(wrong_channels.find("[2, 5, 8, 8]") != std::string::npos);
  CHECK(wrong_channels.find("[B, 4, H, W]") != std::string::npos);

  nn::Conv2d<float, cuda> valid(4, 6, 3, 1, 0);
  const std::string too_small = error_of([&] { valid.forward(Tensor<float, cuda>(Shape{1, 4, 2, 5})); });
  INFO(too_small);
  CHECK(too_small.find("[1, 4, 2, 5]") != std::string::npos);

  CHECK(error_of([&] {
          conv.backward(Tensor<float, cuda>(Shape{2, 6, 8, 8}));
        }).find("without a forward") != std::string::npos);
  {
    nn::no_grad_guard no_grad;
    const auto y = conv.forward(Tensor<float, cuda>(Shape{2, 4, 8, 8}));
    CHECK(y.shape() == Shape{2, 6, 8, 8});
  }
  CHECK(error_of([&] {
          conv.backward(Tensor<float, cuda>(Shape{2, 6, 8, 8}));
        }).find("without a forward") != std::string::npos);

  conv.forward(Tensor<float, cuda>(Shape{2, 4, 8, 8}));
  const std::string wrong_dy = error_of([&] { conv.backward(Tensor<float, cuda>(Shape{2, 6, 7, 8})); });
  INFO(wrong_dy);
  CHECK(wrong_dy.find("[2, 6, 7, 8]") != std::string::npos);
  CHECK(wrong_dy.find("[2, 6, 8, 8]") != std::string::npos);
  const auto dx = conv.backward(Tensor<float, cuda>(Shape{2, 6, 8, 8}));
  CHECK(dx.shape() == Shape{2, 4, 8, 8});
  CHECK(error_of([&] {
          conv.backward(Tensor<float, cuda>(Shape{2, 6, 8, 8}));
        }).find("without a forward") != std::string::npos);
}
