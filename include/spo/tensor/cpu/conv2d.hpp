// SPDX-License-Identifier: MIT
/// @brief 2-D convolution kernels on NCHW host tensors: oneDNN (float) and im2col + GEMM (any scalar; the double path).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <unordered_map>
#include <utility>

#include <Eigen/Core>
#include <oneapi/dnnl/dnnl.hpp>

#include "spo/core/error.hpp"
#include "spo/core/parallel.hpp"
#include "spo/tensor/cpu/dnnl_context.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cpu_kernels {

/*!
  WHAT THIS REPRESENTS
    The geometry of a cross-correlation y = conv(x, w) + b as in torch.nn.functional.conv2d (groups = 1,
    dilation = 1): x [batch, in_channels, height, width], w [out_channels, in_channels, kernel_h, kernel_w],
    y [batch, out_channels, out_h, out_w] with out = (in + 2 pad - kernel) / stride + 1, and
    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x[n, c, i stride_h - pad_h + p, j stride_w - pad_w + q]
    (x is zero outside the image).
!*/
struct Conv2dShape {
  std::int64_t batch = 0, in_channels = 0, height = 0, width = 0, out_channels = 0;
  std::int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;

  std::int64_t out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  std::int64_t out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
  /// Multiply-adds x 2 of one pass (forward, backward-data and backward-weights each cost this much).
  double flops() const {
    return 2.0 * static_cast<double>(batch * out_channels * out_h() * out_w()) *
           static_cast<double>(in_channels * kernel_h * kernel_w);
  }
  void validate() const {
    SPO_CHECK(batch >= 1 && in_channels >= 1 && out_channels >= 1 && kernel_h >= 1 && kernel_w >= 1 && stride_h >= 1 &&
                  stride_w >= 1 && pad_h >= 0 && pad_w >= 0,
              "invalid convolution " << *this);
    SPO_CHECK(height + 2 * pad_h >= kernel_h && width + 2 * pad_w >= kernel_w,
              "convolution " << *this << ": kernel larger than the padded input");
  }
  friend std::ostream& operator<<(std::ostream& os, const Conv2dShape& s) {
    return os << "x [" << s.batch << ", " << s.in_channels << ", " << s.height << ", " << s.width << "] * w ["
              << s.out_channels << ", " << s.in_channels << ", " << s.kernel_h << ", " << s.kernel_w << "] stride ("
              << s.stride_h << ", " << s.stride_w << ") padding (" << s.pad_h << ", " << s.pad_w << ")";
  }
};

/// The algorithm of the float convolutions that keep nothing for backward (inference), chosen per thread by
/// inference_conv2d_algorithm_guard; convolutions that save their input for backward are always direct.
/// - direct (the default): oneDNN's direct kernels, as in training, and as PyTorch runs them.
/// - winograd: oneDNN's Winograd kernels (F(2x2, 3x3), F(4x4, 3x3) on AVX-512) for 3x3 stride-1 convolutions with at
///   least winograd_min_positions output positions and a scratchpad within winograd_max_scratchpad_bytes, the
///   direct ones elsewhere. Fewer multiplications and other rounding (a relative difference of order 1e-6). Each
///   call transforms the weights, which costs more than it saves below ~8k positions (bench/bench_conv2d.cpp,
///   BM_Conv2d_Inference).
enum class Conv2dAlgorithm { direct, winograd };

/// Output positions (batch x height x width) below which Conv2dAlgorithm::winograd runs the direct kernel.
inline constexpr std::int64_t winograd_min_positions = 8192;
/// The largest scratchpad (transformed tiles) a Winograd kernel may take; above it the direct kernel runs. oneDNN's
/// F(4x4, 3x3) kernel takes about 4.5x its input (1.2 GB at 256 channels on 512x512, 4.8 GB on 1024x1024).
inline constexpr std::size_t winograd_max_scratchpad_bytes = std::size_t{3} << 29;  // 1.5 GiB

namespace detail {
inline thread_local Conv2dAlgorithm inference_algorithm = Conv2dAlgorithm::direct;
}  // namespace detail

inline Conv2dAlgorithm inference_conv2d_algorithm() { return detail::inference_algorithm; }

/// Sets this thread's inference convolution algorithm for the guard's lifetime (then restores the previous one).
class inference_conv2d_algorithm_guard {
 public:
  explicit inference_conv2d_algorithm_guard(Conv2dAlgorithm a) : previous_(detail::inference_algorithm) {
    detail::inference_algorithm = a;
  }
  ~inference_conv2d_algorithm_guard() { detail::inference_algorithm = previous_; }
  inference_conv2d_algorithm_guard(const inference_conv2d_algorithm_guard&) = delete;
  inference_conv2d_algorithm_guard& operator=(const inference_conv2d_algorithm_guard&) = delete;

