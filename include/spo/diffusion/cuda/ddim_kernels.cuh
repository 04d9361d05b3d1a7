// SPDX-License-Identifier: MIT
/// @brief DDIM transition mean and per-step log-probability on spo::cuda, with per-batch coefficients from the host.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <ranges>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/diffusion/cuda/ddim_kernels.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::diffusion::cuda_kernels {

/// Batch elements per launch: their coefficients travel by value as a kernel parameter (3 KiB), so a call needs
/// no device upload; longer batches are split into several launches.
inline constexpr int ddim_batch_per_launch = 128;

struct DdimCoefficientTable {
  DdimCoefficients c[ddim_batch_per_launch];
};

namespace detail {

using spo::cuda_kernels::detail::grid_first;
using spo::cuda_kernels::detail::grid_stride;
using spo::cuda_kernels::detail::null_pointer_reason;

inline DdimCoefficientTable coefficient_table(std::span<const DdimCoefficients> c) {
  DdimCoefficientTable t{};
  std::copy(c.begin(), c.end(), t.c);
  return t;
}

inline std::string ddim_shape_reason(std::int64_t batch, std::int64_t per, std::size_t coefficients) {
  std::ostringstream os;
  if (batch < 0 || per < 0)
    os << "negative extent (batch " << batch << ", per-sample " << per << ")";
  else if (static_cast<std::int64_t>(coefficients) != batch)
    os << coefficients << " coefficient sets for batch " << batch;
  return os.str();
}

/// Threads per block of the log-prob reduction (a power of two) and its most partial sums per batch element.
inline constexpr int logprob_block = 256;
inline constexpr int logprob_max_chunks = logprob_block;  // one partial per thread of the final tree

/// Deterministic tree sum of logprob_block doubles in shared memory; the result is in s[0] for thread 0.
__device__ inline void block_sum(double* s) {
  for (int half = logprob_block / 2; half > 0; half /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
  }
  __syncthreads();
}

}  // namespace detail

/// mu[b, i] = sqrt(abar_prev_b) x0[b, i] + dir_b eps[b, i], in double, rounded to T once.
/// Ref: diffusion::Ddim::mean; diffusers DDIMScheduler.step "prev_sample" before noise.
template <Scalar T>
__global__ void ddim_mean_kernel(std::int64_t per, DdimCoefficientTable table, const T* x0, const T* eps, T* mu) {
  const std::int64_t o = static_cast<std::int64_t>(blockIdx.y) * per;
  const double ca = table.c[blockIdx.y].sqrt_alpha_prev, cd = table.c[blockIdx.y].dir;
  for (std::int64_t i = detail::grid_first(); i < per; i += detail::grid_stride())
    mu[o + i] = static_cast<T>(ca * static_cast<double>(x0[o + i]) + cd * static_cast<double>(eps[o + i]));
}

/// partial[b, chunk] = sum over this chunk's elements of (x_prev - mu)^2, in double; grid (chunks, batch).
template <Scalar T>
__global__ void ddim_sq_dist_kernel(std::int64_t per, const T* x_prev, const T* mu, double* partial) {
  __shared__ double s[detail::logprob_block];
  const std::int64_t o = static_cast<std::int64_t>(blockIdx.y) * per;
  double acc = 0.0;
  for (std::int64_t i = detail::grid_first(); i < per; i += detail::grid_stride()) {
    const double d = static_cast<double>(x_prev[o + i]) - static_cast<double>(mu[o + i]);
    acc += d * d;
  }
  s[threadIdx.x] = acc;
  detail::block_sum(s);
  if (threadIdx.x == 0) partial[static_cast<std::int64_t>(blockIdx.y) * gridDim.x + blockIdx.x] = s[0];
}

/// log_prob[b] = -sum_b / (2 stddev_b^2 per) - log stddev_b - log sqrt(2 pi); one block per batch element.
template <Scalar T>
__global__ void ddim_log_prob_kernel(std::int64_t per, int chunks, DdimCoefficientTable table, const double* partial,
                                     T* log_prob) {
  __shared__ double s[detail::logprob_block];
  const int b = static_cast<int>(blockIdx.x);
  s[threadIdx.x] =
      static_cast<int>(threadIdx.x) < chunks ? partial[static_cast<std::int64_t>(b) * chunks + threadIdx.x] : 0.0;
  detail::block_sum(s);
  if (threadIdx.x == 0) {
    constexpr double log_sqrt_2pi = 0.91893853320467274178;
    const double sd = table.c[b].stddev, inv2var = 1.0 / (2.0 * sd * sd);
    log_prob[b] = static_cast<T>(-s[0] * inv2var / static_cast<double>(per) - log(sd) - log_sqrt_2pi);
  }
}

