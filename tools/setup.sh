#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs spo's build and test dependencies from Debian packages. Idempotent: a second run installs nothing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev libboost-dev nlohmann-json3-dev doctest-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin                 # data-parallel runs across processes (spo::mpi) and their tests
  zlib1g-dev libpng-dev libdnnl-dev ocl-icd-opencl-dev
  dataset-fashion-mnist
  clang-14 libclang-rt-14-dev libomp-14-dev  # the libFuzzer harnesses of tests/fuzz (omp.h for clang: fuzz_config)
  clang-format-14                            # the format test (tests/build/format_check.cmake)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
