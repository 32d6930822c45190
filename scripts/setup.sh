#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine: system packages (libtorch, compiler,
# cmake), npm dependencies, the native addon and the TypeScript build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -f /usr/include/ATen/ATen.h ] || [ -n "${LIBTORCH:-}" ] || python3 -c 'import torch' 2>/dev/null || need+=(libtorch-dev)
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
# `sd-native serve --redis` scale-out: test/server-redis.test.ts starts a real redis-server
command -v redis-server >/dev/null || need+=(redis-server)
# the web page test of `sd-native serve` drives Debian's headless Chromium (test/server-web.test.ts)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "${SD_CHROMIUM:-}" ] || need+=(chromium)
# Debian's libtorch calls libblas for float32 GEMMs; without OpenBLAS that is the unoptimised
# reference BLAS (2-3x slower pipelines: docs/BENCHMARKS.md). A pip torch brings its own BLAS.
if { [ -f /usr/include/ATen/ATen.h ] || [[ " ${need[*]-} " == *" libtorch-dev "* ]]; } && [ -z "${LIBTORCH:-}" ] &&
  ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libopenblas\.so\.0'; then
  need+=(libopenblas0-pthread)
fi
# clang with libFuzzer for test/fuzz-parsers.test.ts (scripts/fuzz.sh; ~60 MB). SD_FUZZ=0 skips it
# (the libtorch 2.6 leg of .ci/run: the parsers fuzzed are the same sources on both legs).
if [ "${SD_FUZZ:-1}" != 0 ] && ! { command -v clang++ >/dev/null && echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
  clang++ -fsanitize=fuzzer -x c++ - -o /dev/null 2>/dev/null; }; then
  need+=(clang libclang-rt-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# Dependencies without the install hook (it would compile with node-gyp); then the fast
# incremental CMake build of the addon and the TypeScript build. (The script is "compile", not
# "build": npm would run "prebuild" — prebuildify — before a "build".)
npm ci --ignore-scripts --no-audit --no-fund
# every core for the native build, also where cmake-js falls back to make (no ninja)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
npm run compile
