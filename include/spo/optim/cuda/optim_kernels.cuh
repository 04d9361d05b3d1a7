// SPDX-License-Identifier: MIT
/// @brief Optimizer kernels on spo::cuda: the AdamW element update, a deterministic double sum of squares (global
/// gradient norms) and an in-place scale (gradient clipping).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/optim/cuda/optim_kernels.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::optim::cuda_kernels {

namespace detail {

using spo::cuda_kernels::detail::grid_first;
using spo::cuda_kernels::detail::grid_stride;
using spo::cuda_kernels::detail::null_pointer_reason;

__device__ inline float sqrt_of(float x) { return sqrtf(x); }
__device__ inline double sqrt_of(double x) { return sqrt(x); }

/// Threads per block of the sum-of-squares reduction (a power of two), elements per block it aims at, and its most
/// blocks (partial sums) per tensor: one per thread of the final tree.
inline constexpr int sumsq_block = 256;
inline constexpr std::int64_t sumsq_chunk_elements = 4 * sumsq_block;
inline constexpr int sumsq_max_chunks = sumsq_block;

/// Deterministic tree sum of sumsq_block doubles in shared memory; the result is in s[0] (read after the call).
__device__ inline void sumsq_tree(double* s) {
  for (int half = sumsq_block / 2; half > 0; half /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
  }
  __syncthreads();
}

}  // namespace detail

/// One AdamW step per element, in T, in the order of optim::adamw_update (the CPU loop body).
template <Scalar T>
__global__ void adamw_kernel(std::int64_t n, AdamWScalars<T> c, T* p, const T* g, T* m, T* v) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const T gi = g[i];
    const T mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    const T vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const T denom = detail::sqrt_of(vi) / c.bias_correction2_sqrt + c.eps;
    p[i] = p[i] * c.decay + c.neg_step * mi / denom;
  }
}

/// partial[blockIdx.x] = sum of x_i^2 (in double) over this block's grid-stride elements; block = sumsq_block.
template <Scalar T>
__global__ void sum_of_squares_partial_kernel(std::int64_t n, const T* x, double* partial) {
  __shared__ double s[detail::sumsq_block];
  double acc = 0.0;
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) {
    const double xi = static_cast<double>(x[i]);
    acc += xi * xi;
  }
  s[threadIdx.x] = acc;
  detail::sumsq_tree(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

/// *out = sum of partial[0, count), count <= sumsq_block; one block of sumsq_block threads (T: the summed tensor's
/// type, which only names the instantiation).
template <Scalar T>
__global__ void sum_partials_kernel(int count, const double* partial, double* out) {
  __shared__ double s[detail::sumsq_block];
  s[threadIdx.x] = static_cast<int>(threadIdx.x) < count ? partial[threadIdx.x] : 0.0;
  detail::sumsq_tree(s);
  if (threadIdx.x == 0) *out = s[0];
}

template <Scalar T>
__global__ void scale_kernel(std::int64_t n, T alpha, T* x) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride()) x[i] *= alpha;
}

/// p, m, v updated in place from g over n elements (the four arrays must not overlap).
template <Scalar T>
struct AdamWUpdate {
  struct Arguments {
    std::int64_t n = 0;
    AdamWScalars<T> scalars{};
    T* p = nullptr;
    const T* g = nullptr;
    T* m = nullptr;
    T* v = nullptr;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.p, args.g, args.m, args.v);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "optim::cuda_kernels::AdamWUpdate: " << why);
    if (args.n == 0) return;
    adamw_kernel<T><<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.scalars, args.p,
                                                                                          args.g, args.m, args.v);
    SPO_CUDA_CHECK_LAUNCH("adamw_kernel");
  }
};

