// SPDX-License-Identifier: MIT
/// @brief CUDA runtime support: status-check macros, device queries, a Stream RAII wrapper, 1-D launch geometry.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

#include <cuda_runtime_api.h>

#include "spo/core/error.hpp"

namespace spo::detail {

/// Throws spo::error "<file>:<line>: <library> call failed: <call>: <status name> (<status text>)"; the text in
/// parentheses is left out when empty.
[[noreturn]] inline void throw_gpu_status(const char* file, int line, const char* call, const char* library,
                                          const char* status_name, const char* status_text) {
  std::ostringstream os;
  os << file << ":" << line << ": " << library << " call failed: " << call << ": " << status_name;
  if (status_text != nullptr && *status_text != '\0') os << " (" << status_text << ")";
  throw error(os.str());
}

}  // namespace spo::detail

/// SPO_CUDA_CHECK(cudaMemcpy(...)): throws spo::error naming file, line, the call and the cudaError_t.
/// A failed call's status is also cleared from cudaGetLastError(), so a caught error does not resurface at the
/// next launch check (sticky errors, e.g. an illegal address, stay set by the runtime regardless).
#define SPO_CUDA_CHECK(...)                                                                                         \
  do {                                                                                                              \
    const cudaError_t spo_cuda_status_ = (__VA_ARGS__);                                                             \
    if (spo_cuda_status_ != cudaSuccess) [[unlikely]] {                                                             \
      (void)cudaGetLastError();                                                                                     \
      ::spo::detail::throw_gpu_status(__FILE__, __LINE__, #__VA_ARGS__, "CUDA", cudaGetErrorName(spo_cuda_status_), \
                                      cudaGetErrorString(spo_cuda_status_));                                        \
    }                                                                                                               \
  } while (0)