 private:
  Conv2dAlgorithm previous_;
};

/*!
  WHAT THIS REPRESENTS
    What a convolution backward needs from its forward: the input x, for float in the layout of the forward
    primitive's source (oneDNN's blocked nChw16c, described by `layout`), so that the reorder done for the forward
    is reused by the weight gradient instead of copying x; for double a plain NCHW copy (`layout` unused).
!*/
template <Scalar T>
struct Conv2dSaved {
  Tensor<T, cpu> x;
  dnnl::memory::desc layout;

  bool empty() const { return x.empty(); }
  void clear() { x = Tensor<T, cpu>(); }
};

// ---------------------------------------------------------------------------------------------------------------
// im2col + GEMM: any scalar. Per image, col[(c, p, q), (i, j)] = x[c, i s - pad + p, j s - pad + q].
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

/// col [C kh kw, Ho Wo] of one image x [C, H, W].
template <Scalar T>
void im2col(const Conv2dShape& s, const T* x, T* col) {
  const std::int64_t ho = s.out_h(), wo = s.out_w();
  for (std::int64_t c = 0; c < s.in_channels; ++c)
    for (std::int64_t p = 0; p < s.kernel_h; ++p)
      for (std::int64_t q = 0; q < s.kernel_w; ++q) {
        T* row = col + ((c * s.kernel_h + p) * s.kernel_w + q) * ho * wo;
        for (std::int64_t i = 0; i < ho; ++i) {
          const std::int64_t h = i * s.stride_h - s.pad_h + p;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t w = j * s.stride_w - s.pad_w + q;
            row[i * wo + j] =
                (h >= 0 && h < s.height && w >= 0 && w < s.width) ? x[(c * s.height + h) * s.width + w] : T(0);
          }
        }
      }
}

/// dx [C, H, W] += the scatter of col [C kh kw, Ho Wo] (the adjoint of im2col).
template <Scalar T>
void col2im_add(const Conv2dShape& s, const T* col, T* dx) {
  const std::int64_t ho = s.out_h(), wo = s.out_w();
  for (std::int64_t c = 0; c < s.in_channels; ++c)
    for (std::int64_t p = 0; p < s.kernel_h; ++p)
      for (std::int64_t q = 0; q < s.kernel_w; ++q) {
        const T* row = col + ((c * s.kernel_h + p) * s.kernel_w + q) * ho * wo;
        for (std::int64_t i = 0; i < ho; ++i) {
          const std::int64_t h = i * s.stride_h - s.pad_h + p;
          if (h < 0 || h >= s.height) continue;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t w = j * s.stride_w - s.pad_w + q;
            if (w >= 0 && w < s.width) dx[(c * s.height + h) * s.width + w] += row[i * wo + j];
          }
        }
      }
}

}  // namespace detail

/// y [N, O, Ho, Wo] = conv(x, w) + b; b may be null.
template <Scalar T>
void conv2d_forward_im2col(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const std::int64_t kdim = s.in_channels * s.kernel_h * s.kernel_w, hw = s.out_h() * s.out_w();
  parallel_for(0, s.batch, [&](std::int64_t n) {
    auto col = Tensor<T, cpu>::uninitialized(Shape{kdim, hw});  // [C kh kw, Ho Wo]
    detail::im2col(s, x + n * s.in_channels * s.height * s.width, col.data());
    T* yn = y + n * s.out_channels * hw;  // [O, Ho Wo]
    for (std::int64_t o = 0; o < s.out_channels; ++o) std::fill_n(yn + o * hw, hw, b ? b[o] : T(0));
    gemm_eigen<T>(false, false, s.out_channels, hw, kdim, T(1), w, kdim, col.data(), hw, T(1), yn, hw);
  });
}

/// dx [N, C, H, W] = conv_transpose(dy, w) (overwritten).
template <Scalar T>
void conv2d_backward_data_im2col(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  const std::int64_t kdim = s.in_channels * s.kernel_h * s.kernel_w, hw = s.out_h() * s.out_w();
  const std::int64_t image = s.in_channels * s.height * s.width;
  parallel_for(0, s.batch, [&](std::int64_t n) {
    auto col = Tensor<T, cpu>::uninitialized(Shape{kdim, hw});  // dcol = w^T dy_n  [C kh kw, Ho Wo]
    gemm_eigen<T>(true, false, kdim, hw, s.out_channels, T(1), w, kdim, dy + n * s.out_channels * hw, hw, T(0),
                  col.data(), hw);
    std::fill_n(dx + n * image, image, T(0));
    detail::col2im_add(s, col.data(), dx + n * image);
  });
}

