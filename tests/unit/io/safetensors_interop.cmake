# SPDX-License-Identifier: MIT
# Interop test: the Python `safetensors` package reads a file spo wrote. Skipped (exit 77) without that package.
set(SPO_REFERENCE_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with safetensors, numpy and torch for the interop test")
add_test(NAME io_safetensors_python_interop
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/safetensors_interop.sh ${SPO_REFERENCE_PYTHON}
                 $<TARGET_FILE:test_io_safetensors> ${PROJECT_SOURCE_DIR}/tools/reference/safetensors_interop.py
                 ${CMAKE_CURRENT_BINARY_DIR}/safetensors_interop)
set_tests_properties(io_safetensors_python_interop PROPERTIES LABELS "unit;interop" SKIP_RETURN_CODE 77)
