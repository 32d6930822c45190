#!/usr/bin/env bash
# libFuzzer over the untrusted-file parsers (native/tools/fuzz/fuzz_parsers.cc): safetensors
# header and tensors, JSON / config reader, LoRA keys, single-file keys. ASan + UBSan.
#
#   bash scripts/fuzz.sh [--runs N | --seconds S] [TARGET...]
#
#   TARGET      safetensors json lora single_file (default: all four, one after another)
#   --runs N    executions per target (libFuzzer -runs)
#   --seconds S time per target (libFuzzer -max_total_time; default 20)
#
# Needs clang with libFuzzer (Debian: clang + libclang-rt-dev; scripts/setup.sh installs them)
# and build/libsd_core.a (npm run compile): the four parsers' sources are compiled here with
# coverage and sanitizers, the rest of the core comes from that archive. The seed corpus is made
# from ../shared/fixtures at run time (scripts/fuzz-seeds.mjs) in a temporary folder; a crash
# input is kept as build/fuzz/crash-<target>-* (make it a regression test). Exit status 1 on
# any finding, with libFuzzer's report; prints one line per target:
#   fuzz <target>: <runs> runs, 0 crashes, <seconds> s
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$(pwd)
runs=""; seconds=20; targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    safetensors|json|lora|single_file) targets+=("$1"); shift ;;
    *) echo "fuzz: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(safetensors json lora single_file)

CXX=${SD_FUZZ_CXX:-$(command -v clang++ || ls /usr/bin/clang++-* 2>/dev/null | sort -V | tail -1 || true)}
if [ -z "$CXX" ] || ! command -v "$CXX" >/dev/null; then
  echo "fuzz: clang++ not found (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 3
fi
BUILD=${SD_FUZZ_BUILD_DIR:-build}  # the cmake-js build folder whose libsd_core.a and CMakeCache.txt are used
[ -f "$BUILD/libsd_core.a" ] || { echo "fuzz: $BUILD/libsd_core.a missing (npm run compile first)" >&2; exit 3; }

# libtorch: the one the addon was built against (CMakeCache's Torch_DIR → its prefix)
TORCH_DIR=$(sed -n 's/^Torch_DIR:PATH=//p' "$BUILD/CMakeCache.txt")
TORCH_PREFIX=$(cd "$TORCH_DIR/../../.." && pwd)  # <prefix>/lib[/<triplet>]/cmake/Torch → <prefix>
[ -f "$TORCH_PREFIX/include/ATen/ATen.h" ] || TORCH_PREFIX=$(cd "$TORCH_DIR/../../../.." && pwd)
TORCH_LIB=$(dirname "$(sed -n 's/^TORCH_LIBRARY:FILEPATH=//p' "$BUILD/CMakeCache.txt")")
INCLUDES=(-Inative/core -Inative -isystem "$TORCH_PREFIX/include/torch/csrc/api/include")
# /usr/include is already the compiler's own (an -isystem of it breaks libstdc++'s #include_next)
[ "$TORCH_PREFIX" = /usr ] || INCLUDES+=(-isystem "$TORCH_PREFIX/include")

OUT=build/fuzz
mkdir -p "$OUT"
BIN=$OUT/fuzz_parsers
SOURCES=(native/tools/fuzz/fuzz_parsers.cc native/core/io/safetensors.cc native/core/util/json.cc
  native/core/config/config_reader.cc native/core/loaders/lora.cc native/core/loaders/single_file.cc
  native/core/loaders/single_file_keys.cc native/core/loaders/single_file_save.cc)
stale=0
[ -x "$BIN" ] || stale=1
for s in "${SOURCES[@]}" "$BUILD/libsd_core.a"; do [ $stale -eq 1 ] || [ "$s" -nt "$BIN" ] && stale=1; done
if [ $stale -eq 1 ]; then
  echo "fuzz: building $BIN with $CXX" >&2
  FLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -Wno-unused-command-line-argument)
  objs=()
  for s in "${SOURCES[@]}"; do
    o=$OUT/$(basename "${s%.cc}").o
    ${CMAKE_CXX_COMPILER_LAUNCHER:-} "$CXX" "${FLAGS[@]}" "${INCLUDES[@]}" -c "$s" -o "$o"
    objs+=("$o")
  done
  "$CXX" "${FLAGS[@]}" "${objs[@]}" "$BUILD/libsd_core.a" -L"$TORCH_LIB" -Wl,-rpath,"$TORCH_LIB" \
    -ltorch -ltorch_cpu -lc10 -lpthread -o "$BIN"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sd-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
node scripts/fuzz-seeds.mjs "$work/seeds" >&2
export SD_FUZZ_CONFIG_DIR="$PROJECT/../shared/fixtures/models/tiny-sd15"
# ASan: libtorch's allocator reserves large blocks; leaks of a dying process are not findings here
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export OMP_NUM_THREADS=1

status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus-$t"
  limit=(-max_total_time="$seconds"); [ -z "$runs" ] || limit=(-runs="$runs")
  log=$work/$t.log
  start=$(date +%s)
  set +e
  SD_FUZZ_TARGET=$t TMPDIR=$work "$BIN" "${limit[@]}" -max_len=65536 -rss_limit_mb=4096 -timeout=25 \
    -print_final_stats=1 -artifact_prefix="$OUT/crash-$t-" \
    "$work/corpus-$t" "$work/seeds/$t" >"$log" 2>&1
  rc=$?
  set -e
  n=$(awk '/^stat::number_of_executed_units/ {s+=$2} END {print s+0}' "$log")
  if [ $rc -ne 0 ]; then
    status=1
    tail -n 60 "$log" >&2
    echo "fuzz $t: $n runs, FINDING (rc $rc; input under $OUT/crash-$t-*), $(( $(date +%s) - start )) s"
  else
    echo "fuzz $t: $n runs, 0 crashes, $(( $(date +%s) - start )) s"
  fi
done
exit $status