/// dw [O, C, kh, kw] += sum_n dy_n col_n^T; db [O] += sum_{n, i, j} dy (either may be null).
template <Scalar T>
void conv2d_backward_weights_im2col(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* db) {
  const std::int64_t kdim = s.in_channels * s.kernel_h * s.kernel_w, hw = s.out_h() * s.out_w();
  auto col = Tensor<T, cpu>::uninitialized(Shape{kdim, hw});  // [C kh kw, Ho Wo]
  for (std::int64_t n = 0; n < s.batch; ++n) {
    const T* dyn = dy + n * s.out_channels * hw;  // [O, Ho Wo]
    if (dw) {
      detail::im2col(s, x + n * s.in_channels * s.height * s.width, col.data());
      gemm_eigen<T>(false, true, s.out_channels, kdim, hw, T(1), dyn, hw, col.data(), hw, T(1), dw, kdim);
    }
    if (db)
      for (std::int64_t o = 0; o < s.out_channels; ++o) {
        T acc = 0;
        for (std::int64_t i = 0; i < hw; ++i) acc += dyn[o * hw + i];
        db[o] += acc;
      }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// oneDNN (float). Primitives are created with format_tag::any so that oneDNN picks its blocked layouts (nChw16c,
// OIhw16i16o, ...) and its direct AVX-512 kernels; NCHW tensors are reordered in and out around each call. Creating
// the primitives directly on NCHW selects gemm-based kernels whose weight gradient is ~8x slower (measured).
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

using dnnl_tag = dnnl::memory::format_tag;
using dnnl_dt = dnnl::memory::data_type;

struct Conv2dDnnlPlain {
  dnnl::memory::desc x, w, b, y;  // NCHW, OIHW, x, NCHW
};

inline Conv2dDnnlPlain conv2d_plain_descs(const Conv2dShape& s) {
  return {dnnl::memory::desc({s.batch, s.in_channels, s.height, s.width}, dnnl_dt::f32, dnnl_tag::nchw),
          dnnl::memory::desc({s.out_channels, s.in_channels, s.kernel_h, s.kernel_w}, dnnl_dt::f32, dnnl_tag::oihw),
          dnnl::memory::desc({s.out_channels}, dnnl_dt::f32, dnnl_tag::x),
          dnnl::memory::desc({s.batch, s.out_channels, s.out_h(), s.out_w()}, dnnl_dt::f32, dnnl_tag::nchw)};
}

inline DnnlKey conv2d_key(int kind, const Conv2dShape& s, bool bias) {
  return DnnlKey{kind,
                 {s.batch, s.in_channels, s.height, s.width, s.out_channels, s.kernel_h, s.kernel_w, s.stride_h,
                  s.stride_w, s.pad_h, s.pad_w, bias}};
}

/// The forward primitive: direct for training (its source layout is what backward reuses), or `alg` for inference.
/// Its scratchpad is the caller's (scratchpad_mode::user, see conv2d_forward_execute): oneDNN's own would stay
/// allocated with each cached primitive, and a Winograd primitive's holds the transformed tiles (several times the
/// input at 1024x1024).
inline dnnl::convolution_forward::primitive_desc conv2d_forward_pd(
    const Conv2dShape& s, bool bias, dnnl::algorithm alg = dnnl::algorithm::convolution_direct,
    dnnl::prop_kind prop = dnnl::prop_kind::forward_training) {
  const auto any = [](dnnl::memory::dims d) { return dnnl::memory::desc(d, dnnl_dt::f32, dnnl_tag::any); };
  const auto plain = conv2d_plain_descs(s);
  dnnl::convolution_forward::desc d =
      bias ? dnnl::convolution_forward::desc(prop, alg, any(plain.x.dims()), any(plain.w.dims()), plain.b,
                                             any(plain.y.dims()), {s.stride_h, s.stride_w}, {s.pad_h, s.pad_w},
                                             {s.pad_h, s.pad_w})
           : dnnl::convolution_forward::desc(prop, alg, any(plain.x.dims()), any(plain.w.dims()), any(plain.y.dims()),
                                             {s.stride_h, s.stride_w}, {s.pad_h, s.pad_w}, {s.pad_h, s.pad_w});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return dnnl::convolution_forward::primitive_desc(d, attr, DnnlContext::instance().engine());
}

/// A reorder from `from` to `to`, or none when the layouts agree (then the source memory is used as is).
struct DnnlReorder {
  dnnl::reorder prim;
  dnnl::memory::desc to;
  bool needed = false;

  DnnlReorder() = default;
  DnnlReorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to_desc, bool accumulate = false)
      : to(to_desc), needed(accumulate || !(from == to_desc)) {
    if (!needed) return;
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.f);
      attr.set_post_ops(po);
    }
    const auto& eng = DnnlContext::instance().engine();
    prim = dnnl::reorder(dnnl::reorder::primitive_desc(eng, from, eng, to_desc, attr));
  }
  /// The source in layout `to`: `src` itself, or its reorder into `buf`.
  dnnl::memory apply(const dnnl::memory& src, DnnlBuffer& buf) const {
    if (!needed) return src;
    buf = DnnlBuffer(to);
    run(src, buf.mem);
    return buf.mem;
  }
  void run(const dnnl::memory& src, const dnnl::memory& dst) const {
    prim.execute(DnnlContext::instance().stream(), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
  }
};

