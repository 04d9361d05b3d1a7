// SPDX-License-Identifier: MIT
/// @brief Conv2d: 2-D cross-correlation over NCHW tensors (torch.nn.Conv2d, groups = 1, dilation = 1;
/// keys `weight` [out, in, kh, kw], `bias` [out]), on any device with kernels (the CPU ones here, oneDNN and
/// im2col; the spo::cuda ones in nn/cuda/conv2d.hpp, cuDNN).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/cpu/conv2d.hpp"
#include "spo/tensor/layout.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::inline kernels {

/// What the conv2d_backward of device D needs from its conv2d_forward; specialised beside each device's kernels (the
/// CPU's for float and double, spo::cuda's for the 16-bit scalars too).
template <StorageScalar T, Device D>
struct Conv2dState;

/// The CPU keeps the input in the layout of the forward primitive's source (cpu_kernels::Conv2dSaved).
template <Scalar T>
struct Conv2dState<T, cpu> {
  cpu_kernels::Conv2dSaved<T> saved;

  void clear() { saved.clear(); }
};

/*!
  The Conv2d kernels, with one overload per device; s is the geometry (cpu_kernels::Conv2dShape).
  conv2d_forward(s, x, w, b, y, state, weight_grad)
    REQUIRES x [B, Cin, H, W], w [Cout, Cin, kh, kw], b [Cout] or null, y [B, Cout, Ho, Wo]
    ENSURES  y = conv(x, w) + b; when state is not null it receives what conv2d_backward needs to form dx, and dw
             when weight_grad (the CPU keeps its reordered input whatever weight_grad is)
  conv2d_backward(s, state, w, dy, dx, dw, db)
    REQUIRES state from conv2d_forward on the same geometry; dw [Cout, Cin, kh, kw] or null (then weight_grad
             may have been false), db [Cout] or null
    ENSURES  dx = d(sum y dy)/dx (overwritten); dw += d/dw and db += d/db, each when not null
!*/
template <Scalar T>
void conv2d_forward(const cpu_kernels::Conv2dShape& s, const Tensor<T, cpu>& x, const Tensor<T, cpu>& w,
                    const Tensor<T, cpu>* b, Tensor<T, cpu>& y, Conv2dState<T, cpu>* state, bool weight_grad) {
  (void)weight_grad;
  cpu_kernels::conv2d_forward<T>(s, x.data(), w.data(), b ? b->data() : nullptr, y.data(),
                                 state ? &state->saved : nullptr);
}

template <Scalar T>
void conv2d_backward(const cpu_kernels::Conv2dShape& s, const Conv2dState<T, cpu>& state, const Tensor<T, cpu>& w,
                     const Tensor<T, cpu>& dy, Tensor<T, cpu>& dx, Tensor<T, cpu>* dw, Tensor<T, cpu>* db) {
  cpu_kernels::conv2d_backward<T>(s, state.saved, w.data(), dy.data(), dx.data(), dw ? dw->data() : nullptr,
                                  db ? db->data() : nullptr);
}

}  // namespace spo::inline kernels

