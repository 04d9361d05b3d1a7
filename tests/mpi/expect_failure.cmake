# SPDX-License-Identifier: MIT
# cmake -DCOMMAND="mpirun;...;<program>;<mode>" -DPATTERN=<regex> -DMAX_SECONDS=<n> -P expect_failure.cmake
# Passes when the command exits with an error within MAX_SECONDS and its output matches PATTERN.
string(TIMESTAMP start "%s")
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT ${MAX_SECONDS})
string(TIMESTAMP stop "%s")
math(EXPR elapsed "${stop} - ${start}")
set(text "${out}${err}")
message(STATUS "exit: ${result}; ${elapsed} s; output:\n${text}")
if(result STREQUAL "0")
  message(FATAL_ERROR "the job succeeded; it should have ended with an error")
endif()
if(result MATCHES "timeout|Process terminated due to timeout")
  message(FATAL_ERROR "the job hung: still running after ${MAX_SECONDS} s")
endif()
if(NOT text MATCHES "${PATTERN}")
  message(FATAL_ERROR "the output does not match '${PATTERN}'")
endif()