struct Conv2dForwardEntry {
  Conv2dDnnlPlain plain;
  dnnl::convolution_forward prim;
  DnnlReorder x_in, w_in, y_out;
  dnnl::memory::desc y_md;
  std::int64_t x_block = 0;  // the source layout is nChw16c (16) or nChw8c (8); 0 for any other layout
  Conv2dAlgorithm algorithm = Conv2dAlgorithm::direct;  // what the primitive runs
  dnnl::memory::desc scratchpad_md;                     // its scratchpad, allocated per call
};

/// 16 or 8 when `md` is x [N, C, H, W] blocked by that many channels (nChw16c, nChw8c), else 0.
inline std::int64_t channel_block(const dnnl::memory::desc& md, const Conv2dShape& s) {
  const dnnl::memory::dims dims{s.batch, s.in_channels, s.height, s.width};
  for (const auto& [tag, block] : {std::pair{dnnl_tag::nChw16c, 16}, std::pair{dnnl_tag::nChw8c, 8}})
    if (md == dnnl::memory::desc(dims, dnnl_dt::f32, tag)) return block;
  return 0;
}

struct Conv2dBackwardEntry {
  Conv2dDnnlPlain plain;
  dnnl::convolution_backward_data data_prim;
  dnnl::convolution_backward_weights weights_prim;
  DnnlReorder dy_data, w_data, dx_out;  // backward-data operands
  DnnlReorder dy_weights, x_weights;    // backward-weights operands (x from NCHW)
  DnnlReorder saved_x_weights;          // x from the forward primitive's source layout
  dnnl::memory::desc saved_x_layout;
  DnnlReorder dw_out_add;  // diff weights into OIHW, accumulating
  dnnl::memory::desc dx_md, dw_md;
  bool dy_shared = false;  // both passes want dy in the same layout
};

/// The forward entry of `s`: with Conv2dAlgorithm::winograd an inference primitive running oneDNN's Winograd
/// kernels where it has them for s (3x3, stride 1, winograd_min_positions, CPU and channel conditions of its own),
/// the direct one otherwise.
inline const Conv2dForwardEntry& conv2d_forward_entry(const Conv2dShape& s, bool bias,
                                                      Conv2dAlgorithm alg = Conv2dAlgorithm::direct) {
  const bool winograd = alg == Conv2dAlgorithm::winograd;
  return DnnlCache<Conv2dForwardEntry>::instance().get(conv2d_key(winograd ? 12 : 10, s, bias), [&] {
    Conv2dForwardEntry e;
    e.plain = conv2d_plain_descs(s);
    std::optional<dnnl::convolution_forward::primitive_desc> wino;
    if (winograd && s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 && s.stride_w == 1 &&
        s.batch * s.out_h() * s.out_w() >= winograd_min_positions) {
      try {
        wino = conv2d_forward_pd(s, bias, dnnl::algorithm::convolution_winograd, dnnl::prop_kind::forward_inference);
        if (wino->scratchpad_desc().get_size() > winograd_max_scratchpad_bytes) wino.reset();
      } catch (const dnnl::error&) {  // no Winograd kernel for this shape or CPU
      }
    }
    const auto pd = wino ? *wino : conv2d_forward_pd(s, bias);
    e.algorithm = wino ? Conv2dAlgorithm::winograd : Conv2dAlgorithm::direct;
    e.prim = dnnl::convolution_forward(pd);
    e.scratchpad_md = pd.scratchpad_desc();
    e.x_in = DnnlReorder(e.plain.x, pd.src_desc());
    e.x_block = channel_block(pd.src_desc(), s);
    e.w_in = DnnlReorder(e.plain.w, pd.weights_desc());
    e.y_md = pd.dst_desc();
    e.y_out = DnnlReorder(e.y_md, e.plain.y);
    return e;
  });
}

