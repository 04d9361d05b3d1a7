#!/bin/sh
# SPDX-License-Identifier: MIT
# CTest driver: spo writes a safetensors file with every dtype, the Python `safetensors` package checks it.
# Exits 77 (reported as skipped) when the interpreter lacks safetensors, numpy or torch.
# usage: safetensors_interop.sh <python> <test_io_safetensors executable> <safetensors_interop.py> <work dir>
set -u
python=$1 test_exe=$2 script=$3 dir=$4
if ! "$python" -c "import safetensors, numpy, torch" >/dev/null 2>&1; then
  echo "SKIPPED: $python cannot import safetensors, numpy and torch"
  exit 77
fi
rm -rf "$dir" && mkdir -p "$dir" || exit 1
SPO_SAFETENSORS_INTEROP_DIR="$dir" "$test_exe" -tc="*written by spo*" || exit 1
"$python" "$script" check "$dir/from_spo.safetensors"
