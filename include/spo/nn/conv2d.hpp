// SPDX-License-Identifier: MIT
/// @brief Conv2d: 2-D cross-correlation over NCHW tensors (torch.nn.Conv2d, groups = 1, dilation = 1;
/// keys `weight` [out, in, kh, kw], `bias` [out]).
#pragma once

#include <array>
#include <cmath>
#include <string_view>

#include "spo/core/rng.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cpu/conv2d.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::nn {

/// Kernel, stride and padding as (height, width) pairs.
struct Conv2dOptions {
  std::array<std::int64_t, 2> kernel{1, 1};
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> padding{0, 0};
  bool bias = true;
};

template <Scalar T, Device D = cpu>
class Conv2d {
 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  Conv2d() = default;
  /// Square kernel, stride and padding (torch.nn.Conv2d(in, out, kernel_size, stride, padding, bias=bias)).
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, std::int64_t stride = 1,
         std::int64_t padding = 0, bool bias = true)
      : Conv2d(in_channels, out_channels,
               Conv2dOptions{{kernel_size, kernel_size}, {stride, stride}, {padding, padding}, bias}) {}
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, Conv2dOptions opt)
      : in_(in_channels), out_(out_channels), opt_(opt),
        weight_(Shape{out_channels, in_channels, opt.kernel[0], opt.kernel[1]}) {
    SPO_CHECK(in_channels >= 1 && out_channels >= 1 && opt.kernel[0] >= 1 && opt.kernel[1] >= 1 &&
                  opt.stride[0] >= 1 && opt.stride[1] >= 1 && opt.padding[0] >= 0 && opt.padding[1] >= 0,
              "Conv2d(" << in_channels << " -> " << out_channels << "): invalid kernel (" << opt.kernel[0] << ", "
                        << opt.kernel[1] << "), stride (" << opt.stride[0] << ", " << opt.stride[1]
                        << ") or padding (" << opt.padding[0] << ", " << opt.padding[1] << ")");
    if (opt.bias) bias_ = Parameter<T, D>(Shape{out_channels});
  }

  /// torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan_in = in kh kw.
  void reset_parameters(Generator& gen) {
    const T bound = T(1) / std::sqrt(static_cast<T>(in_ * opt_.kernel[0] * opt_.kernel[1]));
    fill_uniform(weight_.value.view(), gen, -bound, bound);
    if (opt_.bias) fill_uniform(bias_.value.view(), gen, -bound, bound);
  }

  /// The geometry of this layer applied to an input of `shape`; throws naming the shape when it does not fit.
  cpu_kernels::Conv2dShape geometry(const Shape& shape) const {
    SPO_CHECK(shape.rank() == 4 && shape[1] == in_ && shape[0] >= 1,
              "Conv2d(" << in_ << " -> " << out_ << "): input shape " << shape << " is not [B, " << in_ << ", H, W]");
    cpu_kernels::Conv2dShape s{shape[0],      shape[1],      shape[2],      shape[3],       out_,          opt_.kernel[0],
                               opt_.kernel[1], opt_.stride[0], opt_.stride[1], opt_.padding[0], opt_.padding[1]};
    SPO_CHECK(s.height + 2 * s.pad_h >= s.kernel_h && s.width + 2 * s.pad_w >= s.kernel_w,
              "Conv2d(" << in_ << " -> " << out_ << "): input shape " << shape << " with padding (" << s.pad_h << ", "
                        << s.pad_w << ") is smaller than the kernel (" << s.kernel_h << ", " << s.kernel_w << ")");
    return s;
  }

  tensor forward(const tensor& x) {
    const auto s = geometry(x.shape());
    auto y = tensor::uninitialized(Shape{s.batch, out_, s.out_h(), s.out_w()});   // [B, Cout, Ho, Wo]
    saved_.clear();
    cpu_kernels::conv2d_forward<T>(s, x.data(), weight_.value.data(), opt_.bias ? bias_.value.data() : nullptr,
                                   y.data(), grad_enabled() ? &saved_ : nullptr);
    if (grad_enabled()) input_shape_ = x.shape();
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!saved_.empty(), "Conv2d::backward without a forward in grad mode");
    const auto s = geometry(input_shape_);
    const Shape ys{s.batch, out_, s.out_h(), s.out_w()};
    SPO_CHECK(dy.shape() == ys, "Conv2d::backward: gradient shape " << dy.shape() << " does not match output shape "
                                                                     << ys << " of input " << input_shape_);
    auto dx = tensor::uninitialized(input_shape_);                                // [B, Cin, H, W]
    cpu_kernels::conv2d_backward<T>(s, saved_, weight_.value.data(), dy.data(), dx.data(),
                                    weight_.trainable ? weight_.grad.data() : nullptr,
                                    opt_.bias && bias_.trainable ? bias_.grad.data() : nullptr);
    saved_.clear();
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(join_name(prefix, "weight"), weight_);
    if (opt_.bias) f(join_name(prefix, "bias"), bias_);
  }

  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_; }
  const Conv2dOptions& options() const { return opt_; }
  Parameter<T, D>& weight() { return weight_; }
  Parameter<T, D>& bias() { return bias_; }

 private:
  std::int64_t in_ = 0, out_ = 0;
  Conv2dOptions opt_;
  Parameter<T, D> weight_, bias_;
  cpu_kernels::Conv2dSaved<T> saved_;  // the input, in the layout the backward kernels read
  Shape input_shape_;
};

}  // namespace spo::nn