inline const Conv2dBackwardEntry& conv2d_backward_entry(const Conv2dShape& s, bool bias) {
  return DnnlCache<Conv2dBackwardEntry>::instance().get(conv2d_key(11, s, bias), [&] {
    const auto& eng = DnnlContext::instance().engine();
    const auto any = [](const dnnl::memory::desc& md) {
      return dnnl::memory::desc(md.dims(), dnnl_dt::f32, dnnl_tag::any);
    };
    Conv2dBackwardEntry e;
    e.plain = conv2d_plain_descs(s);
    const auto hint = conv2d_forward_pd(s, bias);
    const dnnl::memory::dims strides{s.stride_h, s.stride_w}, pad{s.pad_h, s.pad_w};
    dnnl::convolution_backward_data::primitive_desc dpd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, any(e.plain.x), any(e.plain.w),
                                              any(e.plain.y), strides, pad, pad),
        eng, hint);
    dnnl::convolution_backward_weights::primitive_desc wpd(
        bias ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, any(e.plain.x),
                                                        any(e.plain.w), e.plain.b, any(e.plain.y), strides, pad, pad)
             : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, any(e.plain.x),
                                                        any(e.plain.w), any(e.plain.y), strides, pad, pad),
        eng, hint);
    e.data_prim = dnnl::convolution_backward_data(dpd);
    e.weights_prim = dnnl::convolution_backward_weights(wpd);
    e.dy_data = DnnlReorder(e.plain.y, dpd.diff_dst_desc());
    e.w_data = DnnlReorder(e.plain.w, dpd.weights_desc());
    e.dx_md = dpd.diff_src_desc();
    e.dx_out = DnnlReorder(e.dx_md, e.plain.x);
    e.dy_weights = DnnlReorder(e.plain.y, wpd.diff_dst_desc());
    e.x_weights = DnnlReorder(e.plain.x, wpd.src_desc());
    e.saved_x_layout = hint.src_desc();
    e.saved_x_weights = DnnlReorder(e.saved_x_layout, wpd.src_desc());
    e.dw_md = wpd.diff_weights_desc();
    e.dw_out_add = DnnlReorder(e.dw_md, e.plain.w, /*accumulate=*/true);
    e.dy_shared = dpd.diff_dst_desc() == wpd.diff_dst_desc();
    return e;
  });
}

/// Where a primitive writes an output whose plain (NCHW / OIHW) memory is `plain`: `plain` itself, or a buffer in
/// layout `md` when `out` reorders md into plain afterwards.
inline dnnl::memory output_memory(const DnnlReorder& out, const dnnl::memory::desc& md, const dnnl::memory& plain,
                                  DnnlBuffer& buf) {
  if (!out.needed) return plain;
  buf = DnnlBuffer(md);
  return buf.mem;
}