namespace spo::nn {

/// Kernel, stride and padding as (height, width) pairs. padding_end adds zero rows after the last row and zero
/// columns after the last column, on top of padding (torch: F.pad(x, (0, padding_end[1], 0, padding_end[0])) before
/// the convolution, as diffusers' Downsample2D with padding=0 pads (0, 1, 0, 1)).
struct Conv2dOptions {
  std::array<std::int64_t, 2> kernel{1, 1};
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> padding{0, 0};
  bool bias = true;
  std::array<std::int64_t, 2> padding_end{0, 0};
};

/*!
  WHAT THIS REPRESENTS
    torch.nn.Conv2d(in, out, kernel, stride, padding, bias) with groups = 1 and dilation = 1: y = conv(x, w) + b
    on NCHW tensors, keys `weight` [out, in, kh, kw] and `bias` [out]. With a non-zero padding_end the input is
    first extended by that many zero rows and columns at its end (a copy; backward drops their gradient), and the
    geometry is that of the extended input. forward keeps, in grad mode, the input
    shape and what the device's conv2d_backward needs (Conv2dState<T, D>); on spo::cuda a frozen weight keeps no
    copy of the input, and backward then forms dx alone. The arithmetic is the device's conv2d_* kernels.
!*/
template <StorageScalar T, Device D = cpu>
class Conv2d {
  static_assert(kernels_declared<D>,
                "spo::nn::Conv2d<T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::Conv2d<T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");

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
      : in_(in_channels), out_(out_channels), opt_(opt) {
    SPO_CHECK(in_channels >= 1 && out_channels >= 1 && opt.kernel[0] >= 1 && opt.kernel[1] >= 1 && opt.stride[0] >= 1 &&
                  opt.stride[1] >= 1 && opt.padding[0] >= 0 && opt.padding[1] >= 0 && opt.padding_end[0] >= 0 &&
                  opt.padding_end[1] >= 0,
              "Conv2d(" << in_channels << " -> " << out_channels << "): invalid kernel (" << opt.kernel[0] << ", "
                        << opt.kernel[1] << "), stride (" << opt.stride[0] << ", " << opt.stride[1] << ") or padding ("
                        << opt.padding[0] << ", " << opt.padding[1] << ") or end padding (" << opt.padding_end[0]
                        << ", " << opt.padding_end[1] << ")");
    weight_ = Parameter<T, D>(Shape{out_channels, in_channels, opt.kernel[0], opt.kernel[1]});  // [out, in, kh, kw]
    if (opt.bias) bias_ = Parameter<T, D>(Shape{out_channels});                                 // [out]
  }

  /// torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan_in = in kh kw (the same
  /// numbers on every device).
  void reset_parameters(Generator& gen) {
    using compute = compute_type_t<T>;
    const compute bound = compute(1) / std::sqrt(static_cast<compute>(in_ * opt_.kernel[0] * opt_.kernel[1]));
    fill_uniform(weight_.value.view(), gen, -bound, bound);
    if (opt_.bias) fill_uniform(bias_.value.view(), gen, -bound, bound);
  }

  /// The geometry of this layer applied to an input of `shape` (extended by padding_end); throws naming the shape
  /// when it does not fit.
  cpu_kernels::Conv2dShape geometry(const Shape& shape) const {
    SPO_CHECK(shape.rank() == 4 && shape[1] == in_ && shape[0] >= 1,
              "Conv2d(" << in_ << " -> " << out_ << "): input shape " << shape << " is not [B, " << in_ << ", H, W]");
    const std::int64_t height = shape[2] + opt_.padding_end[0], width = shape[3] + opt_.padding_end[1];
    cpu_kernels::Conv2dShape s{shape[0],       shape[1],        height,         width,
                               out_,           opt_.kernel[0],  opt_.kernel[1], opt_.stride[0],
                               opt_.stride[1], opt_.padding[0], opt_.padding[1]};
    SPO_CHECK(s.height + 2 * s.pad_h >= s.kernel_h && s.width + 2 * s.pad_w >= s.kernel_w,
              "Conv2d(" << in_ << " -> " << out_ << "): input shape " << shape << " with padding (" << s.pad_h << ", "
                        << s.pad_w << ") is smaller than the kernel (" << s.kernel_h << ", " << s.kernel_w << ")");
    return s;
  }

