// SPDX-License-Identifier: MIT
/// @brief cuDNN support for spo::cuda: the per-device handle, RAII descriptors, workspaces, and 2-D convolution
/// (forward, backward-data, backward-filter, backward-bias) through the cuDNN 9 legacy API with cached algorithms.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/tensor/cuda/bias.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// The calling thread's cuDNN handle for the current device, created on first use and kept for the process
/// (like cublas_handle(): destroying it at exit races the runtime's own teardown). It runs on the legacy default
/// stream, the stream of every spo::cuda tensor operation.
inline cudnnHandle_t cudnn_handle() {
  thread_local std::unordered_map<int, cudnnHandle_t> handles;
  int device = 0;
  SPO_CUDA_CHECK(cudaGetDevice(&device));
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cudnnHandle_t h = nullptr;
  SPO_CUDNN_CHECK(cudnnCreate(&h));
  SPO_CUDNN_CHECK(cudnnSetStream(h, nullptr));
  handles.emplace(device, h);
  return h;
}

/// cuDNN's data type of a storage scalar.
template <StorageScalar T>
inline constexpr cudnnDataType_t cudnn_data_type = std::is_same_v<T, float>    ? CUDNN_DATA_FLOAT
                                                   : std::is_same_v<T, double> ? CUDNN_DATA_DOUBLE
                                                   : std::is_same_v<T, half>   ? CUDNN_DATA_HALF
                                                                               : CUDNN_DATA_BFLOAT16;

/// The compute type of spo's convolutions: the data type for float and double, FP32 for half and bfloat16 (cuDNN's
/// PSEUDO_HALF and PSEUDO_BFLOAT16 configurations: 16-bit tensors, FP32 arithmetic and accumulation).
template <StorageScalar T>
inline constexpr cudnnDataType_t cudnn_compute_type = cudnn_data_type<compute_type_t<T>>;

/// The convolution math type spo asks for: FP32 stays FP32 (CUDNN_FMA_MATH) unless
/// cuda_runtime::allow_tf32(); then CUDNN_DEFAULT_MATH, which permits TF32 tensor cores for FP32 on sm_80+ without
/// the FP16 down-conversion of CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION (torch's choice for allow_tf32, Conv_v7.cpp).
/// Double: CUDNN_DEFAULT_MATH (FP64 tensor cores, when used, are full FP64). Half and bfloat16: CUDNN_TENSOR_OP_MATH
/// (tensor cores on 16-bit operands, whose products are exact in the FP32 accumulator).
template <StorageScalar T>
cudnnMathType_t conv_math_type() {
  if constexpr (std::is_same_v<T, float>)
    return cuda_runtime::allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  else if constexpr (HalfScalar<T>)
    return CUDNN_TENSOR_OP_MATH;
  else
    return CUDNN_DEFAULT_MATH;
}

/// A cuDNN scratch buffer of `bytes` from caching_allocator<cuda> (null data when bytes == 0). Freeing it right
/// after enqueuing the call that uses it is safe: the pool hands the block out again only to later work of the
/// same stream order.
inline Tensor<std::byte, cuda> cudnn_workspace(std::size_t bytes) {
  return Tensor<std::byte, cuda>::uninitialized(Shape{static_cast<std::int64_t>(bytes)});  // [bytes]
}

/// Largest workspace a cached convolution algorithm may ask for.
inline constexpr std::size_t cudnn_workspace_cap = std::size_t{1} << 30;

