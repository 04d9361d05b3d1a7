// SPDX-License-Identifier: MIT
// The SD-style UNet in half and bfloat16 on spo::cuda (UNet2DCondition<H, cuda>: every layer's 16-bit kernels, the
// timestep projections in float) against UNet2DCondition<float, cpu> with the same weights (rounded through H) and the
// same inputs: the forward output, dsample, dcontext and every parameter gradient of a full backward, and a SDXL-style
// text_time UNet's output (time ids such as 1000 stay float, which bfloat16 cannot hold).
// Bound: |gpu - cpu| <= tol max |cpu| per tensor, tol = 2e-2 (half), 1.2e-1 (bfloat16): each of the ~15 chained
// layers rounds its output to 16 bits (u16 = 2^-11, 2^-8) and the errors grow through the normalisations and the
// residual sums to a few u16 sqrt(layers) of the tensor's scale; a wrong kernel gives errors of the scale itself.
#include <cmath>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "spo/core/half.hpp"
#include "spo/cuda.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/tensor/ops.hpp"

#include "half_values.hpp"
#include "reference.hpp"
#include "unet_fixtures.hpp"

using namespace spo;

namespace {

template <class H>
double tolerance() {
  return std::same_as<H, spo::half> ? 2e-2 : 1.2e-1;
}

template <class H>
Tensor<float, cpu> rounded(const Tensor<float, cpu>& t) {
  return cast<float>(cast<H>(t));
}

/// The host model's weights rounded through H, stored in H's own dtype (F16 / BF16) as a checkpoint holds them, and
/// loaded into the 16-bit device model the way a user's file is: bit for bit, without a float copy.
template <class H, class Host, class Dev>
void share_weights(Host& host, Dev& device) {
  host.visit_parameters([&](std::string_view, auto& p) { p.value = rounded<H>(p.value); });
  io::StateDictSaveOptions save;
  save.dtype = io::native_dtype<H>;
  const io::NamedTensors file = io::state_dict(host, save);
  io::StateDictLoadOptions load;
  load.strict = true;
  const auto r = io::load_state_dict(device, file, load);
  CHECK(r.loaded.size() == file.tensors().size());
}

template <class H>
void check_unet() {
  INFO((std::same_as<H, spo::half> ? "half" : "bfloat16"));
  model::UNet2DCondition<float, cpu> host(cuda_test::tiny_unet_config(false));
  model::UNet2DCondition<H, cuda> device(cuda_test::tiny_unet_config(false));
  Generator g{11, 0};
  host.reset_parameters(g);
  share_weights<H>(host, device);

  Generator gi{14, 0};
  const auto x = cuda_test::representable<H, float>(Shape{2, 3, 8, 8}, gi);   // [B, Cin, H, W]
  const auto ctx = cuda_test::representable<H, float>(Shape{2, 5, 12}, gi);   // [B, M, Dctx]
  const Tensor<float, cpu> t(Shape{2}, {17.f, 901.f});                        // [B]
  const auto dy = cuda_test::representable<H, float>(Shape{2, 2, 8, 8}, gi);  // [B, Cout, H, W]

  nn::zero_grad(host);
  nn::zero_grad(device);
  const auto y_host = host.forward(x, t, ctx);
  const auto g_host = host.backward(dy);
  const auto y_dev = device.forward(to_device(cast<H>(x)), to_device(t), to_device(cast<H>(ctx)));
  const auto g_dev = device.backward(to_device(cast<H>(dy)));

  const double tol = tolerance<H>();
  const double r_y = cuda_test::scaled_error(cast<float>(to_host(y_dev)), y_host, tol);
  const double r_dx = cuda_test::scaled_error(cast<float>(to_host(g_dev.dsample)), g_host.dsample, tol);
  const double r_dc = cuda_test::scaled_error(cast<float>(to_host(g_dev.dcontext)), g_host.dcontext, tol);
  MESSAGE("worst error / bound: y " << r_y << ", dsample " << r_dx << ", dcontext " << r_dc);
  CHECK(r_y <= 1.0);
  CHECK(r_dx <= 1.0);
  CHECK(r_dc <= 1.0);

  std::map<std::string, Tensor<float, cpu>> device_grads;
  device.visit_parameters([&](std::string_view name, auto& p) {
    if (p.trainable) device_grads.emplace(std::string(name), cast<float>(to_host(p.grad)));
  });
  int checked = 0;
  double worst = 0;
  host.visit_parameters([&](std::string_view name, auto& p) {
    if (!p.trainable) return;
    INFO("parameter " << name);
    const auto it = device_grads.find(std::string(name));
    REQUIRE(it != device_grads.end());
    const double r = cuda_test::scaled_error(it->second, p.grad, tol);
    worst = std::max(worst, r);
    CHECK(r <= 1.0);
    ++checked;
  });
  MESSAGE("parameter gradients: " << checked << ", worst error / bound " << worst);
  CHECK(checked > 100);
}

template <class H>
void check_text_time_unet() {
  model::UNet2DCondition<float, cpu> host(cuda_test::tiny_unet_config(true));
  model::UNet2DCondition<H, cuda> device(cuda_test::tiny_unet_config(true));
  Generator g{21, 0};
  host.reset_parameters(g);
  share_weights<H>(host, device);
  Generator gi{22, 0};
  const auto x = cuda_test::representable<H, float>(Shape{2, 3, 8, 8}, gi);
  const auto ctx = cuda_test::representable<H, float>(Shape{2, 5, 12}, gi);
  const auto pooled = cuda_test::representable<H, float>(Shape{2, 10}, gi);
  const Tensor<float, cpu> t(Shape{2}, {999.f, 1.f});
  const Tensor<float, cpu> ids(Shape{2, 2}, {1000.f, 777.f, 1024.f, 0.f});  // not all bfloat16 numbers
  const nn::no_grad_guard no_grad;
  const auto y_host = host.forward(x, t, ctx, {pooled, ids});
  const auto y_dev = device.forward(to_device(cast<H>(x)), to_device(t), to_device(cast<H>(ctx)),
                                    {to_device(cast<H>(pooled)), to_device(ids)});
  const double r = cuda_test::scaled_error(cast<float>(to_host(y_dev)), y_host, tolerance<H>());
  MESSAGE("text_time UNet: worst error / bound " << r);
  CHECK(r <= 1.0);
}

}  // namespace

static_assert(nn::Layer<nn::Conv2d<spo::half, cuda>>);
static_assert(nn::Layer<nn::Linear<bfloat16, cuda>>);
static_assert(nn::Layer<nn::GroupNorm<spo::half, cuda>>);
static_assert(nn::ContextLayer<nn::Attention<bfloat16, cuda>>);

TEST_CASE_TEMPLATE("UNet2DCondition in 16 bits on cuda against float on the CPU: y, dsample, dcontext, gradients", H,
                   spo::half, bfloat16) {
  check_unet<H>();
}

TEST_CASE_TEMPLATE("a text_time UNet in 16 bits keeps its time ids in float", H, spo::half, bfloat16) {
  check_text_time_unet<H>();
}