/// SPO_CUBLAS_CHECK(cublasSgemm(...)): the same for a cublasStatus_t; needs <cublas_v2.h> where it is used.
#define SPO_CUBLAS_CHECK(...)                                                     \
  do {                                                                            \
    const cublasStatus_t spo_cublas_status_ = (__VA_ARGS__);                      \
    if (spo_cublas_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                 \
      ::spo::detail::throw_gpu_status(__FILE__, __LINE__, #__VA_ARGS__, "cuBLAS", \
                                      cublasGetStatusName(spo_cublas_status_),    \
                                      cublasGetStatusString(spo_cublas_status_)); \
  } while (0)

/// SPO_CUDNN_CHECK(cudnnConvolutionForward(...)): the same for a cudnnStatus_t; needs <cudnn.h> where it is used.
#define SPO_CUDNN_CHECK(...)                                                       \
  do {                                                                             \
    const cudnnStatus_t spo_cudnn_status_ = (__VA_ARGS__);                         \
    if (spo_cudnn_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                    \
      ::spo::detail::throw_gpu_status(__FILE__, __LINE__, #__VA_ARGS__, "cuDNN",   \
                                      cudnnGetErrorString(spo_cudnn_status_), ""); \
  } while (0)

/// SPO_CUDA_CHECK_LAUNCH("kernel name"): checks the launch just issued (configuration errors). With
/// SPO_CUDA_SYNC_LAUNCHES defined it also synchronises, so that an execution error names its kernel.
#if defined(SPO_CUDA_SYNC_LAUNCHES)
#define SPO_CUDA_CHECK_LAUNCH(kernel_name) ::spo::detail::check_launch(__FILE__, __LINE__, kernel_name, true)
#else
#define SPO_CUDA_CHECK_LAUNCH(kernel_name) ::spo::detail::check_launch(__FILE__, __LINE__, kernel_name, false)
#endif

namespace spo::detail {

inline void check_launch(const char* file, int line, const char* kernel_name, bool synchronize) {
  cudaError_t st = cudaGetLastError();
  const char* stage = "launch of ";
  if (st == cudaSuccess && synchronize) {
    st = cudaDeviceSynchronize();
    stage = "execution of ";
  }
  if (st != cudaSuccess) [[unlikely]] {
    (void)cudaGetLastError();
    throw_gpu_status(file, line, (std::string(stage) + kernel_name).c_str(), "CUDA", cudaGetErrorName(st),
                     cudaGetErrorString(st));
  }
}

}  // namespace spo::detail

namespace spo::cuda_runtime {

/// Number of visible CUDA devices; 0 when there is none or no usable driver (never throws).
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

/// True when at least one CUDA device can be used by this process.
inline bool cuda_available() noexcept { return device_count() > 0; }

/// Why no device is usable (the cudaGetDeviceCount status), or "" when one is.
inline std::string unavailable_reason() {
  int n = 0;
  const cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string(cudaGetErrorName(st)) + " (" + cudaGetErrorString(st) + ")";
  }
  return n > 0 ? std::string() : std::string("no CUDA device");
}

/// One line for benchmark reports, e.g. "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB, runtime 13.0, driver 13.0".
inline std::string device_description(int device = 0) {
  cudaDeviceProp p{};
  SPO_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  int runtime = 0, driver = 0;
  SPO_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  SPO_CUDA_CHECK(cudaDriverGetVersion(&driver));
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << p.name << ", sm_" << p.major << p.minor << ", " << p.multiProcessorCount << " SMs, "
     << static_cast<double>(p.totalGlobalMem) / static_cast<double>(std::size_t{1} << 30) << " GiB, runtime "
     << runtime / 1000 << "." << (runtime % 1000) / 10 << ", driver " << driver / 1000 << "." << (driver % 1000) / 10;
  return os.str();
}

/// The device name alone ("NVIDIA H100 80GB HBM3").
inline std::string device_name(int device = 0) {
  cudaDeviceProp p{};
  SPO_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return p.name;
}

/// Waits for all work on the current device.
inline void synchronize() { SPO_CUDA_CHECK(cudaDeviceSynchronize()); }

/*!
  WHAT THIS REPRESENTS
    An owned cudaStream_t (created blocking, so it orders with the legacy default stream that spo's tensors
    and ops use unless given a stream). Move-only; destroyed with the object.
!*/
class Stream {
 public:
  Stream() { SPO_CUDA_CHECK(cudaStreamCreate(&stream_)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  Stream& operator=(Stream&& other) noexcept {
    if (this != &other) {
      reset();
      stream_ = std::exchange(other.stream_, nullptr);
    }
    return *this;
  }
  ~Stream() { reset(); }

  cudaStream_t get() const { return stream_; }
  operator cudaStream_t() const { return stream_; }
  void synchronize() const { SPO_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  void reset() noexcept {
    if (stream_) (void)cudaStreamDestroy(stream_);  // a destructor cannot throw; errors resurface at the next check
    stream_ = nullptr;
  }
  cudaStream_t stream_ = nullptr;
};

/// Process-wide permission for FP32 products to run on TF32 tensor cores (cuBLAS and cuDNN paths of spo::cuda
/// layers). Off by default, so float results stay within FP32 rounding of the CPU; the NVIDIA_TF32_OVERRIDE=0
/// environment variable forbids TF32 regardless.
inline bool& tf32_flag() {
  static bool allowed = false;
  return allowed;
}
inline void set_allow_tf32(bool on) { tf32_flag() = on; }
inline bool allow_tf32() { return tf32_flag(); }

/// Threads per block of spo's 1-D elementwise kernels.
inline constexpr int block_1d = 256;

/// Blocks for n elements processed by grid-stride loops: ceil(n / block), capped (each thread then loops).
inline unsigned grid_1d(std::int64_t n, int block = block_1d) {
  constexpr std::int64_t max_blocks = std::int64_t{1} << 20;
  return static_cast<unsigned>(std::clamp<std::int64_t>((n + block - 1) / block, 1, max_blocks));
}

}  // namespace spo::cuda_runtime
