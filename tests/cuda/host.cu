// SPDX-License-Identifier: MIT
// Host-side behaviour of the CUDA layer that needs no device: status-check messages, device queries that must not
// throw without a device, the can_implement preconditions of the ops (checked before any CUDA call), and how attention
// splits its problems into chunks and query tiles under the score-buffer cap.
#include <cublas_v2.h>
#include <doctest/doctest.h>
#if defined(SPO_TEST_HAVE_CUDNN)
#include <cudnn.h>
#endif

#include <string>
#include <vector>

#include "spo/diffusion/cuda/ddim_kernels.cuh"
#include "spo/tensor/cuda/attention.cuh"
#include "spo/tensor/cuda/elementwise.cuh"
#include "spo/tensor/cuda/gemm.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/cuda/rng.cuh"
#include "spo/tensor/cuda/runtime.hpp"

using namespace spo;

static_assert(Device<cuda>);
static_assert(!cuda::host_accessible);

namespace {
std::string message_of(auto&& f) {
  try {
    f();
  } catch (const spo::error& e) {
    return e.what();
  }
  return "<no spo::error>";
}
}  // namespace

TEST_CASE("SPO_CUDA_CHECK names the file, line, call and CUDA status; success passes through") {
  CHECK_NOTHROW(SPO_CUDA_CHECK(cudaSuccess));
  const std::string m = message_of([] { SPO_CUDA_CHECK(static_cast<cudaError_t>(cudaErrorInvalidValue)); });
  CHECK(m.find("host.cu:") != std::string::npos);
  CHECK(m.find("CUDA call failed") != std::string::npos);
  CHECK(m.find("static_cast<cudaError_t>(cudaErrorInvalidValue)") != std::string::npos);
  CHECK(m.find("cudaErrorInvalidValue") != std::string::npos);
  CHECK(m.find("invalid argument") != std::string::npos);
}

TEST_CASE("SPO_CUBLAS_CHECK names the cuBLAS status") {
  CHECK_NOTHROW(SPO_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
  const std::string m = message_of([] { SPO_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); });
  CHECK(m.find("cuBLAS call failed: CUBLAS_STATUS_INVALID_VALUE: CUBLAS_STATUS_INVALID_VALUE") != std::string::npos);
}

#if defined(SPO_TEST_HAVE_CUDNN)
TEST_CASE("SPO_CUDNN_CHECK names the cuDNN status") {
  CHECK_NOTHROW(SPO_CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
  const std::string m = message_of([] { SPO_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM); });
  CHECK(m.find("cuDNN call failed: CUDNN_STATUS_BAD_PARAM") != std::string::npos);
}
#endif

TEST_CASE("device queries: a count without throwing; errors name the failing call when there is no device") {
  const int n = cuda_runtime::device_count();
  CHECK(n >= 0);
  CHECK(cuda_runtime::cuda_available() == (n > 0));
  if (n == 0) {
    CHECK(!cuda_runtime::unavailable_reason().empty());
    CHECK(message_of([] { cuda_runtime::Stream s; }).find("cudaStreamCreate") != std::string::npos);
    CHECK(message_of([] { (void)cuda_runtime::device_description(0); }).find("cudaGetDeviceProperties") !=
          std::string::npos);
    CHECK(message_of([] { (void)Tensor<float, cuda>::uninitialized(Shape{4}); }).find("cudaMalloc(256 bytes)") !=
          std::string::npos);
  } else {
    CHECK(cuda_runtime::unavailable_reason().empty());
    CHECK(!cuda_runtime::device_name(0).empty());
  }
}

TEST_CASE("grid_1d: ceil(n / block), at least 1, capped") {
  CHECK(cuda_runtime::grid_1d(1) == 1);
  CHECK(cuda_runtime::grid_1d(256) == 1);
  CHECK(cuda_runtime::grid_1d(257) == 2);
  CHECK(cuda_runtime::grid_1d(std::int64_t{1} << 40) == (1u << 20));
}