namespace detail {

/// Move-only owner of one cuDNN descriptor: Create and Destroy are the library's pair for Handle.
template <class Handle, cudnnStatus_t (*Create)(Handle*), cudnnStatus_t (*Destroy)(Handle)>
class CudnnDescriptor {
 public:
  CudnnDescriptor() { SPO_CUDNN_CHECK(Create(&handle_)); }
  CudnnDescriptor(const CudnnDescriptor&) = delete;
  CudnnDescriptor& operator=(const CudnnDescriptor&) = delete;
  CudnnDescriptor(CudnnDescriptor&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  CudnnDescriptor& operator=(CudnnDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~CudnnDescriptor() { reset(); }

  Handle get() const { return handle_; }
  operator Handle() const { return handle_; }

 private:
  void reset() noexcept {
    if (handle_) (void)Destroy(handle_);  // a destructor cannot throw
    handle_ = nullptr;
  }
  Handle handle_ = nullptr;
};

/// The value as a cuDNN int argument; throws naming `what` when it does not fit.
inline int cudnn_int(std::int64_t v, const char* what) {
  SPO_CHECK(v >= 0 && v <= INT_MAX, "cuDNN: " << what << " = " << v << " does not fit in int");
  return static_cast<int>(v);
}

}  // namespace detail

/// A packed NCHW tensor descriptor.
class TensorDescriptor : public detail::CudnnDescriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor,
                                                        cudnnDestroyTensorDescriptor> {
 public:
  TensorDescriptor() = default;
  TensorDescriptor(cudnnDataType_t type, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    set_nchw(type, n, c, h, w);
  }
  void set_nchw(cudnnDataType_t type, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    detail::cudnn_int(c * h * w, "elements per image (c h w)");
    SPO_CUDNN_CHECK(cudnnSetTensor4dDescriptor(get(), CUDNN_TENSOR_NCHW, type, detail::cudnn_int(n, "n"),
                                               detail::cudnn_int(c, "c"), detail::cudnn_int(h, "h"),
                                               detail::cudnn_int(w, "w")));
  }
};

/// A KCRS (out, in, kh, kw) filter descriptor, torch's weight layout.
class FilterDescriptor : public detail::CudnnDescriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor,
                                                        cudnnDestroyFilterDescriptor> {
 public:
  FilterDescriptor() = default;
  FilterDescriptor(cudnnDataType_t type, std::int64_t k, std::int64_t c, std::int64_t h, std::int64_t w) {
    set_kcrs(type, k, c, h, w);
  }
  void set_kcrs(cudnnDataType_t type, std::int64_t k, std::int64_t c, std::int64_t h, std::int64_t w) {
    detail::cudnn_int(k * c * h * w, "filter elements");
    SPO_CUDNN_CHECK(cudnnSetFilter4dDescriptor(get(), type, CUDNN_TENSOR_NCHW, detail::cudnn_int(k, "k"),
                                               detail::cudnn_int(c, "c"), detail::cudnn_int(h, "kh"),
                                               detail::cudnn_int(w, "kw")));
  }
};

/// A 2-D cross-correlation (torch.nn.functional.conv2d semantics: CUDNN_CROSS_CORRELATION), dilation 1, groups 1.
class ConvolutionDescriptor
    : public detail::CudnnDescriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                                     cudnnDestroyConvolutionDescriptor> {
 public:
  ConvolutionDescriptor() = default;
  void set_2d(std::int64_t pad_h, std::int64_t pad_w, std::int64_t stride_h, std::int64_t stride_w,
              cudnnDataType_t compute_type, cudnnMathType_t math) {
    SPO_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        get(), detail::cudnn_int(pad_h, "pad_h"), detail::cudnn_int(pad_w, "pad_w"),
        detail::cudnn_int(stride_h, "stride_h"), detail::cudnn_int(stride_w, "stride_w"), 1, 1, CUDNN_CROSS_CORRELATION,
        compute_type));
    set_math_type(math);
  }
  void set_math_type(cudnnMathType_t math) { SPO_CUDNN_CHECK(cudnnSetConvolutionMathType(get(), math)); }
};

/*!
  WHAT THIS REPRESENTS
    The geometry of y = conv(x, w) + b on NCHW tensors, the same fields and output size as cpu_kernels::Conv2dShape
    (tensor/cpu/conv2d.hpp, which this header cannot include: it reaches oneDNN): x [batch, in_channels, height,
    width], w [out_channels, in_channels, kernel_h, kernel_w], y [batch, out_channels, out_h, out_w] with
    out = (in + 2 pad - kernel) / stride + 1.
!*/
struct Conv2dGeometry {
  std::int64_t batch = 0, in_channels = 0, height = 0, width = 0, out_channels = 0;
  std::int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;

