# SPDX-License-Identifier: MIT
# cmake -DCLANG_FORMAT=<clang-format-14> -DSOURCE_DIR=<repo> -P format_check.cmake
# Every C++ and CUDA source of the project (include/, experiments/, tests/, bench/) is formatted as .clang-format
# says; the files that are not are listed, with the command that formats them.

if(NOT CLANG_FORMAT OR NOT EXISTS "${CLANG_FORMAT}")
  message(FATAL_ERROR "clang-format-14 was not found (tools/setup.sh installs it); the format check cannot run")
endif()
set(sources)
foreach(dir include experiments tests bench)
  file(GLOB_RECURSE found ${SOURCE_DIR}/${dir}/*.hpp ${SOURCE_DIR}/${dir}/*.cpp ${SOURCE_DIR}/${dir}/*.h
       ${SOURCE_DIR}/${dir}/*.cu ${SOURCE_DIR}/${dir}/*.cuh)
  list(APPEND sources ${found})
endforeach()
list(FILTER sources EXCLUDE REGEX "/tests/fuzz/corpus/")
list(LENGTH sources n)
set(unformatted)
foreach(file IN LISTS sources)
  # The formatted text against the file (not --dry-run: clang-format 14 reports an unchanged "}  // namespace
  # spo::inline kernels" comment as a violation).
  execute_process(COMMAND ${CLANG_FORMAT} --style=file ${file} RESULT_VARIABLE rc OUTPUT_VARIABLE formatted
                  ERROR_QUIET WORKING_DIRECTORY ${SOURCE_DIR})
  file(READ ${file} original)
  if(NOT rc EQUAL 0 OR NOT "${formatted}" STREQUAL "${original}")
    file(RELATIVE_PATH rel ${SOURCE_DIR} ${file})
    list(APPEND unformatted ${rel})
  endif()
endforeach()
if(unformatted)
  list(LENGTH unformatted m)
  list(JOIN unformatted "\n  " text)
  message(FATAL_ERROR "${m} of ${n} files differ from .clang-format (fix: clang-format-14 -i <file>):\n  ${text}")
endif()
message(STATUS "all ${n} sources follow .clang-format")