TEST_CASE("Gemm::can_implement rejects bad leading dimensions, negative and oversized extents, TF32 for double") {
  float a[1]{}, b[1]{}, c[1]{};
  using Args = cuda_kernels::Gemm<float>::Arguments;
  std::string why;
  // A [m, k] = [4, 3] row-major needs lda >= 3; transposed A [k, m] needs lda >= 4.
  CHECK(cuda_kernels::Gemm<float>::can_implement(Args{false, false, 4, 5, 3, 1.f, a, 3, b, 5, 0.f, c, 5}));
  CHECK(!cuda_kernels::Gemm<float>::can_implement(Args{false, false, 4, 5, 3, 1.f, a, 2, b, 5, 0.f, c, 5}, &why));
  CHECK(why.find("lda 2 < 3") != std::string::npos);
  CHECK(!cuda_kernels::Gemm<float>::can_implement(Args{true, false, 4, 5, 3, 1.f, a, 3, b, 5, 0.f, c, 5}, &why));
  CHECK(why.find("lda 3 < 4") != std::string::npos);
  CHECK(!cuda_kernels::Gemm<float>::can_implement(Args{false, true, 4, 5, 3, 1.f, a, 3, b, 2, 0.f, c, 5}, &why));
  CHECK(why.find("ldb 2 < 3") != std::string::npos);
  CHECK(!cuda_kernels::Gemm<float>::can_implement(Args{false, false, 4, 5, 3, 1.f, a, 3, b, 5, 0.f, c, 4}, &why));
  CHECK(why.find("ldc 4 < n = 5") != std::string::npos);
  CHECK(!cuda_kernels::Gemm<float>::can_implement(Args{false, false, -1, 5, 3, 1.f, a, 3, b, 5, 0.f, c, 5}));
  CHECK(!cuda_kernels::Gemm<float>::can_implement(
      Args{false, false, std::int64_t{1} << 31, 1, 1, 1.f, a, 1, b, 1, 0.f, c, 1}, &why));
  CHECK(why.find("fit in int") != std::string::npos);
  CHECK(!cuda_kernels::Gemm<float>::can_implement(Args{false, false, 4, 5, 3, 1.f, nullptr, 3, b, 5, 0.f, c, 5}));
  // Empty products are valid whatever the pointers (nothing is read or written).
  CHECK(cuda_kernels::Gemm<float>::can_implement(
      Args{false, false, 0, 5, 3, 1.f, nullptr, 0, nullptr, 0, 0.f, nullptr, 5}));
  double da[1]{}, db[1]{}, dc[1]{};
  CHECK(!cuda_kernels::Gemm<double>::can_implement({false, false, 1, 1, 1, 1.0, da, 1, db, 1, 0.0, dc, 1, true}, &why));
  CHECK(why.find("float only") != std::string::npos);
  // run() checks before touching the device.
  CHECK_THROWS_WITH_AS(cuda_kernels::gemm<float>(false, false, 4, 5, 3, 1.f, a, 2, b, 5, 0.f, c, 5),
                       doctest::Contains("lda 2 < 3"), spo::error);
}

TEST_CASE("elementwise and random fills reject null pointers and negative counts before launching") {
  float y[1]{};
  std::string why;
  CHECK(cuda_kernels::Axpy<float>::can_implement({0, 1.f, nullptr, nullptr}));
  CHECK(!cuda_kernels::Axpy<float>::can_implement({4, 1.f, nullptr, y}, &why));
  CHECK(why.find("null pointer for 4 elements") != std::string::npos);
  CHECK(!cuda_kernels::Fill<float>::can_implement({-1, 0.f, y}, &why));
  CHECK(why.find("negative") != std::string::npos);
  CHECK(!cuda_kernels::Activation<cuda_kernels::SiluOp, float>::can_implement_backward({4, y, nullptr, y}));
  CHECK(cuda_kernels::Activation<cuda_kernels::SiluOp, float>::can_implement_forward({4, y, nullptr, y}));
  CHECK(!cuda_kernels::FillRandom<float>::can_implement(
      {cuda_kernels::Distribution::normal, 3, 0, 0, 0.f, 1.f, nullptr}));
}

