# SPDX-License-Identifier: MIT
# ctest script of the package_consumer tests (see CMakeLists.txt): install, configure the consumer, build, run.
# Optional: EXE (the consumer's executable, default spo_consumer), EXPECT (a regex its output must match, default the
# CPU consumer's line), CUDA_COMPILER and CUDA_ARCHITECTURES (for a consumer that enables CUDA).

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package_consumer: ${what} failed (${rc}):\n${out}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

if(NOT DEFINED EXE)
  set(EXE spo_consumer)
endif()
if(NOT DEFINED EXPECT)
  # y = x W^T + b with W = [[1, 2, 3], [4, 5, 6]], b = [0.5, -1], x = [1, 0, -1]: y = [-1.5, -3], sum -4.5.
  set(EXPECT "sum\\(y\\) = -4\\.5\n")
endif()
set(cuda_args)
if(DEFINED CUDA_COMPILER)
  set(cuda_args -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER} -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES})
endif()

file(REMOVE_RECURSE ${PREFIX} ${CONSUMER_BUILD})
run("cmake --install" ${CMAKE_COMMAND} --install ${SPO_BUILD_DIR} --prefix ${PREFIX})
run("configuring the consumer" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${CONSUMER_BUILD} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_PREFIX_PATH=${PREFIX}
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF ${cuda_args})

# The package must come from the scratch prefix, not from the source tree or a system install.
file(STRINGS ${CONSUMER_BUILD}/CMakeCache.txt spo_dir REGEX "^spo_DIR:")
string(REGEX REPLACE "^spo_DIR:[A-Z]+=" "" spo_dir "${spo_dir}")
cmake_path(IS_PREFIX PREFIX "${spo_dir}" NORMALIZE from_prefix)
if(NOT from_prefix)
  message(FATAL_ERROR "package_consumer: spo found at '${spo_dir}', not under ${PREFIX}")
endif()

run("building the consumer" ${CMAKE_COMMAND} --build ${CONSUMER_BUILD})
run("running the consumer" ${CONSUMER_BUILD}/${EXE})
if(NOT run_output MATCHES "${EXPECT}")
  message(FATAL_ERROR "package_consumer: unexpected output:\n${run_output}")
endif()
message(STATUS "package_consumer: ${run_output}")
