# SPDX-License-Identifier: MIT
# Helpers for the project's own targets (tests, benchmarks, experiments): warnings, -march=native, sanitizers.

add_library(spo_project_options INTERFACE)
target_compile_options(spo_project_options INTERFACE -Wall -Wextra -Wno-unused-parameter $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
if(SPO_NATIVE)
  target_compile_options(spo_project_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
if(SPO_SANITIZE)
  target_compile_options(spo_project_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                      -fno-sanitize-recover=undefined)
  target_link_options(spo_project_options INTERFACE -fsanitize=address,undefined)
endif()

# spo_add_executable(<name> SOURCES <files...> [LIBS <targets...>])
function(spo_add_executable name)
  cmake_parse_arguments(arg "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE spo::spo spo_project_options ${arg_LIBS})
endfunction()

# spo_add_experiment(<name> SOURCES <files...> [OUTPUT_NAME <binary>] [LIBS <targets...>]): the experiment binary
# <build>/bin/<binary> (default <name>), so that scripts find every experiment in one place. SPO_SOURCE_DIR lets it
# record the git revision of its sources; the target `experiments` builds them all.
if(NOT TARGET experiments)
  add_custom_target(experiments)
endif()
function(spo_add_experiment name)
  cmake_parse_arguments(arg "" "OUTPUT_NAME" "SOURCES;LIBS" ${ARGN})
  spo_add_executable(${name} SOURCES ${arg_SOURCES} LIBS ${arg_LIBS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
  if(arg_OUTPUT_NAME)
    set_target_properties(${name} PROPERTIES OUTPUT_NAME ${arg_OUTPUT_NAME})
  endif()
  target_compile_definitions(${name} PRIVATE SPO_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  if(TARGET spo_mpi)  # every experiment can run data parallel under mpirun / srun
    target_link_libraries(${name} PRIVATE spo_mpi)
  endif()
  add_dependencies(experiments ${name})
endfunction()