  std::int64_t out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  std::int64_t out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
  std::array<std::int64_t, 11> fields() const {
    return {batch, in_channels, height, width, out_channels, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w};
  }
  friend std::ostream& operator<<(std::ostream& os, const Conv2dGeometry& g) {
    return os << "x [" << g.batch << ", " << g.in_channels << ", " << g.height << ", " << g.width << "] * w ["
              << g.out_channels << ", " << g.in_channels << ", " << g.kernel_h << ", " << g.kernel_w << "] stride ("
              << g.stride_h << ", " << g.stride_w << ") padding (" << g.pad_h << ", " << g.pad_w << ")";
  }
};

/*!
  WHAT THIS REPRESENTS
    Everything cuDNN needs to run one convolution geometry in one math mode: descriptors of x, y, w and the bias
    [1, out, 1, 1], one convolution descriptor per direction (each carries the math type of its algorithm), and
    the algorithm and workspace size of each direction.
    Algorithms come from the cudnnGet*Algorithm_v7 heuristics: the first result that succeeded, whose workspace
    is at most cudnn_workspace_cap, and whose math type is CUDNN_FMA_MATH when FMA math was asked for (never
    CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, which may round FP32 to FP16); when none qualifies, algorithm 0 of the
    direction (implicit GEMM, always available) in the requested math type. For half and bfloat16 the tensors are
    16-bit and the convolution descriptors compute in FP32 (cudnn_compute_type); the bias, which cuDNN's AddTensor
    and BackwardBias do not promise for bfloat16, is spo's own kernel (bias.hpp) for both.
!*/
template <StorageScalar T>
struct Conv2dPlan {
  Conv2dGeometry geometry;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  TensorDescriptor x, y, bias;
  FilterDescriptor w;
  ConvolutionDescriptor forward_conv, data_conv, filter_conv;
  cudnnConvolutionFwdAlgo_t forward_algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionBwdDataAlgo_t data_algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  cudnnConvolutionBwdFilterAlgo_t filter_algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
  std::size_t forward_workspace = 0, data_workspace = 0, filter_workspace = 0;
  cudnnMathType_t forward_math = CUDNN_DEFAULT_MATH, data_math = CUDNN_DEFAULT_MATH, filter_math = CUDNN_DEFAULT_MATH;
  bool forward_fallback = false, data_fallback = false, filter_fallback = false;  // algorithm 0, no heuristic fit
};

namespace detail {

/// The algorithm of one direction: what Conv2dPlan records.
template <class Algo>
struct ConvChoice {
  Algo algo;
  std::size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  bool fallback = false;
};

/// The first usable heuristic result (see Conv2dPlan); `workspace_of(algo, &bytes)` queries its workspace under the
/// math type just set on `conv`. Leaves `conv` in the math type of the returned algorithm.
template <class Perf, class Algo, class WorkspaceOf>
ConvChoice<Algo> choose_conv_algorithm(const std::vector<Perf>& perf, ConvolutionDescriptor& conv,
                                       cudnnMathType_t requested, Algo fallback, WorkspaceOf&& workspace_of) {
  for (const Perf& p : perf) {
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (requested == CUDNN_FMA_MATH && p.mathType != CUDNN_FMA_MATH) continue;
    if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    conv.set_math_type(p.mathType);
    std::size_t bytes = 0;
    if (workspace_of(p.algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > cudnn_workspace_cap) continue;
    return {p.algo, bytes, p.mathType, false};
  }
  conv.set_math_type(requested);
  std::size_t bytes = 0;
  SPO_CUDNN_CHECK(workspace_of(fallback, &bytes));
  return {fallback, bytes, requested, true};
}

template <StorageScalar T>
std::unique_ptr<Conv2dPlan<T>> make_conv2d_plan(const Conv2dGeometry& g, cudnnMathType_t math) {
  SPO_CHECK(g.batch >= 1 && g.in_channels >= 1 && g.out_channels >= 1 && g.kernel_h >= 1 && g.kernel_w >= 1 &&
                g.stride_h >= 1 && g.stride_w >= 1 && g.pad_h >= 0 && g.pad_w >= 0 &&
                g.height + 2 * g.pad_h >= g.kernel_h && g.width + 2 * g.pad_w >= g.kernel_w,
            "cuDNN convolution: invalid geometry " << g);
  cudnnHandle_t h = cudnn_handle();
  constexpr cudnnDataType_t type = cudnn_data_type<T>;
  auto plan = std::make_unique<Conv2dPlan<T>>();
  plan->geometry = g;
  plan->math = math;
  plan->x.set_nchw(type, g.batch, g.in_channels, g.height, g.width);
  plan->y.set_nchw(type, g.batch, g.out_channels, g.out_h(), g.out_w());
  plan->bias.set_nchw(type, 1, g.out_channels, 1, 1);
  plan->w.set_kcrs(type, g.out_channels, g.in_channels, g.kernel_h, g.kernel_w);
  for (ConvolutionDescriptor* c : {&plan->forward_conv, &plan->data_conv, &plan->filter_conv})
    c->set_2d(g.pad_h, g.pad_w, g.stride_h, g.stride_w, cudnn_compute_type<T>, math);

  int n = 0, c = 0, ho = 0, wo = 0;
  SPO_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->forward_conv, plan->x, plan->w, &n, &c, &ho, &wo));
  SPO_CHECK(n == g.batch && c == g.out_channels && ho == g.out_h() && wo == g.out_w(),
            "cuDNN convolution " << g << ": cuDNN's output [" << n << ", " << c << ", " << ho << ", " << wo
                                 << "] differs from [" << g.batch << ", " << g.out_channels << ", " << g.out_h() << ", "
                                 << g.out_w() << "]");