TEST_CASE("DDIM ops: coefficients from transitions; can_implement checks batch, per and stddev > 0") {
  struct Tr {
    double alpha_prev, dir, std;
  };
  static_assert(diffusion::cuda_kernels::TransitionLike<Tr>);
  const std::vector<Tr> trs{{0.25, 0.5, 0.1}, {0.81, 0.3, 0.2}};
  const auto c = diffusion::cuda_kernels::ddim_coefficients(trs);
  REQUIRE(c.size() == 2);
  CHECK(c[0].sqrt_alpha_prev == 0.5);
  CHECK(c[1].sqrt_alpha_prev == doctest::Approx(0.9).epsilon(1e-15));
  CHECK(c[1].dir == 0.3);
  CHECK(c[1].stddev == 0.2);

  float x[8]{}, lp[2]{};
  std::string why;
  using LogProb = diffusion::cuda_kernels::DdimLogProb<float>;
  CHECK(LogProb::can_implement({2, 4, x, x, lp, c, nullptr}));
  CHECK(!LogProb::can_implement({3, 4, x, x, lp, c, nullptr}, &why));
  CHECK(why.find("2 coefficient sets for batch 3") != std::string::npos);
  CHECK(!LogProb::can_implement({2, 0, x, x, lp, c, nullptr}, &why));
  CHECK(why.find("per = 0") != std::string::npos);
  auto zero_std = c;
  zero_std[1].stddev = 0.0;
  CHECK(!LogProb::can_implement({2, 4, x, x, lp, zero_std, nullptr}, &why));
  CHECK(why.find("stddev of batch element 1") != std::string::npos);
  CHECK(LogProb::chunks(1) == 1);
  CHECK(LogProb::chunks(1024) == 1);
  CHECK(LogProb::chunks(1025) == 2);
  CHECK(LogProb::chunks(std::int64_t{1} << 30) == 256);
  CHECK(LogProb::workspace_size({2, 3 * 64 * 64, x, x, lp, c, nullptr}) == 2 * 12 * sizeof(double));
  CHECK(!diffusion::cuda_kernels::DdimMean<float>::can_implement({2, 4, x, nullptr, x, c}));
}

TEST_CASE("attention tiling: whole problems per chunk under the cap, else query tiles that fit it, at least one row") {
  using cuda_kernels::AttentionShape;
  using cuda_kernels::detail::attention_tiling;
  auto& cap = cuda_kernels::attention_score_buffer_bytes();
  const std::size_t saved = cap;
  cap = std::size_t{512} << 20;
  // SD1.5 self-attention at 512 x 512, batch 8 under CFG x 8 heads: 4096^2 FP32 scores are 64 MiB a problem.
  auto t = attention_tiling<float>(AttentionShape{16, 8, 4096, 4096, 40, false});
  CHECK(t.problems == 8);
  CHECK(t.rows == 4096);
  t = attention_tiling<spo::half>(AttentionShape{16, 8, 4096, 4096, 40, false});  // scores in FP32 for half too
  CHECK(t.problems == 8);
  // SDXL's VAE mid-block attention at 1024 x 1024: one head of 16384 tokens, 1 GiB of scores untiled.
  t = attention_tiling<float>(AttentionShape{1, 1, 16384, 16384, 512, false});
  CHECK(t.problems == 1);
  CHECK(t.rows == 8192);
  t = attention_tiling<double>(AttentionShape{2, 1, 16384, 16384, 512, false});  // 8-byte scores: half the rows
  CHECK(t.problems == 1);
  CHECK(t.rows == 4096);
  // A cap below one row still runs one row at a time; fewer problems than fit are all one chunk.
  cap = 100;
  t = attention_tiling<float>(AttentionShape{1, 1, 7, 1000, 8, true});
  CHECK(t.problems == 1);
  CHECK(t.rows == 1);
  cap = std::size_t{1} << 30;
  t = attention_tiling<float>(AttentionShape{2, 3, 77, 77, 64, true});
  CHECK(t.problems == 6);
  CHECK(t.rows == 77);
  cap = saved;
}
