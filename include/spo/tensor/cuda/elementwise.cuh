// SPDX-License-Identifier: MIT
/// @brief Elementwise CUDA kernels: axpy, scale, fill, conversions between storage scalars, and activations (SiLU)
/// with their backward, on spo::cuda tensors.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

namespace detail {

__device__ inline float exp_of(float x) { return expf(x); }
__device__ inline double exp_of(double x) { return exp(x); }

/// First index and stride of a 1-D grid-stride loop (64-bit, so n may exceed 2^31).
__device__ inline std::int64_t grid_first() { return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline std::int64_t grid_stride() { return static_cast<std::int64_t>(blockDim.x) * gridDim.x; }

/// "" when n >= 0 and, for n > 0, no pointer is null; otherwise the reason.
template <class... P>
std::string null_pointer_reason(std::int64_t n, const P*... pointers) {
  if (n < 0) return "negative element count " + std::to_string(n);
  if (n > 0 && ((pointers == nullptr) || ...)) return "null pointer for " + std::to_string(n) + " elements";
  return {};
}

}  // namespace detail

/// SiLU f(x) = x sigmoid(x), f'(x) = s (1 + x (1 - s)) with s = sigmoid(x) (torch.nn.SiLU; the per-element
/// form of nn::SiLUFunction).
struct SiluOp {
  static constexpr std::string_view name = "SiLU";
  template <Scalar T>
  __device__ static T value(T x) {
    return x / (T(1) + detail::exp_of(-x));
  }
  template <Scalar T>
  __device__ static T gradient(T x, T dy) {
    const T s = T(1) / (T(1) + detail::exp_of(-x));
    return dy * s * (T(1) + x * (T(1) - s));
  }
};

template <Scalar T>
__global__ void axpy_kernel(std::int64_t n, T alpha, const T* x, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] += alpha * x[i];
}

template <Scalar T>
__global__ void scale_kernel(std::int64_t n, T alpha, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] *= alpha;
}

template <StorageScalar To, StorageScalar From>
__global__ void convert_kernel(std::int64_t n, const From* x, To* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] = convert_scalar<To>(x[i]);
}

template <Scalar T>
__global__ void fill_kernel(std::int64_t n, T value, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] = value;
}

template <class F, Scalar T>
__global__ void activation_forward_kernel(std::int64_t n, const T* x, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] = F::value(x[i]);
}

template <class F, Scalar T>
__global__ void activation_backward_kernel(std::int64_t n, const T* x, const T* dy, T* dx) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) dx[i] = F::gradient(x[i], dy[i]);
}

/// y[i] += alpha * x[i] for i < n (x and y must not partially overlap).
template <Scalar T>
struct Axpy {
  struct Arguments {
    std::int64_t n = 0;
    T alpha = T(1);
    const T* x = nullptr;
    T* y = nullptr;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.x, args.y);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "cuda_kernels::Axpy: " << why);
    if (args.n == 0) return;
    axpy_kernel<T>
        <<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.alpha, args.x, args.y);
    SPO_CUDA_CHECK_LAUNCH("axpy_kernel");
  }
};

/// y[i] *= alpha for i < n.
template <Scalar T>
struct Scale {
  struct Arguments {
    std::int64_t n = 0;
    T alpha = T(1);
    T* y = nullptr;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.y);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "cuda_kernels::Scale: " << why);
    if (args.n == 0) return;
    scale_kernel<T><<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.alpha, args.y);
    SPO_CUDA_CHECK_LAUNCH("scale_kernel");
  }
};

/// y[i] = convert_scalar<To>(x[i]) for i < n: the host's conversion function (core/half.hpp, integer arithmetic), so
/// every result is bitwise the CPU's cast.
template <StorageScalar To, StorageScalar From>
struct Convert {
  struct Arguments {
    std::int64_t n = 0;
    const From* x = nullptr;
    To* y = nullptr;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.x, args.y);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "cuda_kernels::Convert: " << why);
    if (args.n == 0) return;
    convert_kernel<To, From>
        <<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.x, args.y);
    SPO_CUDA_CHECK_LAUNCH("convert_kernel");
  }
};