/*!
  WHAT THIS REPRESENTS
    The DDIM transition mean mu = sqrt(abar_prev) x0 + dir * eps over [B, per] (per = C H W), one coefficient set
    per batch element (diffusion::Ddim::mean on the device).
!*/
template <Scalar T>
struct DdimMean {
  struct Arguments {
    std::int64_t batch = 0, per = 0;
    const T* x0 = nullptr;
    const T* eps = nullptr;
    T* mu = nullptr;
    std::span<const DdimCoefficients> coefficients;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    std::string reason = detail::ddim_shape_reason(args.batch, args.per, args.coefficients.size());
    if (reason.empty()) reason = detail::null_pointer_reason(args.batch * args.per, args.x0, args.eps, args.mu);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "diffusion::cuda_kernels::DdimMean: " << why);
    if (args.batch == 0 || args.per == 0) return;
    for (std::int64_t b0 = 0; b0 < args.batch; b0 += ddim_batch_per_launch) {
      const std::int64_t nb = std::min<std::int64_t>(ddim_batch_per_launch, args.batch - b0);
      const auto table = detail::coefficient_table(args.coefficients.subspan(b0, nb));
      const std::int64_t o = b0 * args.per;
      const dim3 grid(std::min(cuda_runtime::grid_1d(args.per), 4096u), static_cast<unsigned>(nb));
      ddim_mean_kernel<T>
          <<<grid, cuda_runtime::block_1d, 0, stream>>>(args.per, table, args.x0 + o, args.eps + o, args.mu + o);
      SPO_CUDA_CHECK_LAUNCH("ddim_mean_kernel");
    }
  }
};

/*!
  WHAT THIS REPRESENTS
    log p(x_prev | x_t) per batch element [B] for a Gaussian DDIM transition with mean mu (DDPO/D3PO/SPO
    convention, docs/algorithm.md 1.3 and 2; diffusion::Ddim::log_prob once mu is known):
      log p_b = mean_CHW[ -(x_prev - mu)^2 / (2 stddev_b^2) - log stddev_b - log sqrt(2 pi) ]
    The squared distance is summed in double in a fixed order (per-chunk block trees, then a tree over chunks),
    so the result is deterministic for a given shape.
  REQUIRES
    stddev_b > 0 (eta > 0); per > 0.
  WORKSPACE
    workspace_size(args) bytes of device memory for the partial sums; when args.workspace is null, run() takes
    them from caching_allocator<cuda>.
!*/
template <Scalar T>
struct DdimLogProb {
  struct Arguments {
    std::int64_t batch = 0, per = 0;
    const T* x_prev = nullptr;
    const T* mu = nullptr;
    T* log_prob = nullptr;  ///< [B]
    std::span<const DdimCoefficients> coefficients;
    void* workspace = nullptr;
  };

  /// Partial sums per batch element: about 1024 elements per block, at most logprob_max_chunks.
  static int chunks(std::int64_t per) {
    const std::int64_t c = (per + 4 * detail::logprob_block - 1) / (4 * detail::logprob_block);
    return static_cast<int>(std::clamp<std::int64_t>(c, 1, detail::logprob_max_chunks));
  }
  static std::size_t workspace_size(const Arguments& args) {
    const std::int64_t nb = std::min<std::int64_t>(args.batch, ddim_batch_per_launch);
    return static_cast<std::size_t>(std::max<std::int64_t>(nb, 0)) * static_cast<std::size_t>(chunks(args.per)) *
           sizeof(double);
  }
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    std::string reason = detail::ddim_shape_reason(args.batch, args.per, args.coefficients.size());
    if (reason.empty() && args.batch > 0 && args.per == 0) reason = "empty samples (per = 0): the mean is undefined";
    if (reason.empty()) reason = detail::null_pointer_reason(args.batch * args.per, args.x_prev, args.mu);
    if (reason.empty()) reason = detail::null_pointer_reason(args.batch, args.log_prob);
    for (std::size_t b = 0; reason.empty() && b < args.coefficients.size(); ++b)
      if (!(args.coefficients[b].stddev > 0.0))
        reason = "stddev of batch element " + std::to_string(b) + " is " + std::to_string(args.coefficients[b].stddev) +
                 " (the density needs eta > 0 and t > 0)";
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "diffusion::cuda_kernels::DdimLogProb: " << why);
    if (args.batch == 0) return;
    Tensor<double, cuda> scratch;
    double* partial = static_cast<double*>(args.workspace);
    if (partial == nullptr) {
      scratch =
          Tensor<double, cuda>::uninitialized(Shape{static_cast<std::int64_t>(workspace_size(args) / sizeof(double))});
      partial = scratch.data();
    }
    const int nc = chunks(args.per);
    for (std::int64_t b0 = 0; b0 < args.batch; b0 += ddim_batch_per_launch) {
      const std::int64_t nb = std::min<std::int64_t>(ddim_batch_per_launch, args.batch - b0);
      const auto table = detail::coefficient_table(args.coefficients.subspan(b0, nb));
      const std::int64_t o = b0 * args.per;
      ddim_sq_dist_kernel<T>
          <<<dim3(static_cast<unsigned>(nc), static_cast<unsigned>(nb)), detail::logprob_block, 0, stream>>>(
              args.per, args.x_prev + o, args.mu + o, partial);
      SPO_CUDA_CHECK_LAUNCH("ddim_sq_dist_kernel");
      ddim_log_prob_kernel<T><<<static_cast<unsigned>(nb), detail::logprob_block, 0, stream>>>(
          args.per, nc, table, partial, args.log_prob + b0);
      SPO_CUDA_CHECK_LAUNCH("ddim_log_prob_kernel");
    }
  }
};