/// Runs the forward primitive of `e` on the source `xm` (already in the primitive's layout) into NCHW y.
inline void conv2d_forward_execute(const Conv2dForwardEntry& e, const dnnl::memory& xm, const float* w, const float* b,
                                   float* y) {
  DnnlBuffer wb, yb;
  const auto wm = e.w_in.apply(dnnl_wrap(e.plain.w, w), wb);
  const auto ym_plain = dnnl_wrap(e.plain.y, y);
  const auto ym = output_memory(e.y_out, e.y_md, ym_plain, yb);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
  if (b) args.emplace(DNNL_ARG_BIAS, dnnl_wrap(e.plain.b, b));
  DnnlBuffer scratchpad;  // from the caching allocator, back to its pool after the call
  if (e.scratchpad_md.get_size() > 0) {
    scratchpad = DnnlBuffer(e.scratchpad_md);
    args.emplace(DNNL_ARG_SCRATCHPAD, scratchpad.mem);
  }
  e.prim.execute(DnnlContext::instance().stream(), args);
  if (e.y_out.needed) e.y_out.run(ym, ym_plain);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------------
// Pointwise (1x1, stride 1, no padding) convolutions are products on NCHW as is: y_n [O, HW] = w [O, C] x_n [C, HW].
// Run as GEMMs they need no layout reorders, which cost ~40% of a blocked 1x1 convolution.
// ---------------------------------------------------------------------------------------------------------------

inline bool conv2d_is_pointwise(const Conv2dShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
}

/// Pointwise y [N, O, H, W] = w [O, C] x [N, C, H, W] + b: one single-threaded sgemm per image, images spread over
/// the pool (oneDNN 2.6's batched matmul falls back to its reference kernel when w is broadcast); with fewer images
/// than threads, the images run one after another on a threaded sgemm.
inline void conv2d_forward_pointwise(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y) {
  const std::int64_t hw = s.height * s.width, oc = s.out_channels, ic = s.in_channels;
  const int threads = num_threads();
#pragma omp parallel for num_threads(threads) schedule(static) if (s.batch >= threads)
  for (std::int64_t n = 0; n < s.batch; ++n) {
    float* yn = y + n * oc * hw;  // [O, HW]
    if (b)
      for (std::int64_t o = 0; o < oc; ++o) std::fill_n(yn + o * hw, hw, b[o]);
    gemm_dnnl(false, false, oc, hw, ic, 1.f, w, ic, x + n * ic * hw, hw, b ? 1.f : 0.f, yn, hw);
  }
}

/// Pointwise dx [N, C, H, W] = w^T [C, O] dy [N, O, H, W] (overwritten), one sgemm per image.
inline void conv2d_backward_data_pointwise(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  const std::int64_t hw = s.height * s.width, oc = s.out_channels, ic = s.in_channels;
  const int threads = num_threads();
#pragma omp parallel for num_threads(threads) schedule(static) if (s.batch >= threads)
  for (std::int64_t n = 0; n < s.batch; ++n)
    gemm_dnnl(true, false, ic, hw, oc, 1.f, w, ic, dy + n * oc * hw, hw, 0.f, dx + n * ic * hw, hw);
}

/// Pointwise dw [O, C] += sum_n dy_n [O, HW] x_n^T [HW, C]; db [O] += sum_{n, p} dy. Each thread reduces a slice of
/// the batch into its own accumulator with single-threaded sgemm; the slices are summed at the end.
inline void conv2d_backward_weights_pointwise(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                                              float* db) {
  const std::int64_t hw = s.height * s.width, oc = s.out_channels, ic = s.in_channels;
  const int threads = static_cast<int>(std::min<std::int64_t>(num_threads(), s.batch));
  auto partial = Tensor<float, cpu>(Shape{threads, oc * ic + oc});  // [T, O C + O]
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    float* acc = partial.data() + t * (oc * ic + oc);
    for (std::int64_t n = s.batch * t / threads; n < s.batch * (t + 1) / threads; ++n) {
      const float* dyn = dy + n * oc * hw;  // [O, HW]
      if (dw) gemm_dnnl(false, true, oc, ic, hw, 1.f, dyn, hw, x + n * ic * hw, hw, 1.f, acc, ic);
      if (db)
        for (std::int64_t o = 0; o < oc; ++o)
          acc[oc * ic + o] += Eigen::Map<const Eigen::ArrayXf>(dyn + o * hw, hw).sum();
    }
  }
  for (int t = 0; t < threads; ++t) {
    const float* acc = partial.data() + t * (oc * ic + oc);
    if (dw)
      for (std::int64_t i = 0; i < oc * ic; ++i) dw[i] += acc[i];
    if (db)
      for (std::int64_t o = 0; o < oc; ++o) db[o] += acc[oc * ic + o];
  }
}

/// y [N, O, Ho, Wo] = conv(x, w) + b with oneDNN; b may be null. When `save` is given it receives x for backward.
inline void conv2d_forward_dnnl(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                                Conv2dSaved<float>* save = nullptr) {
  if (conv2d_is_pointwise(s)) {
    conv2d_forward_pointwise(s, x, w, b, y);
    if (save) {
      save->layout = detail::conv2d_plain_descs(s).x;
      save->x = Tensor<float, cpu>::uninitialized(Shape{s.batch, s.in_channels, s.height, s.width});
      memory_ops<cpu>::copy(save->x.data(), x, save->x.bytes());
    }
    return;
  }
  const auto& e =
      detail::conv2d_forward_entry(s, b != nullptr, save ? Conv2dAlgorithm::direct : inference_conv2d_algorithm());
  DnnlBuffer xb;
  const auto xm = e.x_in.apply(dnnl_wrap(e.plain.x, x), xb);
  detail::conv2d_forward_execute(e, xm, w, b, y);
  if (save) {
    save->layout = xm.get_desc();
    if (e.x_in.needed) {
      save->x = std::move(xb.storage);
    } else {
      save->x = Tensor<float, cpu>::uninitialized(Shape{s.batch, s.in_channels, s.height, s.width});
      memory_ops<cpu>::copy(save->x.data(), x, save->x.bytes());
    }
  }
}