  tensor forward(const tensor& x) {
    const auto s = geometry(x.shape());
    auto y = tensor::uninitialized(Shape{s.batch, out_, s.out_h(), s.out_w()});  // [B, Cout, Ho, Wo]
    has_forward_ = grad_enabled();
    state_.clear();
    const tensor padded = has_padding_end() ? pad_end(x) : tensor();  // [B, Cin, H + pe_h, W + pe_w]
    conv2d_forward(s, has_padding_end() ? padded : x, weight_.value, opt_.bias ? &bias_.value : nullptr, y,
                   has_forward_ ? &state_ : nullptr, weight_.trainable);
    count_flops(Pass::forward, s.flops());
    if (has_forward_) input_shape_ = x.shape();
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(has_forward_, "Conv2d::backward without a forward in grad mode");
    const auto s = geometry(input_shape_);
    const Shape ys{s.batch, out_, s.out_h(), s.out_w()};
    SPO_CHECK(dy.shape() == ys, "Conv2d::backward: gradient shape " << dy.shape() << " does not match output shape "
                                                                    << ys << " of input " << input_shape_);
    SPO_CHECK(!weight_.trainable || weight_.grad.shape() == weight_.value.shape(),
              "Conv2d::backward: weight gradient of shape " << weight_.grad.shape() << " for a weight of shape "
                                                            << weight_.value.shape());
    SPO_CHECK(!(opt_.bias && bias_.trainable) || bias_.grad.shape() == bias_.value.shape(),
              "Conv2d::backward: bias gradient of shape " << bias_.grad.shape() << " for a bias of shape "
                                                          << bias_.value.shape());
    auto dx = tensor::uninitialized(Shape{s.batch, in_, s.height, s.width});  // [B, Cin, H + pe_h, W + pe_w]
    conv2d_backward(s, state_, weight_.value, dy, dx, weight_.trainable ? &weight_.grad : nullptr,
                    opt_.bias && bias_.trainable ? &bias_.grad : nullptr);
    count_flops(Pass::backward, s.flops() * (weight_.trainable ? 2 : 1));  // d input (+ d weight)
    state_.clear();
    has_forward_ = false;
    return has_padding_end() ? drop_end(std::move(dx)) : dx;  // [B, Cin, H, W]
  }

  /// Forgets what a grad-mode forward kept (a later backward is then an error).
  void drop_saved() {
    state_.clear();
    has_forward_ = false;
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
  bool has_padding_end() const { return opt_.padding_end[0] != 0 || opt_.padding_end[1] != 0; }

  /// x extended by padding_end zero rows and columns: [B, C, H, W] -> [B, C, H + pe_h, W + pe_w].
  tensor pad_end(const tensor& x) const {
    const std::int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
    const std::int64_t ph = opt_.padding_end[0], pw = opt_.padding_end[1];
    tensor rows = x;
    rows.reshape(Shape{planes * h, w, 1});                                  // [B C H, W, 1]
    tensor wide = concat_channels(rows, tensor(Shape{planes * h, pw, 1}));  // [B C H, W + pw, 1]
    rows = tensor();
    wide.reshape(Shape{planes, h, w + pw});                                      // [B C, H, W + pw]
    tensor out = concat_channels(wide, tensor(Shape{planes, ph, w + pw}));       // [B C, H + ph, W + pw]
    return std::move(out).reshape(Shape{x.size(0), x.size(1), h + ph, w + pw});  // [B, C, H + ph, W + pw]
  }

  /// The inverse of pad_end on a gradient: drops the padded rows and columns.
  tensor drop_end(tensor dx) const {
    const std::int64_t planes = input_shape_[0] * input_shape_[1], h = input_shape_[2], w = input_shape_[3];
    const std::int64_t ph = opt_.padding_end[0], pw = opt_.padding_end[1];
    dx.reshape(Shape{planes, h + ph, w + pw});
    tensor top = split_channels(dx, h).first;  // [B C, H, W + pw]
    dx = tensor();
    top.reshape(Shape{planes * h, w + pw, 1});
    tensor out = split_channels(top, w).first;    // [B C H, W, 1]
    return std::move(out).reshape(input_shape_);  // [B, C, H, W]
  }

  std::int64_t in_ = 0, out_ = 0;
  Conv2dOptions opt_;
  Parameter<T, D> weight_, bias_;
  Conv2dState<T, D> state_;  // what backward needs from forward, in the device's form
  Shape input_shape_;
  bool has_forward_ = false;
};

}  // namespace spo::nn
