# SPDX-License-Identifier: MIT
# Failtests: snippets that must NOT compile, each with a control that must compile.
#
#   spo_add_failtest(<name> <file>)
#
# adds the CTest test failtest_<name>. It runs the C++ compiler with -fsyntax-only and the include directories,
# definitions and options of spo::spo (plus the project warning/sanitizer options) on <file> twice:
#   1. with -DSPO_FAILTEST_CONTROL: must compile (so an unrelated error cannot make the test pass);
#   2. without it: must fail, and the diagnostics must match the regex on the snippet's `// expect: <regex>` line
#      (the first line starting with `// expect: `, right after the SPDX line).
# The compiler runs directly (no nested build), so failtests may run in parallel with each other and with a build.

set(SPO_FAILTEST_RUNNER ${CMAKE_CURRENT_LIST_DIR}/spo_failtest_run.cmake)

# Writes <build>/spo_failtest_flags_CXX.rsp once: one compiler argument per line, evaluated from the targets' usage
# requirements at generate time (one file per enabled language, since options may depend on $<COMPILE_LANGUAGE>).
function(spo_failtest_flags_file out_var)
  set(rsp ${PROJECT_BINARY_DIR}/spo_failtest_flags_CXX.rsp)
  if(NOT TARGET spo_failtest_usage)
    add_library(spo_failtest_usage INTERFACE)
    target_link_libraries(spo_failtest_usage INTERFACE spo::spo spo_project_options)
    set(tgt spo_failtest_usage)
    # The compiler's implicit directories stay implicit (as in CMake's own compile lines): -isystem /usr/include
    # would break #include_next in the C++ standard headers.
    set(implicit)
    foreach(dir IN LISTS CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
      string(REGEX REPLACE "([][+.*()^$])" "\\\\\\1" dir "${dir}")
      list(APPEND implicit "^${dir}/?$")
    endforeach()
    list(JOIN implicit "|" implicit)
    set(inc "$<REMOVE_DUPLICATES:$<TARGET_PROPERTY:${tgt},INTERFACE_INCLUDE_DIRECTORIES>>")
    if(implicit)
      set(inc "$<FILTER:${inc},EXCLUDE,${implicit}>")
    endif()
    set(def "$<TARGET_PROPERTY:${tgt},INTERFACE_COMPILE_DEFINITIONS>")
    set(opt "$<TARGET_PROPERTY:${tgt},INTERFACE_COMPILE_OPTIONS>")
    string(TOUPPER "${CMAKE_BUILD_TYPE}" config)
    set(content "${CMAKE_CXX20_STANDARD_COMPILE_OPTION}\n${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${config}}\n")
    string(APPEND content "$<$<BOOL:${inc}>:-isystem\n\"$<JOIN:${inc},\"\n-isystem\n\">\"\n>")
    string(APPEND content "$<$<BOOL:${def}>:\"-D$<JOIN:${def},\"\n\"-D>\"\n>")
    string(APPEND content "$<$<BOOL:${opt}>:\"$<JOIN:${opt},\"\n\">\"\n>")
    file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/spo_failtest_flags_$<COMPILE_LANGUAGE>.rsp CONTENT "${content}")
  endif()
  set(${out_var} ${rsp} PARENT_SCOPE)
endfunction()

function(spo_add_failtest name file)
  get_filename_component(src ${file} ABSOLUTE)
  file(STRINGS ${src} expect REGEX "^// expect: ")
  if(NOT expect)
    message(FATAL_ERROR "failtest ${src}: no `// expect: <regex>` line")
  endif()
  spo_failtest_flags_file(rsp)
  add_test(NAME failtest_${name}
           COMMAND ${CMAKE_COMMAND} -DCOMPILER=${CMAKE_CXX_COMPILER} -DFLAGS=${rsp} -DSOURCE=${src}
                   -P ${SPO_FAILTEST_RUNNER})
  set_tests_properties(failtest_${name} PROPERTIES LABELS failtest)
endfunction()