/// y[i] = value for i < n.
template <Scalar T>
struct Fill {
  struct Arguments {
    std::int64_t n = 0;
    T value = T(0);
    T* y = nullptr;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.y);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "cuda_kernels::Fill: " << why);
    if (args.n == 0) return;
    fill_kernel<T><<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.value, args.y);
    SPO_CUDA_CHECK_LAUNCH("fill_kernel");
  }
};

/// y = f(x) (forward) and dx = dy * f'(x) (backward) over n elements; in place (y == x, dx == dy) is allowed.
/// The twin of cpu_kernels::activation_forward / activation_backward for an elementwise functor F.
template <class F, Scalar T>
struct Activation {
  struct Arguments {
    std::int64_t n = 0;
    const T* x = nullptr;
    const T* dy = nullptr;  ///< backward only
    T* out = nullptr;       ///< y (forward) or dx (backward)
  };
  static bool can_implement_forward(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.x, args.out);
    if (why) *why = reason;
    return reason.empty();
  }
  static bool can_implement_backward(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.x, args.dy, args.out);
    if (why) *why = reason;
    return reason.empty();
  }
  static void forward(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement_forward(args, &why), "cuda_kernels::Activation<" << F::name << ">::forward: " << why);
    if (args.n == 0) return;
    activation_forward_kernel<F, T>
        <<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.x, args.out);
    SPO_CUDA_CHECK_LAUNCH("activation_forward_kernel");
  }
  static void backward(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement_backward(args, &why), "cuda_kernels::Activation<" << F::name << ">::backward: " << why);
    if (args.n == 0) return;
    activation_backward_kernel<F, T>
        <<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.x, args.dy, args.out);
    SPO_CUDA_CHECK_LAUNCH("activation_backward_kernel");
  }
};

/// y = f(x) over n device elements (cpu_kernels::activation_forward's signature, plus a stream).
template <class F, Scalar T>
void activation_forward(const T* x, T* y, std::int64_t n, cudaStream_t stream = nullptr) {
  Activation<F, T>::forward({n, x, nullptr, y}, stream);
}

/// dx = dy * f'(x) over n device elements (cpu_kernels::activation_backward's signature, plus a stream).
template <class F, Scalar T>
void activation_backward(const T* x, const T* dy, T* dx, std::int64_t n, cudaStream_t stream = nullptr) {
  Activation<F, T>::backward({n, x, dy, dx}, stream);
}

}  // namespace spo::cuda_kernels

namespace spo {

/// y += alpha * x on the device (the cuda twin of spo::axpy in tensor/ops.hpp).
template <Scalar T>
void axpy(T alpha, TensorView<const T, cuda> x, TensorView<T, cuda> y) {
  check_same_shape(x.shape(), y.shape(), "axpy");
  cuda_kernels::Axpy<T>::run({y.numel(), alpha, x.data(), y.data()});
}

/// y *= alpha on the device (the cuda twin of spo::scale in tensor/ops.hpp).
template <Scalar T>
void scale(T alpha, TensorView<T, cuda> y) {
  cuda_kernels::Scale<T>::run({y.numel(), alpha, y.data()});
}

/// Every element of t set to value.
template <Scalar T>
void fill(TensorView<T, cuda> t, T value) {
  cuda_kernels::Fill<T>::run({t.numel(), value, t.data()});
}

/// y = x converted element by element (convert_scalar; bitwise the CPU's cast).
template <StorageScalar To, StorageScalar From>
void convert(TensorView<const From, cuda> x, TensorView<To, cuda> y) {
  check_same_shape(x.shape(), y.shape(), "convert");
  cuda_kernels::Convert<To, From>::run({y.numel(), x.data(), y.data()});
}

}  // namespace spo