/*!
  The convolution of a transformed input, y [N, O, Ho, Wo] = conv(t(x), w) + b (float; b may be null), for
  inference: nothing is kept for a backward pass. t is given per channel plane, in chunks of the flattened spatial
  positions:
  REQUIRES
    - transform(n, c, p0, len, out) writes t(x)[n, c, p0 .. p0 + len) (H W flattened) to out, for p0 a multiple of
      conv2d_transform_chunk and len = min(conv2d_transform_chunk, H W - p0); it is called concurrently
  ENSURES
    - when oneDNN's primitive reads its source blocked by channels (nChw16c, nChw8c), t(x) is written straight into
      that layout: no NCHW copy of t(x) and no reorder pass over it. Otherwise (pointwise convolutions, other
      layouts) t(x) is formed in NCHW and convolved by conv2d_forward_dnnl. Either way y is bitwise the y of
      conv2d_forward_dnnl on t(x).
!*/
inline constexpr std::int64_t conv2d_transform_chunk = 256;

template <class Transform>
void conv2d_forward_transformed(const Conv2dShape& s, Transform&& transform, const float* w, const float* b, float* y) {
  s.validate();
  constexpr std::int64_t chunk = conv2d_transform_chunk;
  const std::int64_t hw = s.height * s.width, chunks = (hw + chunk - 1) / chunk, channels = s.in_channels;
  const detail::Conv2dForwardEntry* e =
      conv2d_is_pointwise(s) ? nullptr : &detail::conv2d_forward_entry(s, b != nullptr, inference_conv2d_algorithm());
  if (e == nullptr || e->x_block == 0) {
    auto t = Tensor<float, cpu>::uninitialized(Shape{s.batch, channels, s.height, s.width});  // t(x) [N, C, H, W]
    parallel_for(0, s.batch * channels * chunks, [&](std::int64_t task) {
      const std::int64_t plane = task / chunks, p0 = task % chunks * chunk;
      transform(plane / channels, plane % channels, p0, std::min(chunk, hw - p0), t.data() + plane * hw + p0);
    });
    conv2d_forward_dnnl(s, t.data(), w, b, y);
    return;
  }
  DnnlBuffer xb(e->x_in.to);  // t(x) [N, C / block, H, W, block] (channels past C are zero)
  float* packed = static_cast<float*>(xb.mem.get_data_handle());
  const auto pack = [&]<std::int64_t Block>() {
    const std::int64_t blocks = (channels + Block - 1) / Block;
    parallel_for(0, s.batch * blocks * chunks, [&](std::int64_t task) {
      const std::int64_t n = task / (blocks * chunks), cb = task / chunks % blocks, p0 = task % chunks * chunk;
      const std::int64_t len = std::min(chunk, hw - p0);
      alignas(64) float rows[Block][chunk];  // t(x) of the block's channels: [Block, len]
      for (std::int64_t i = 0; i < Block; ++i) {
        const std::int64_t c = cb * Block + i;
        if (c < channels)
          transform(n, c, p0, len, rows[i]);
        else
          std::fill_n(rows[i], len, 0.f);
      }
      float* out = packed + ((n * blocks + cb) * hw + p0) * Block;  // [len, Block]
      for (std::int64_t p = 0; p < len; ++p)
        for (std::int64_t i = 0; i < Block; ++i) out[p * Block + i] = rows[i][p];
    });
  };
  if (e->x_block == 16)
    pack.template operator()<16>();
  else
    pack.template operator()<8>();
  detail::conv2d_forward_execute(*e, xb.mem, w, b, y);
}

