// SPDX-License-Identifier: MIT
/// @brief Conv2d on spo::cuda: the CPU layer's interface (torch.nn.Conv2d, groups = 1, dilation = 1) through
/// cuDNN's legacy convolution API (tensor/cuda/cudnn.hpp).
#pragma once

#include <cmath>
#include <string_view>

#include "spo/core/rng.hpp"
#include "spo/nn/conv2d.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cuda/cudnn.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    Conv2d<T, cpu>'s twin on the GPU: y = conv(x, w) + b with the same constructors, parameter keys (`weight`
    [out, in, kh, kw], `bias` [out]), initialisation and error messages.
    forward keeps a copy of x for the weight gradient only when grad_enabled() and the weight is trainable, so a
    frozen convolution (the UNet base under LoRA) keeps nothing but the input shape, and its backward computes
    dx alone. FP32 convolutions use TF32 only under cuda_runtime::allow_tf32().
!*/
template <Scalar T>
class Conv2d<T, cuda> {
 public:
  using scalar_type = T;
  using device_type = cuda;
  using tensor = Tensor<T, cuda>;

  Conv2d() = default;
  /// Square kernel, stride and padding (torch.nn.Conv2d(in, out, kernel_size, stride, padding, bias=bias)).
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, std::int64_t stride = 1,
         std::int64_t padding = 0, bool bias = true)
      : Conv2d(in_channels, out_channels,
               Conv2dOptions{{kernel_size, kernel_size}, {stride, stride}, {padding, padding}, bias}) {}
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, Conv2dOptions opt)
      : in_(in_channels), out_(out_channels), opt_(opt) {
    SPO_CHECK(in_channels >= 1 && out_channels >= 1 && opt.kernel[0] >= 1 && opt.kernel[1] >= 1 &&
                  opt.stride[0] >= 1 && opt.stride[1] >= 1 && opt.padding[0] >= 0 && opt.padding[1] >= 0,
              "Conv2d(" << in_channels << " -> " << out_channels << "): invalid kernel (" << opt.kernel[0] << ", "
                        << opt.kernel[1] << "), stride (" << opt.stride[0] << ", " << opt.stride[1]
                        << ") or padding (" << opt.padding[0] << ", " << opt.padding[1] << ")");
    const Shape weight_shape{out_channels, in_channels, opt.kernel[0], opt.kernel[1]};
    weight_ = Parameter<T, cuda>(weight_shape);                     // [out, in, kh, kw]
    if (opt.bias) bias_ = Parameter<T, cuda>(Shape{out_channels});  // [out]
  }

  /// torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan_in = in kh kw; the same
  /// numbers as Conv2d<T, cpu> for the same generator.
  void reset_parameters(Generator& gen) {
    const T bound = T(1) / std::sqrt(static_cast<T>(in_ * opt_.kernel[0] * opt_.kernel[1]));
    fill_uniform(weight_.value.view(), gen, -bound, bound);
    if (opt_.bias) fill_uniform(bias_.value.view(), gen, -bound, bound);
  }

  /// The geometry of this layer applied to an input of `shape`; throws naming the shape when it does not fit.
  cpu_kernels::Conv2dShape geometry(const Shape& shape) const {
    SPO_CHECK(shape.rank() == 4 && shape[1] == in_ && shape[0] >= 1,
              "Conv2d(" << in_ << " -> " << out_ << "): input shape " << shape << " is not [B, " << in_ << ", H, W]");
    cpu_kernels::Conv2dShape s{shape[0],       shape[1],       shape[2],       shape[3],
                               out_,           opt_.kernel[0], opt_.kernel[1], opt_.stride[0],
                               opt_.stride[1], opt_.padding[0], opt_.padding[1]};
    SPO_CHECK(s.height + 2 * s.pad_h >= s.kernel_h && s.width + 2 * s.pad_w >= s.kernel_w,
              "Conv2d(" << in_ << " -> " << out_ << "): input shape " << shape << " with padding (" << s.pad_h << ", "
                        << s.pad_w << ") is smaller than the kernel (" << s.kernel_h << ", " << s.kernel_w << ")");
    return s;
  }

  tensor forward(const tensor& x) {
    const auto s = geometry(x.shape());
    auto y = tensor::uninitialized(Shape{s.batch, out_, s.out_h(), s.out_w()});  // [B, Cout, Ho, Wo]
    cuda_kernels::conv2d_forward<T>(cudnn_geometry(s), x.data(), weight_.value.data(),
                                    opt_.bias ? bias_.value.data() : nullptr, y.data());
    has_forward_ = grad_enabled();
    if (has_forward_) input_shape_ = x.shape();
    if (has_forward_ && weight_.trainable) saved_x_ = x;  // [B, Cin, H, W]
    else saved_x_ = tensor();
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(has_forward_, "Conv2d::backward without a forward in grad mode");
    const auto s = geometry(input_shape_);
    const Shape ys{s.batch, out_, s.out_h(), s.out_w()};
    SPO_CHECK(dy.shape() == ys, "Conv2d::backward: gradient shape " << dy.shape() << " does not match output shape "
                                                                     << ys << " of input " << input_shape_);
    const auto g = cudnn_geometry(s);
    auto dx = tensor::uninitialized(input_shape_);  // [B, Cin, H, W]
    cuda_kernels::conv2d_backward_data<T>(g, weight_.value.data(), dy.data(), dx.data());
    if (weight_.trainable) {
      SPO_CHECK(saved_x_.shape() == input_shape_,
                "Conv2d::backward: the weight was frozen during the forward pass, so its gradient cannot be formed");
      SPO_CHECK(weight_.grad.shape() == weight_.value.shape(),
                "Conv2d::backward: weight gradient of shape " << weight_.grad.shape() << " for a weight of shape "
                                                              << weight_.value.shape());
      cuda_kernels::conv2d_backward_filter<T>(g, saved_x_.data(), dy.data(), weight_.grad.data(), T(1));
    }
    if (opt_.bias && bias_.trainable) {
      SPO_CHECK(bias_.grad.shape() == bias_.value.shape(),
                "Conv2d::backward: bias gradient of shape " << bias_.grad.shape() << " for a bias of shape "
                                                            << bias_.value.shape());
      cuda_kernels::conv2d_backward_bias<T>(g, dy.data(), bias_.grad.data(), T(1));
    }
    saved_x_ = tensor();
    has_forward_ = false;
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
  Parameter<T, cuda>& weight() { return weight_; }
  Parameter<T, cuda>& bias() { return bias_; }

 private:
  static cuda_kernels::Conv2dGeometry cudnn_geometry(const cpu_kernels::Conv2dShape& s) {
    return {s.batch,    s.in_channels, s.height,   s.width, s.out_channels, s.kernel_h,
            s.kernel_w, s.stride_h,    s.stride_w, s.pad_h, s.pad_w};
  }

  std::int64_t in_ = 0, out_ = 0;
  Conv2dOptions opt_;
  Parameter<T, cuda> weight_, bias_;
  tensor saved_x_;       // [B, Cin, H, W]: the input, kept for the weight gradient
  Shape input_shape_;
  bool has_forward_ = false;
};

}  // namespace spo::nn
