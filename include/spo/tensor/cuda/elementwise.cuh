// SPDX-License-Identifier: MIT
/// @brief Elementwise CUDA kernels: axpy, scale, fill, conversions between storage scalars, and activations (SiLU)
/// with their backward, on spo::cuda tensors. Every storage scalar: 16-bit elements are read into float, computed in
/// float and rounded once (scalar_access.cuh), and the arithmetic kernels move 16 bytes per load and store when the
/// pointers allow it (8 halves, 4 floats, 2 doubles; the results are those of the element-by-element loop).
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
#include "spo/tensor/cuda/scalar_access.cuh"
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

namespace detail {

/// 16 bytes of T: the unit of the vectorised elementwise kernels.
template <StorageScalar T>
struct alignas(16) Pack16 {
  static constexpr int size = 16 / static_cast<int>(sizeof(T));
  T v[size];
};

/// Whether every pointer is 16-byte aligned (null pointers count as aligned).
template <class... P>
bool aligned16(const P*... p) {
  return ((reinterpret_cast<std::uintptr_t>(p) % 16 == 0) && ...);
}

/*!
  out[i] = op(a[i]) (Arity 1) or op(a[i], b[i]) (Arity 2) for i < n, in compute_type_t<T>, one rounding per output.
  The first `packs` 16-byte packs (n / Pack16::size when every pointer is 16-byte aligned, else 0) move as single
  loads and stores, the rest element by element; out may equal a or b.
!*/
template <int Arity, class Op, StorageScalar T>
__global__ void map_kernel(std::int64_t n, std::int64_t packs, Op op, const T* a, const T* b, T* out) {
  using P = Pack16<T>;
  for (std::int64_t p = grid_first(); p < packs; p += grid_stride()) {
    const P pa = reinterpret_cast<const P*>(a)[p];
    P pb{};
    if constexpr (Arity == 2) pb = reinterpret_cast<const P*>(b)[p];
    P r;
#pragma unroll
    for (int k = 0; k < P::size; ++k) {
      if constexpr (Arity == 2)
        r.v[k] = store<T>(op(load(pa.v[k]), load(pb.v[k])));
      else
        r.v[k] = store<T>(op(load(pa.v[k])));
    }
    reinterpret_cast<P*>(out)[p] = r;
  }
  for (std::int64_t i = packs * P::size + grid_first(); i < n; i += grid_stride()) {
    if constexpr (Arity == 2)
      out[i] = store<T>(op(load(a[i]), load(b[i])));
    else
      out[i] = store<T>(op(load(a[i])));
  }
}

/// Launches map_kernel over n elements (vectorised when the pointers allow it).
template <int Arity, class Op, StorageScalar T>
void launch_map(std::int64_t n, Op op, const T* a, const T* b, T* out, cudaStream_t stream, const char* what) {
  if (n == 0) return;
  const std::int64_t packs = aligned16(a, b, out) ? n / Pack16<T>::size : 0;
  const std::int64_t threads = packs + (n - packs * Pack16<T>::size);
  map_kernel<Arity, Op, T>
      <<<cuda_runtime::grid_1d(threads), cuda_runtime::block_1d, 0, stream>>>(n, packs, op, a, b, out);
  SPO_CUDA_CHECK_LAUNCH(what);
}

/// y + alpha x.
template <class C>
struct AxpyOp {
  C alpha;
  __device__ C operator()(C y, C x) const { return y + alpha * x; }
};
/// alpha y.
template <class C>
struct ScaleOp {
  C alpha;
  __device__ C operator()(C y) const { return y * alpha; }
};
/// F(x).
template <class F>
struct ValueOp {
  template <class C>
  __device__ C operator()(C x) const {
    return F::value(x);
  }
};
/// dy F'(x).
template <class F>
struct GradientOp {
  template <class C>
  __device__ C operator()(C x, C dy) const {
    return F::gradient(x, dy);
  }
};

}  // namespace detail

template <StorageScalar To, StorageScalar From>
__global__ void convert_kernel(std::int64_t n, const From* x, To* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] = convert_scalar<To>(x[i]);
}

template <StorageScalar T>
__global__ void fill_kernel(std::int64_t n, T value, T* y) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) y[i] = value;
}

/// y[i] += alpha * x[i] for i < n (x and y must not partially overlap); alpha in T's compute type.
template <StorageScalar T>
struct Axpy {
  struct Arguments {
    std::int64_t n = 0;
    compute_type_t<T> alpha = 1;
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
    detail::launch_map<2>(args.n, detail::AxpyOp<compute_type_t<T>>{args.alpha}, static_cast<const T*>(args.y), args.x,
                          args.y, stream, "map_kernel (axpy)");
  }
};

/// y[i] *= alpha for i < n; alpha in T's compute type.
template <StorageScalar T>
struct Scale {
  struct Arguments {
    std::int64_t n = 0;
    compute_type_t<T> alpha = 1;
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
    detail::launch_map<1>(args.n, detail::ScaleOp<compute_type_t<T>>{args.alpha}, static_cast<const T*>(args.y),
                          static_cast<const T*>(nullptr), args.y, stream, "map_kernel (scale)");
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
template <StorageScalar T>
struct Fill {
  struct Arguments {
    std::int64_t n = 0;
    T value{};
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
/// The twin of cpu_kernels::activation_forward / activation_backward for an elementwise functor F (evaluated in T's
/// compute type).
template <class F, StorageScalar T>
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
    detail::launch_map<1>(args.n, detail::ValueOp<F>{}, args.x, static_cast<const T*>(nullptr), args.out, stream,
                          "map_kernel (activation forward)");
  }
  static void backward(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement_backward(args, &why), "cuda_kernels::Activation<" << F::name << ">::backward: " << why);
    detail::launch_map<2>(args.n, detail::GradientOp<F>{}, args.x, args.dy, args.out, stream,
                          "map_kernel (activation backward)");
  }
};

/// y = f(x) over n device elements (cpu_kernels::activation_forward's signature, plus a stream).
template <class F, StorageScalar T>
void activation_forward(const T* x, T* y, std::int64_t n, cudaStream_t stream = nullptr) {
  Activation<F, T>::forward({n, x, nullptr, y}, stream);
}

/// dx = dy * f'(x) over n device elements (cpu_kernels::activation_backward's signature, plus a stream).
template <class F, StorageScalar T>
void activation_backward(const T* x, const T* dy, T* dx, std::int64_t n, cudaStream_t stream = nullptr) {
  Activation<F, T>::backward({n, x, dy, dx}, stream);
}

}  // namespace spo::cuda_kernels

namespace spo {

/// y += alpha * x on the device (the cuda twin of spo::axpy in tensor/ops.hpp).
template <StorageScalar T>
void axpy(compute_type_t<T> alpha, TensorView<const T, cuda> x, TensorView<T, cuda> y) {
  check_same_shape(x.shape(), y.shape(), "axpy");
  cuda_kernels::Axpy<T>::run({y.numel(), alpha, x.data(), y.data()});
}

/// y *= alpha on the device (the cuda twin of spo::scale in tensor/ops.hpp).
template <StorageScalar T>
void scale(compute_type_t<T> alpha, TensorView<T, cuda> y) {
  cuda_kernels::Scale<T>::run({y.numel(), alpha, y.data()});
}

/// Every element of t set to value.
template <StorageScalar T>
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
