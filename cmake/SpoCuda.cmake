# SPDX-License-Identifier: MIT
# spo_cuda: what a target that compiles spo's CUDA headers (include/spo/*/cuda/) links, on top of spo::spo.
#   - C++20 for CUDA sources;
#   - --expt-relaxed-constexpr: core/rng.hpp's SPO_HOST_DEVICE Philox calls std::array's constexpr operator[];
#   - cudart and cuBLAS.

add_library(spo_cuda INTERFACE)
target_link_libraries(spo_cuda INTERFACE spo::spo CUDA::cudart CUDA::cublas)
# CMake 3.25 does not know cuda_std_20 for nvcc 12+, so the flag is given directly.
target_compile_options(spo_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --expt-relaxed-constexpr>)

# cuDNN 9 ships beside the toolkit (no CUDA:: target for it in CMake 3.25).
find_path(SPO_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
find_library(SPO_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR})
if(SPO_CUDNN_INCLUDE_DIR AND SPO_CUDNN_LIBRARY)
  add_library(spo_cudnn INTERFACE)
  target_include_directories(spo_cudnn INTERFACE ${SPO_CUDNN_INCLUDE_DIR})
  target_link_libraries(spo_cudnn INTERFACE ${SPO_CUDNN_LIBRARY})
endif()

# NCCL ships with the CUDA toolkit (nccl.h, libnccl): the NCCL communicator (spo/dist/cuda/nccl_communicator.hpp,
# SPO_WITH_NCCL) for programs that also link spo::mpi (rank 0's ncclUniqueId goes out over MPI).
find_path(SPO_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
find_library(SPO_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
if(SPO_NCCL_INCLUDE_DIR AND SPO_NCCL_LIBRARY)
  add_library(spo_nccl INTERFACE)
  target_include_directories(spo_nccl INTERFACE ${SPO_NCCL_INCLUDE_DIR})
  target_link_libraries(spo_nccl INTERFACE ${SPO_NCCL_LIBRARY} CUDA::cudart)
  target_compile_definitions(spo_nccl INTERFACE SPO_WITH_NCCL=1)
endif()

# spo_cuda_kernels: the device kernels instantiated for float and double (include/spo/<module>/cuda/instantiate/*.cu:
# tensor, diffusion, optim, spm), so that everything above them (layers, models, trainers on spo::cuda) is plain C++
# built by the host compiler against the declarations in include/spo/<module>/cuda/*.hpp.
file(GLOB spo_cuda_kernel_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/include/spo/*/cuda/instantiate/*.cu)
add_library(spo_cuda_kernels STATIC ${spo_cuda_kernel_sources})
target_link_libraries(spo_cuda_kernels PUBLIC spo_cuda)
if(TARGET spo_cudnn)
  target_link_libraries(spo_cuda_kernels PUBLIC spo_cudnn)
endif()
target_compile_options(spo_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>)
