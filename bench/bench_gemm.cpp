// SPDX-License-Identifier: MIT
/// @brief Square float GEMM throughput: spo's path, plain Eigen, oneDNN matmul, OpenBLAS (when built with it),
/// and the machine's AVX-512 FMA peak. Counter GFLOPS = 2 n^3 per product.
#include <omp.h>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "spo/core/parallel.hpp"
#include "spo/core/rng.hpp"
#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/ops.hpp"

#include <immintrin.h>

#ifdef SPO_BENCH_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

using namespace spo;

namespace {

struct Operands {
  Tensor<float> a, b, c;
  explicit Operands(std::int64_t n) {
    Generator g{7, 0};
    a = randn<float>(Shape{n, n}, g);
    b = randn<float>(Shape{n, n}, g);
    c = Tensor<float>(Shape{n, n});
  }
};

void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOPS"] =
      benchmark::Counter(flops_per_iter * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Tensor_Gemm_Spo(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  Operands o(n);
  cpu_kernels::gemm<float>(false, false, n, n, n, 1.f, o.a.data(), n, o.b.data(), n, 0.f, o.c.data(), n);
  for (auto _ : state) {
    cpu_kernels::gemm<float>(false, false, n, n, n, 1.f, o.a.data(), n, o.b.data(), n, 0.f, o.c.data(), n);
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * n * n * n);
}

void BM_Tensor_Gemm_Eigen(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  Operands o(n);
  Eigen::setNbThreads(num_threads());
  for (auto _ : state) {
    cpu_kernels::gemm_eigen<float>(false, false, n, n, n, 1.f, o.a.data(), n, o.b.data(), n, 0.f, o.c.data(), n);
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * n * n * n);
}

void BM_Tensor_Gemm_DnnlMatmul(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  Operands o(n);
  cpu_kernels::gemm_dnnl_matmul(false, false, n, n, n, 1.f, o.a.data(), n, o.b.data(), n, 0.f, o.c.data(), n);
  for (auto _ : state) {
    cpu_kernels::gemm_dnnl_matmul(false, false, n, n, n, 1.f, o.a.data(), n, o.b.data(), n, 0.f, o.c.data(), n);
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * n * n * n);
}

#ifdef SPO_BENCH_HAVE_OPENBLAS
void BM_Tensor_Gemm_OpenBLAS(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  Operands o(n);
  openblas_set_num_threads(num_threads());
  const int ni = static_cast<int>(n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.f, o.a.data(), ni, o.b.data(), ni, 0.f,
                o.c.data(), ni);
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * n * n * n);
}
BENCHMARK(BM_Tensor_Gemm_OpenBLAS)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->UseRealTime();
#endif

/// The widest FMA vector the build targets (-march=native): AVX-512 (16 floats) or AVX2 + FMA (8 floats).
#if defined(__AVX512F__)
using FmaVector = __m512;
constexpr int fma_lanes = 16;
inline FmaVector fma_set1(float v) { return _mm512_set1_ps(v); }
inline FmaVector fma_madd(FmaVector a, FmaVector b, FmaVector c) { return _mm512_fmadd_ps(a, b, c); }
inline FmaVector fma_add(FmaVector a, FmaVector b) { return _mm512_add_ps(a, b); }
#elif defined(__AVX2__) && defined(__FMA__)
using FmaVector = __m256;
constexpr int fma_lanes = 8;
inline FmaVector fma_set1(float v) { return _mm256_set1_ps(v); }
inline FmaVector fma_madd(FmaVector a, FmaVector b, FmaVector c) { return _mm256_fmadd_ps(a, b, c); }
inline FmaVector fma_add(FmaVector a, FmaVector b) { return _mm256_add_ps(a, b); }
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
/// 12 independent accumulator chains of full-width FMAs per thread (enough to cover FMA latency x 2 pipes): the
/// float peak of the widest vectors this build uses.
void BM_Tensor_FmaPeak(benchmark::State& state) {
  constexpr int chains = 12;
  constexpr std::int64_t iters = 1 << 20;
  const int threads = num_threads();
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      FmaVector acc[chains];
      for (int j = 0; j < chains; ++j) acc[j] = fma_set1(static_cast<float>(j));
      const FmaVector x = fma_set1(0.999999f), y = fma_set1(1e-7f);
      for (std::int64_t i = 0; i < iters; ++i)
        for (int j = 0; j < chains; ++j) acc[j] = fma_madd(acc[j], x, y);
      FmaVector s = acc[0];
      for (int j = 1; j < chains; ++j) s = fma_add(s, acc[j]);
      benchmark::DoNotOptimize(s);
    }
  }
  set_flops(state, 2.0 * fma_lanes * chains * static_cast<double>(iters) * threads);
  state.counters["lanes"] = fma_lanes;
}
BENCHMARK(BM_Tensor_FmaPeak)->UseRealTime();
#endif

}  // namespace

BENCHMARK(BM_Tensor_Gemm_Spo)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->UseRealTime();
BENCHMARK(BM_Tensor_Gemm_Eigen)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->UseRealTime();
BENCHMARK(BM_Tensor_Gemm_DnnlMatmul)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->UseRealTime();