/// mean_sq[b] = (sum of the partial sums of batch element b) / per, in double; one block per batch element (T: the
/// reduced tensors' type, which only names the instantiation).
template <Scalar T>
__global__ void mean_sq_dist_kernel(std::int64_t per, int chunks, const double* partial, double* mean_sq) {
  __shared__ double s[detail::logprob_block];
  const int b = static_cast<int>(blockIdx.x);
  s[threadIdx.x] =
      static_cast<int>(threadIdx.x) < chunks ? partial[static_cast<std::int64_t>(b) * chunks + threadIdx.x] : 0.0;
  detail::block_sum(s);
  if (threadIdx.x == 0) mean_sq[b] = s[0] / static_cast<double>(per);
}

template <Scalar T>
__global__ void clamp_kernel(std::int64_t n, T lo, T hi, T* x) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride())
    x[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}

}  // namespace spo::diffusion::cuda_kernels

namespace spo {

template <Scalar T>
void per_sample_affine(TensorView<const T, cuda> a, TensorView<const T, cuda> b, std::span<const SampleWeights> w,
                       TensorView<T, cuda> out) {
  check_same_shape(a.shape(), b.shape(), "per_sample_affine (a vs b)");
  check_same_shape(a.shape(), out.shape(), "per_sample_affine (a vs out)");
  SPO_CHECK(a.rank() >= 1, "per_sample_affine: expected a batched tensor, got shape " << a.shape());
  const std::int64_t batch = a.size(0), per = batch == 0 ? 0 : a.numel() / batch;
  std::vector<diffusion::cuda_kernels::DdimCoefficients> c;
  for (const auto& x : w) c.push_back({x.a, x.b, 0.0});
  diffusion::cuda_kernels::DdimMean<T>::run({batch, per, a.data(), b.data(), out.data(), c});
}

template <Scalar T>
Tensor<T, cuda> gaussian_log_prob(const Tensor<T, cuda>& x, const Tensor<T, cuda>& mu, std::span<const double> stddev) {
  std::vector<diffusion::cuda_kernels::DdimCoefficients> c;
  for (const double s : stddev) c.push_back({0.0, 0.0, s});
  return diffusion::transition_log_prob(x, mu, std::span<const diffusion::cuda_kernels::DdimCoefficients>(c));
}

template <Scalar T>
std::vector<double> per_sample_mean_squared_error(const Tensor<T, cuda>& x, const Tensor<T, cuda>& y) {
  using diffusion::cuda_kernels::ddim_batch_per_launch;
  check_same_shape(x.shape(), y.shape(), "per_sample_mean_squared_error (x vs y)");
  SPO_CHECK(x.rank() >= 1, "per_sample_mean_squared_error: expected a batched tensor, got shape " << x.shape());
  const std::int64_t batch = x.size(0), per = batch == 0 ? 0 : x.numel() / batch;
  SPO_CHECK(batch == 0 || per > 0, "per_sample_mean_squared_error: empty samples (per = 0), the mean is undefined");
  if (batch == 0) return {};
  const int nc = diffusion::cuda_kernels::DdimLogProb<T>::chunks(per);
  auto partial = Tensor<double, cuda>::uninitialized(
      Shape{std::min<std::int64_t>(batch, ddim_batch_per_launch) * nc});  // [min(B, 128) * chunks]
  auto mean_sq = Tensor<double, cuda>::uninitialized(Shape{batch});       // [B]
  for (std::int64_t b0 = 0; b0 < batch; b0 += ddim_batch_per_launch) {
    const std::int64_t nb = std::min<std::int64_t>(ddim_batch_per_launch, batch - b0);
    const std::int64_t o = b0 * per;
    const dim3 grid(static_cast<unsigned>(nc), static_cast<unsigned>(nb));
    diffusion::cuda_kernels::ddim_sq_dist_kernel<T>
        <<<grid, diffusion::cuda_kernels::detail::logprob_block>>>(per, x.data() + o, y.data() + o, partial.data());
    SPO_CUDA_CHECK_LAUNCH("ddim_sq_dist_kernel");
    diffusion::cuda_kernels::mean_sq_dist_kernel<T>
        <<<static_cast<unsigned>(nb), diffusion::cuda_kernels::detail::logprob_block>>>(per, nc, partial.data(),
                                                                                        mean_sq.data() + b0);
    SPO_CUDA_CHECK_LAUNCH("mean_sq_dist_kernel");
  }
  const auto host = to_host(mean_sq);  // [B]
  return std::vector<double>(host.data(), host.data() + host.numel());
}

template <Scalar T>
Tensor<T, cuda> per_sample_scaled_difference(const Tensor<T, cuda>& x, const Tensor<T, cuda>& y,
                                             std::span<const double> g) {
  check_same_shape(x.shape(), y.shape(), "per_sample_scaled_difference (x vs y)");
  SPO_CHECK(x.rank() >= 1, "per_sample_scaled_difference: expected a batched tensor, got shape " << x.shape());
  SPO_CHECK(static_cast<std::int64_t>(g.size()) == x.size(0),
            "per_sample_scaled_difference: " << g.size() << " weights for batch " << x.size(0));
  std::vector<SampleWeights> w;
  for (const double v : g) w.push_back({v, -v});
  auto out = Tensor<T, cuda>::uninitialized(x.shape());  // x.shape
  per_sample_affine<T>(x.view(), y.view(), std::span<const SampleWeights>(w), out.view());
  return out;
}

template <Scalar T>
void clamp_inplace(Tensor<T, cuda>& x, T lo, T hi) {
  SPO_CHECK(!(hi < lo), "clamp_inplace: empty range [" << lo << ", " << hi << "]");
  if (x.numel() == 0) return;
  diffusion::cuda_kernels::clamp_kernel<T>
      <<<std::min(cuda_runtime::grid_1d(x.numel()), 4096u), cuda_runtime::block_1d>>>(x.numel(), lo, hi, x.data());
  SPO_CUDA_CHECK_LAUNCH("clamp_kernel");
}

}  // namespace spo