  int max_count = 0, count = 0;
  {
    SPO_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_count, 1)));
    SPO_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, plan->x, plan->w, plan->forward_conv, plan->y,
                                                           static_cast<int>(perf.size()), &count, perf.data()));
    perf.resize(static_cast<std::size_t>(std::max(count, 0)));
    const auto choice = choose_conv_algorithm(perf, plan->forward_conv, math, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                              [&](cudnnConvolutionFwdAlgo_t algo, std::size_t* bytes) {
                                                return cudnnGetConvolutionForwardWorkspaceSize(
                                                    h, plan->x, plan->w, plan->forward_conv, plan->y, algo, bytes);
                                              });
    plan->forward_algo = choice.algo;
    plan->forward_workspace = choice.workspace;
    plan->forward_math = choice.math;
    plan->forward_fallback = choice.fallback;
  }
  {
    SPO_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_count, 1)));
    SPO_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, plan->w, plan->y, plan->data_conv, plan->x,
                                                                static_cast<int>(perf.size()), &count, perf.data()));
    perf.resize(static_cast<std::size_t>(std::max(count, 0)));
    const auto choice = choose_conv_algorithm(perf, plan->data_conv, math, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
                                              [&](cudnnConvolutionBwdDataAlgo_t algo, std::size_t* bytes) {
                                                return cudnnGetConvolutionBackwardDataWorkspaceSize(
                                                    h, plan->w, plan->y, plan->data_conv, plan->x, algo, bytes);
                                              });
    plan->data_algo = choice.algo;
    plan->data_workspace = choice.workspace;
    plan->data_math = choice.math;
    plan->data_fallback = choice.fallback;
  }
  {
    SPO_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_count, 1)));
    SPO_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, plan->x, plan->y, plan->filter_conv, plan->w,
                                                                  static_cast<int>(perf.size()), &count, perf.data()));
    perf.resize(static_cast<std::size_t>(std::max(count, 0)));
    const auto choice = choose_conv_algorithm(perf, plan->filter_conv, math, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
                                              [&](cudnnConvolutionBwdFilterAlgo_t algo, std::size_t* bytes) {
                                                return cudnnGetConvolutionBackwardFilterWorkspaceSize(
                                                    h, plan->x, plan->y, plan->filter_conv, plan->w, algo, bytes);
                                              });
    plan->filter_algo = choice.algo;
    plan->filter_workspace = choice.workspace;
    plan->filter_math = choice.math;
    plan->filter_fallback = choice.fallback;
  }
  return plan;
}

}  // namespace detail