/// dx = conv_transpose(dy, w) (overwritten; skipped when null); dw += dconv/dw, db += sum dy (each skipped when null).
/// x is either `x` (NCHW) or, when x is null, `saved` from conv2d_forward_dnnl.
inline void conv2d_backward_dnnl(const Conv2dShape& s, const float* x, const float* w, const float* dy, float* dx,
                                 float* dw, float* db, const Conv2dSaved<float>* saved = nullptr) {
  if (conv2d_is_pointwise(s)) {
    SPO_CHECK(x || (saved && !saved->empty()), "conv2d_backward: no input for the weight gradient of " << s);
    if (!x) {
      SPO_CHECK(saved->layout == detail::conv2d_plain_descs(s).x, "conv2d_backward: saved input is not NCHW");
      x = saved->x.data();
    }
    if (dx) conv2d_backward_data_pointwise(s, dy, w, dx);
    if (dw || db) conv2d_backward_weights_pointwise(s, x, dy, dw, db);
    return;
  }
  const auto& e = detail::conv2d_backward_entry(s, db != nullptr);
  auto& stream = DnnlContext::instance().stream();
  const auto dy_plain = dnnl_wrap(e.plain.y, dy);
  DnnlBuffer dyb_data, dyb_weights;
  dnnl::memory dy_data;
  if (dx) {
    DnnlBuffer wb, dxb;
    dy_data = e.dy_data.apply(dy_plain, dyb_data);
    const auto wm = e.w_data.apply(dnnl_wrap(e.plain.w, w), wb);
    const auto dx_plain = dnnl_wrap(e.plain.x, dx);
    const auto dxm = detail::output_memory(e.dx_out, e.dx_md, dx_plain, dxb);
    e.data_prim.execute(stream, {{DNNL_ARG_DIFF_DST, dy_data}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm}});
    if (e.dx_out.needed) e.dx_out.run(dxm, dx_plain);
  }
  if (dw || db) {
    DnnlBuffer xb, dwb;
    const auto dy_w = (dx && e.dy_shared) ? dy_data : e.dy_weights.apply(dy_plain, dyb_weights);
    SPO_CHECK(x || (saved && !saved->empty()), "conv2d_backward: no input for the weight gradient of " << s);
    dnnl::memory xm;
    if (x) {
      xm = e.x_weights.apply(dnnl_wrap(e.plain.x, x), xb);
    } else if (saved->layout == e.plain.x) {
      xm = e.x_weights.apply(dnnl_wrap(e.plain.x, saved->x.data()), xb);
    } else {
      SPO_CHECK(saved->layout == e.saved_x_layout, "conv2d_backward: saved input layout differs from the forward's");
      xm = e.saved_x_weights.apply(dnnl_wrap(saved->layout, saved->x.data()), xb);
    }
    dwb = DnnlBuffer(e.dw_md);
    auto db_tmp = Tensor<float, cpu>::uninitialized(Shape{s.out_channels});  // [O]
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dy_w}, {DNNL_ARG_DIFF_WEIGHTS, dwb.mem}};
    if (db) args.emplace(DNNL_ARG_DIFF_BIAS, dnnl_wrap(e.plain.b, db_tmp.data()));
    e.weights_prim.execute(stream, args);
    if (dw) e.dw_out_add.run(dwb.mem, dnnl_wrap(e.plain.w, dw));
    if (db)
      for (std::int64_t o = 0; o < s.out_channels; ++o) db[o] += db_tmp[o];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Dispatch: float -> oneDNN, double -> im2col.
// ---------------------------------------------------------------------------------------------------------------

/// y [N, O, Ho, Wo] = conv(x [N, C, H, W], w [O, C, kh, kw]) + b [O]; b may be null. When `save` is given it
/// receives what conv2d_backward needs (see Conv2dSaved).
template <Scalar T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, Conv2dSaved<T>* save = nullptr) {
  s.validate();
  if constexpr (std::same_as<T, float>) {
    conv2d_forward_dnnl(s, x, w, b, y, save);
  } else {
    conv2d_forward_im2col(s, x, w, b, y);
    if (save) {
      save->x = Tensor<T, cpu>::uninitialized(Shape{s.batch, s.in_channels, s.height, s.width});
      memory_ops<cpu>::copy(save->x.data(), x, save->x.bytes());
    }
  }
}

/// dx [N, C, H, W] = d(sum y dy)/dx (overwritten); dw [O, C, kh, kw] += d/dw; db [O] += d/db. Null outputs are
/// skipped. x comes from `saved` (filled by conv2d_forward).
template <Scalar T>
void conv2d_backward(const Conv2dShape& s, const Conv2dSaved<T>& saved, const T* w, const T* dy, T* dx, T* dw, T* db) {
  s.validate();
  SPO_CHECK(!saved.empty(), "conv2d_backward: nothing saved by a forward for " << s);
  if constexpr (std::same_as<T, float>) {
    conv2d_backward_dnnl(s, nullptr, w, dy, dx, dw, db, &saved);
  } else {
    if (dx) conv2d_backward_data_im2col(s, dy, w, dx);
    if (dw || db) conv2d_backward_weights_im2col(s, saved.x.data(), dy, dw, db);
  }
}

/// The same with an NCHW input x instead of saved state.
template <Scalar T>
void conv2d_backward(const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db) {
  s.validate();
  if constexpr (std::same_as<T, float>) {
    conv2d_backward_dnnl(s, x, w, dy, dx, dw, db);
  } else {
    if (dx) conv2d_backward_data_im2col(s, dy, w, dx);
    if (dw || db) conv2d_backward_weights_im2col(s, x, dy, dw, db);
  }
}

}  // namespace spo::cpu_kernels