namespace spo::diffusion {

template <Scalar T>
Tensor<T, cuda> transition_mean(const Tensor<T, cuda>& x0, const Tensor<T, cuda>& eps,
                                std::span<const cuda_kernels::DdimCoefficients> coefficients) {
  check_same_shape(x0.shape(), eps.shape(), "transition_mean (x0 vs eps)");
  SPO_CHECK(x0.rank() >= 1, "transition_mean: expected a batched tensor, got shape " << x0.shape());
  const std::int64_t batch = x0.size(0), per = batch == 0 ? 0 : x0.numel() / batch;
  auto mu = Tensor<T, cuda>::uninitialized(x0.shape());  // x0.shape
  cuda_kernels::DdimMean<T>::run({batch, per, x0.data(), eps.data(), mu.data(), coefficients});
  return mu;
}

template <Scalar T>
Tensor<T, cuda> transition_log_prob(const Tensor<T, cuda>& x_prev, const Tensor<T, cuda>& mu,
                                    std::span<const cuda_kernels::DdimCoefficients> coefficients) {
  check_same_shape(x_prev.shape(), mu.shape(), "transition_log_prob (x_prev vs mu)");
  SPO_CHECK(x_prev.rank() >= 1, "transition_log_prob: expected a batched tensor, got shape " << x_prev.shape());
  const std::int64_t batch = x_prev.size(0), per = batch == 0 ? 0 : x_prev.numel() / batch;
  auto lp = Tensor<T, cuda>::uninitialized(Shape{batch});  // [B]
  cuda_kernels::DdimLogProb<T>::run({batch, per, x_prev.data(), mu.data(), lp.data(), coefficients, nullptr});
  return lp;
}

}  // namespace spo::diffusion
