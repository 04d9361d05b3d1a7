# SPDX-License-Identifier: MIT
# cmake -DCOMPILER=<c++> -DFLAGS=<response file> -DSOURCE=<snippet> -P spo_failtest_run.cmake
# Passes iff SOURCE compiles with -DSPO_FAILTEST_CONTROL, fails without it, and the failure's diagnostics match the
# regex of the snippet's `// expect: <regex>` line. See SpoFailtest.cmake.

foreach(var COMPILER FLAGS SOURCE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "spo_failtest_run: -D${var}=... is required")
  endif()
endforeach()

file(STRINGS ${SOURCE} expect REGEX "^// expect: ")
list(GET expect 0 expect)
string(REGEX REPLACE "^// expect: " "" regex "${expect}")

# LC_ALL=C: ASCII quotes in GCC diagnostics, so that regexes need no Unicode.
set(compile ${CMAKE_COMMAND} -E env LC_ALL=C ${COMPILER} @${FLAGS} -fsyntax-only -fdiagnostics-color=never)

execute_process(COMMAND ${compile} -DSPO_FAILTEST_CONTROL ${SOURCE} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "failtest control (-DSPO_FAILTEST_CONTROL) does not compile, so the test proves nothing:\n${out}")
endif()

execute_process(COMMAND ${compile} ${SOURCE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "failtest: ${SOURCE} compiled, but it must not")
endif()
if(NOT out MATCHES "${regex}")
  message(FATAL_ERROR "failtest: compilation failed, but the diagnostics do not match /${regex}/:\n${out}")
endif()
message(STATUS "failtest: control compiles; snippet fails with a diagnostic matching /${regex}/")
