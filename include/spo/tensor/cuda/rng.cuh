// SPDX-License-Identifier: MIT
/// @brief fill_normal / fill_uniform on spo::cuda: element i is the same Philox number as on the CPU (tensor/ops.hpp).
#pragma once

#include <cstdint>
#include <string>

#include <cuda_runtime.h>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/ops.hpp"
#include "spo/tensor/cuda/runtime.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cuda_kernels {

/// p[i] = mean + stddev * normal_at(seed, first, i): one Philox block per element (3 of its 4 lanes unused; the
/// stream layout, not throughput, is what this kernel guarantees).
template <Scalar T>
__global__ void fill_normal_kernel(std::int64_t n, std::uint64_t seed, std::uint64_t first, T mean, T stddev, T* p) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride())
    p[i] = mean + stddev * static_cast<T>(rng::normal_at(seed, first, static_cast<std::uint64_t>(i)));
}

/// p[i] = lo + (hi - lo) * uniform_at(seed, first, i).
template <Scalar T>
__global__ void fill_uniform_kernel(std::int64_t n, std::uint64_t seed, std::uint64_t first, T lo, T hi, T* p) {
  for (std::int64_t i = detail::grid_first(); i < n; i += detail::grid_stride())
    p[i] = lo + (hi - lo) * static_cast<T>(rng::uniform_at(seed, first, static_cast<std::uint64_t>(i)));
}

enum class Distribution { normal, uniform };

/*!
  WHAT THIS REPRESENTS
    n numbers of the Philox stream (seed, first block) written to device memory, element i from block
    first + i / 4, lane i % 4 (core/rng.hpp's Generator layout), so a device tensor filled from a generator holds
    what the CPU fill_normal / fill_uniform would write, and the generator advances by the same ceil(n / 4).
  PARAMETERS
    normal: a = mean, b = stddev; uniform: [a, b).
!*/
template <Scalar T>
struct FillRandom {
  struct Arguments {
    Distribution distribution = Distribution::normal;
    std::int64_t n = 0;
    std::uint64_t seed = 0, first = 0;
    T a = T(0), b = T(1);
    T* p = nullptr;
  };
  static bool can_implement(const Arguments& args, std::string* why = nullptr) {
    const std::string reason = detail::null_pointer_reason(args.n, args.p);
    if (why) *why = reason;
    return reason.empty();
  }
  static void run(const Arguments& args, cudaStream_t stream = nullptr) {
    std::string why;
    SPO_CHECK(can_implement(args, &why), "cuda_kernels::FillRandom: " << why);
    if (args.n == 0) return;
    const unsigned grid = cuda_runtime::grid_1d(args.n);
    if (args.distribution == Distribution::normal) {
      fill_normal_kernel<T>
          <<<grid, cuda_runtime::block_1d, 0, stream>>>(args.n, args.seed, args.first, args.a, args.b, args.p);
      SPO_CUDA_CHECK_LAUNCH("fill_normal_kernel");
    } else {
      fill_uniform_kernel<T>
          <<<grid, cuda_runtime::block_1d, 0, stream>>>(args.n, args.seed, args.first, args.a, args.b, args.p);
      SPO_CUDA_CHECK_LAUNCH("fill_uniform_kernel");
    }
  }
};

}  // namespace spo::cuda_kernels

namespace spo {

/// Fills t with standard normal numbers from the generator's stream and advances it (the cuda twin of
/// spo::fill_normal in tensor/ops.hpp: same numbers, same generator state afterwards).
template <Scalar T>
void fill_normal(TensorView<T, cuda> t, Generator& gen, T mean, T stddev) {
  const std::uint64_t first = gen.reserve(static_cast<std::uint64_t>(t.numel()));
  cuda_kernels::FillRandom<T>::run(
      {cuda_kernels::Distribution::normal, t.numel(), gen.seed, first, mean, stddev, t.data()});
}

/// Fills t with uniform numbers in [lo, hi) from the generator's stream and advances it (twin of spo::fill_uniform).
template <Scalar T>
void fill_uniform(TensorView<T, cuda> t, Generator& gen, T lo, T hi) {
  const std::uint64_t first = gen.reserve(static_cast<std::uint64_t>(t.numel()));
  cuda_kernels::FillRandom<T>::run({cuda_kernels::Distribution::uniform, t.numel(), gen.seed, first, lo, hi, t.data()});
}

}  // namespace spo