/*!
  WHAT THIS REPRESENTS
    *out = sum_i x_i^2 over n elements, in double, written to device memory: chunks(n) blocks each reduce their
    grid-stride elements with a fixed tree, then one block sums the chunk partials with the same tree. The order is
    fixed by n alone, so the result is reproducible (no atomics).
  WORKSPACE
    chunks(n) doubles of device memory for the partials (unused when chunks(n) == 1: the block writes *out).
!*/
template <Scalar T>
struct SumOfSquares {
  struct Arguments {
    std::int64_t n = 0;
    const T* x = nullptr;
    double* out = nullptr;        ///< one device double
    double* workspace = nullptr;  ///< chunks(n) device doubles
  };
  /// About sumsq_chunk_elements elements per block, between 1 and sumsq_max_chunks blocks.
  static int chunks(std::int64_t n) {
    const std::int64_t c = (n + detail::sumsq_chunk_elements - 1) / detail::sumsq_chunk_elements;
    return static_cast<int>(std::clamp<std::int64_t>(c, 1, detail::sumsq_max_chunks));
  }
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    std::string reason = detail::null_pointer_reason(args.n, args.x);
    if (reason.empty() && args.out == nullptr) reason = "null output pointer";
    if (reason.empty() && chunks(args.n) > 1 && args.workspace == nullptr) reason = "null workspace";
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "optim::cuda_kernels::SumOfSquares: " << why);
    const int nc = chunks(args.n);
    if (nc == 1) {
      sum_of_squares_partial_kernel<T><<<1, detail::sumsq_block, 0, stream>>>(args.n, args.x, args.out);
      SPO_CUDA_CHECK_LAUNCH("sum_of_squares_partial_kernel");
      return;
    }
    sum_of_squares_partial_kernel<T>
        <<<static_cast<unsigned>(nc), detail::sumsq_block, 0, stream>>>(args.n, args.x, args.workspace);
    SPO_CUDA_CHECK_LAUNCH("sum_of_squares_partial_kernel");
    sum_partials_kernel<T><<<1, detail::sumsq_block, 0, stream>>>(nc, args.workspace, args.out);
    SPO_CUDA_CHECK_LAUNCH("sum_partials_kernel");
  }
};

/// x[i] *= alpha for i < n.
template <Scalar T>
struct Scale {
  struct Arguments {
    std::int64_t n = 0;
    T alpha = T(1);
    T* x = nullptr;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.x);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "optim::cuda_kernels::Scale: " << why);
    if (args.n == 0) return;
    scale_kernel<T><<<cuda_runtime::grid_1d(args.n), cuda_runtime::block_1d, 0, stream>>>(args.n, args.alpha, args.x);
    SPO_CUDA_CHECK_LAUNCH("scale_kernel");
  }
};

template <Scalar T>
void adamw_update(TensorView<T, cuda> p, TensorView<const T, cuda> g, TensorView<T, cuda> m, TensorView<T, cuda> v,
                  const AdamWScalars<T>& s) {
  check_same_shape(g.shape(), p.shape(), "adamw_update (gradient vs parameter)");
  check_same_shape(m.shape(), p.shape(), "adamw_update (exp_avg vs parameter)");
  check_same_shape(v.shape(), p.shape(), "adamw_update (exp_avg_sq vs parameter)");
  AdamWUpdate<T>::run({p.numel(), s, p.data(), g.data(), m.data(), v.data()});
}

}  // namespace spo::optim::cuda_kernels

namespace spo {

template <Scalar T>
double sum_of_squares(std::span<const TensorView<const T, cuda>> xs) {
  if (xs.empty()) return 0.0;
  int most_chunks = 1;
  for (const auto& x : xs) most_chunks = std::max(most_chunks, optim::cuda_kernels::SumOfSquares<T>::chunks(x.numel()));
  Tensor<double, cuda> sums(Shape{static_cast<std::int64_t>(xs.size())});  // [views], zero (empty views stay 0)
  auto partial = Tensor<double, cuda>::uninitialized(Shape{most_chunks});  // reused: launches are stream-ordered
  for (std::size_t j = 0; j < xs.size(); ++j) {
    if (xs[j].numel() == 0) continue;
    optim::cuda_kernels::SumOfSquares<T>::run({xs[j].numel(), xs[j].data(), sums.data() + j, partial.data()});
  }
  const Tensor<double, cpu> host = to_host(sums);  // waits for the kernels
  double total = 0.0;
  for (std::int64_t j = 0; j < host.numel(); ++j) total += host[j];
  return total;
}

template <Scalar T>
void scale_inplace(TensorView<T, cuda> x, T alpha) {
  optim::cuda_kernels::Scale<T>::run({x.numel(), alpha, x.data()});
}

}  // namespace spo
