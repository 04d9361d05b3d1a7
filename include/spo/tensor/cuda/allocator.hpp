// SPDX-License-Identifier: MIT
/// @brief raw_allocator<cuda>: plain cudaMalloc / cudaFree under caching_allocator<cuda> (no managed memory).
#pragma once

#include <cstddef>
#include <sstream>

#include <cuda_runtime_api.h>

#include "spo/core/device.hpp"
#include "spo/tensor/allocator.hpp"
#include "spo/tensor/cuda/runtime.hpp"

namespace spo {

/*!
  WHAT THIS REPRESENTS
    Device memory of the current CUDA device. caching_allocator<cuda> keeps freed blocks in its size-class pools,
    so cudaMalloc (which synchronises the device) runs only while the pools grow.
  ENSURES
    - allocate(bytes) returns memory aligned to at least 256 bytes (cudaMalloc's guarantee), or throws spo::error
      naming the size and the CUDA status (e.g. cudaErrorMemoryAllocation)
    - deallocate never throws (status ignored: at process exit the runtime may already be unloaded)
  REQUIRES
    - every block is used only from the stream order of the legacy default stream (or streams created blocking),
      because a block returned to the pool may be handed out again before earlier kernels on another stream finish
!*/
template <>
struct raw_allocator<cuda> {
  static constexpr std::size_t alignment = 256;
  static void* allocate(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t st = cudaMalloc(&p, bytes);
    if (st != cudaSuccess) {
      (void)cudaGetLastError();
      std::ostringstream call;
      call << "cudaMalloc(" << bytes << " bytes)";
      detail::throw_gpu_status(__FILE__, __LINE__, call.str().c_str(), "CUDA", cudaGetErrorName(st),
                               cudaGetErrorString(st));
    }
    return p;
  }
  static void deallocate(void* p, std::size_t) noexcept { (void)cudaFree(p); }
};

}  // namespace spo