/// The process-wide plan of a geometry for scalar T on the current device in the current math type
/// (conv_math_type<T>()), built on first use. Plans are never evicted, so the reference stays valid.
template <StorageScalar T>
const Conv2dPlan<T>& conv2d_plan(const Conv2dGeometry& g) {
  using Key = std::array<std::int64_t, 13>;
  static std::mutex mutex;
  static auto* plans = new std::map<Key, std::unique_ptr<Conv2dPlan<T>>>();  // leaked: outlives static layers
  int device = 0;
  SPO_CUDA_CHECK(cudaGetDevice(&device));
  const cudnnMathType_t math = conv_math_type<T>();
  const auto f = g.fields();
  Key key{};
  std::copy(f.begin(), f.end(), key.begin());
  key[11] = device;
  key[12] = static_cast<std::int64_t>(math);
  std::lock_guard lock(mutex);
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, detail::make_conv2d_plan<T>(g, math)).first;
  return *it->second;
}

/// The type of cuDNN's alpha and beta for tensors of T: float for float, half and bfloat16, double for double.
template <StorageScalar T>
using cudnn_scaling_t = compute_type_t<T>;

/// y = conv(x, w) (+ bias[o] broadcast over [B, ., Ho, Wo] when bias is non-null); y is written, never read.
/// Device pointers: x [B, Cin, H, W], w [Cout, Cin, kh, kw], bias [Cout], y [B, Cout, Ho, Wo]. For half and bfloat16
/// y is rounded once from the FP32 convolution, and once more after the bias is added in FP32.
template <StorageScalar T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const Conv2dPlan<T>& p = conv2d_plan<T>(g);
  cudnnHandle_t h = cudnn_handle();
  const cudnn_scaling_t<T> one(1), zero(0);
  auto ws = cudnn_workspace(p.forward_workspace);
  SPO_CUDNN_CHECK(cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.forward_conv, p.forward_algo, ws.data(),
                                          p.forward_workspace, &zero, p.y, y));
  if (bias == nullptr) return;
  if constexpr (HalfScalar<T>)
    add_channel_bias<T>(g.batch, g.out_channels, g.out_h() * g.out_w(), bias, y);
  else
    SPO_CUDNN_CHECK(cudnnAddTensor(h, &one, p.bias, bias, &one, p.y, y));
}

/// dx = conv_transpose(dy, w): the gradient of sum(y dy) with respect to x; dx is written, never read.
template <StorageScalar T>
void conv2d_backward_data(const Conv2dGeometry& g, const T* w, const T* dy, T* dx) {
  const Conv2dPlan<T>& p = conv2d_plan<T>(g);
  const cudnn_scaling_t<T> one(1), zero(0);
  auto ws = cudnn_workspace(p.data_workspace);
  SPO_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn_handle(), &one, p.w, w, p.y, dy, p.data_conv, p.data_algo,
                                               ws.data(), p.data_workspace, &zero, p.x, dx));
}

/// dw = dw_scale * dw + sum_{n, i, j} dy[n, o, i, j] x[n, c, i s - pad + p, j s - pad + q] (dw_scale 1 accumulates;
/// for half and bfloat16 the sum and the blend are FP32, rounded once).
template <StorageScalar T>
void conv2d_backward_filter(const Conv2dGeometry& g, const T* x, const T* dy, T* dw, cudnn_scaling_t<T> dw_scale) {
  const Conv2dPlan<T>& p = conv2d_plan<T>(g);
  const cudnn_scaling_t<T> one(1);
  auto ws = cudnn_workspace(p.filter_workspace);
  SPO_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn_handle(), &one, p.x, x, p.y, dy, p.filter_conv, p.filter_algo,
                                                 ws.data(), p.filter_workspace, &dw_scale, p.w, dw));
}

/// db += sum_{n, i, j} dy[n, o, i, j] (accumulates; half and bfloat16 sum in FP32 and round once).
template <StorageScalar T>
void conv2d_backward_bias(const Conv2dGeometry& g, const T* dy, T* db) {
  if constexpr (HalfScalar<T>) {
    channel_sum_accumulate<T>(g.batch, g.out_channels, g.out_h() * g.out_w(), dy, db);
  } else {
    const Conv2dPlan<T>& p = conv2d_plan<T>(g);
    const T one = T(1);
    SPO_CUDNN_CHECK(cudnnConvolutionBackwardBias(cudnn_handle(), &one, p.y, dy, &one, p.bias, db));
  }
}

}  // namespace spo::cuda_kernels
