#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the CUDA tests and GPU benchmarks on a machine with the project's dependencies and nvcc (no GPU needed)
# and packs them, with the shared libraries they need beyond glibc and the CUDA runtime, into one archive that
# tools/gpu_check.sh --bundle runs on a GPU machine lacking those dependencies.
#   tools/gpu_bundle.sh [build-dir] [archive]      defaults: build-gpu, .gpu/bundle.tar.xz
# SPO_BUNDLE_EXPERIMENTS=1 also builds and packs the GPU experiment binary spo_cuda (tools/gpu_experiments.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
archive=${2:-.gpu/bundle.tar.xz}
arch=${SPO_CUDA_ARCH:-90}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="${CUDACXX:-/usr/local/cuda/bin/nvcc}" \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DSPO_WITH_CUDA=ON -DSPO_BUILD_TESTS=ON -DSPO_BUILD_BENCH=ON \
  -DSPO_BUILD_EXPERIMENTS=$([[ ${SPO_BUNDLE_EXPERIMENTS:-0} == 1 ]] && echo ON || echo OFF) >/dev/null
targets=(spo_cuda_tests bench_unet_cuda)
[[ ${SPO_BUNDLE_EXPERIMENTS:-0} == 1 ]] && targets+=(experiment_spo_cuda)
cmake --build "$build" --target "${targets[@]}" -j "${SPO_JOBS:-$(nproc)}"
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib"
find "$build/tests/cuda" -maxdepth 1 -type f -name 'test_cuda_*' -perm -u+x -exec cp {} "$stage/bin/" \;
cp "$build/bench/cuda/bench_unet_cuda" "$stage/bin/"
[[ ${SPO_BUNDLE_EXPERIMENTS:-0} == 1 ]] && cp "$build/bin/spo_cuda" "$stage/bin/"
# Shared libraries beyond glibc, the compiler runtime and CUDA (those come with the GPU machine's driver/toolkit).
for exe in "$stage"/bin/*; do
  ldd "$exe" | awk '/=> \//{print $3}'
done | sort -u | grep -v -E '/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+)\.so|libcud|libcublas|libnv' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
strip --strip-unneeded "$stage"/bin/* 2>/dev/null || true
git rev-parse --short HEAD >"$stage/commit"
mkdir -p "$(dirname "$archive")"
tar -C "$stage" -cJf "$archive" .
rm -rf "$stage"
echo "bundle: $archive ($(du -h "$archive" | cut -f1)), $(tar -tJf "$archive" | grep -c '^./bin/.') executables"
