# SPDX-License-Identifier: MIT
# cmake -DFUZZER=<harness> -DCORPUS=<seed dir> -DWORK=<scratch dir> [-DSECONDS=5] -P smoke.cmake
# The fuzz_smoke_* test: (1) every seed of CORPUS once (-runs=0), (2) SECONDS of mutation starting from the seeds.
# New inputs go to WORK/corpus (emptied first, so the source tree is never written) and a crash's reproducer to
# WORK/artifacts/. Fails when libFuzzer reports a crash, a sanitizer error, a leak, a timeout or out-of-memory.
foreach(var FUZZER CORPUS WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "smoke.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT DEFINED SECONDS)
  set(SECONDS 5)
endif()

file(REMOVE_RECURSE ${WORK}/corpus)
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1")
set(common -rss_limit_mb=2048 -timeout=10 -artifact_prefix=${WORK}/artifacts/)

message(STATUS "seed corpus: ${FUZZER} -runs=0 ${CORPUS}")
execute_process(COMMAND ${FUZZER} ${common} -runs=0 ${CORPUS} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message("${out}")
  message(FATAL_ERROR "${FUZZER} failed on a seed of ${CORPUS} (exit ${rc}); reproducer under ${WORK}/artifacts")
endif()
string(REGEX MATCH "INITED[^\n]*" inited "${out}")
message(STATUS "${inited}")

message(STATUS "mutation: ${FUZZER} -max_total_time=${SECONDS} ${WORK}/corpus ${CORPUS}")
execute_process(COMMAND ${FUZZER} ${common} -max_total_time=${SECONDS} -print_final_stats=1 ${WORK}/corpus ${CORPUS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message("${out}")
  message(FATAL_ERROR "${FUZZER} found a failing input (exit ${rc}); reproducer under ${WORK}/artifacts")
endif()
string(REGEX MATCH "Done [0-9]+ runs[^\n]*" done "${out}")
message(STATUS "${done}")
