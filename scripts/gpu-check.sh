#!/usr/bin/env bash
# issues 7 and 13 in ONE device call (an H200, 15 minutes of device time in all, one command at
# most 600 s): build on the GPU machine against its CUDA libtorch, prove the CUDA path right on
# the fixtures, make a full-size SD 1.5 random model there (on the GPU), and race diffusers —
# inside an internal budget of SD_GPU_BUDGET_S (540 s) so the summary always comes back.
#
#   here:   bash scripts/gpu-pack.sh                       (fills .carry/, gitignored, < 64 MiB)
#   device: run(command="bash scripts/gpu-check.sh", carry=[".carry"], timeout_s=600)
#
# Phases (each logs, times itself and the script goes on where that makes sense; a summary table
# is printed last and written to $OUT/summary.md). A phase that does not fit in what is left of
# the budget, or whose prerequisite failed, is skipped with a line saying so (log and summary);
# every command runs under a timeout that ends before the budget does.
#   env       GPU, driver, nvcc, cmake, python torch (version, CUDA, cuDNN, C++ ABI), diffusers
#   unpack    node (+ N-API headers), node_modules, fixtures → ../shared/fixtures, diffusers src
#   build     plain cmake (no cmake-js/npm): Release, -j16, against python3's torch; checks that
#             the addon loads and reports cuda: true
#   parity    vitest test/gpu.test.ts: every fixture pipeline case on cuda in float32 (TF32 off),
#             float16, bfloat16 (bounds in the test file); errors per case → parity.json
#   model     create-model --preset sd15 --scale full --device cuda --out /tmp/sd15 (weights drawn
#             on the GPU: the CLI's --device, createModel's `device` option)
#   race      sd-native (scripts/gpu/bench-race.ts) then diffusers eager and torch.compile
#             (scripts/gpu/diffusers_race.py) on the same folder: 512², 50 steps, CFG 7.5, fp16
#   suite     (SD_GPU_FULL_SUITE=1, if time is left) the whole vitest suite with this build
#   sdxl-*    (SD_GPU_SDXL=1, off by default, in the same call and only if time is left; issue 6
#             item 6) a full SDXL model made on the GPU, then peak GPU memory at 1024² for float16
#             and float16 + fp8 UNet storage (scripts/gpu/sdxl-vram.ts under nvidia-smi)
# $OUT (at most 8 files come back): gpu-check.log env.txt build.log parity.log parity.json
#   race.log race.jsonl summary.md
# Dry run without a GPU (checks this script and the carried files): SD_GPU_DRYRUN=1 with
#   SD_NATIVE_ADDON=<a built sd_native.node>: no cmake, CPU, a tiny model, 64², 2 steps; the
#   diffusers side too with SD_GPU_PYTHON=<a python3 with torch> (e.g. Debian's /usr/bin/python3).
# Knobs: SD_GPU_BUDGET_S (default 540: the device command limit is 600 s; 60 s left for the start
#   of the command and what comes back), SD_GPU_SKIP="parity diffusers-compile ..." (phase names),
#   SD_GPU_REPEATS (3), SD_DIFFUSERS_COMPILE_MODE.
# The device has no network: the Hugging Face libraries are told so (HF_HUB_OFFLINE and friends)
# so that nothing waits for a connection timeout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
CARRY="$ROOT/.carry"
START=$(date +%s)
BUDGET="${SD_GPU_BUDGET_S:-540}"
REPEATS="${SD_GPU_REPEATS:-3}"
SKIP=" ${SD_GPU_SKIP:-} "
MODEL_DIR=/tmp/sd15
DRY="${SD_GPU_DRYRUN:-0}"
SCALE=full; RACE_ARGS=()
SDXL_DIR=/tmp/sdxl; SDXL_ARGS=()
MODEL_DEVICE=cuda
PY="${SD_GPU_PYTHON:-python3}"; DIFF_ARGS=()
if [[ "$DRY" == 1 ]]; then SCALE=tiny; MODEL_DIR=/tmp/sd15-dry; MODEL_DEVICE=cpu; RACE_ARGS=(--device cpu --dtype float32 --size 64 --steps 2); REPEATS=1;
  DIFF_ARGS=(--device cpu --dtype float32 --size 64 --steps 2);
  SDXL_DIR=/tmp/sdxl-dry; SDXL_ARGS=(--device cpu --dtype float32 --size 64 --steps 2); fi
BUILD_DIR="$ROOT/build-gpu"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
export PYTHONUNBUFFERED=1
# no network on the device: huggingface_hub / transformers / datasets must not try (each attempt
# waits for a timeout)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

SUMMARY=()
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
# limit RESERVE: seconds a command may take while leaving RESERVE for what follows; never past the
# budget: when RESERVE cannot be kept, what is left minus SUMMARY_S (at least 1)
SUMMARY_S=5
limit() {
  local l; l=$(left)
  local t=$(( l - $1 ))
  (( t < 20 )) && t=$(( l - SUMMARY_S ))
  (( t < 1 )) && t=1
  echo "$t"
}
log() { printf '[gpu-check %4ss] %s\n' "$(elapsed)" "$*"; }
# phase NAME MIN_SECONDS FUNCTION: runs FUNCTION in a subshell with errexit, records ok/FAIL/skip.
phase() {
  local name=$1 need=$2 fn=$3 t0 rc
  if [[ "$SKIP" == *" $name "* ]]; then SUMMARY+=("$name|skipped (SD_GPU_SKIP)|0"); log "== $name: skipped"; return 0; fi
  if (( $(left) < need )); then SUMMARY+=("$name|skipped (only $(left) s of the budget left, needs $need)|0"); log "== $name: skipped, only $(left) s of the budget left (needs $need)"; return 0; fi
  log "== $name"
  t0=$(date +%s)
  set +e
  ( set -euo pipefail; "$fn" )
  rc=$?
  set -e
  local verdict=ok
  if (( rc == 124 || rc == 137 )); then verdict="TIMEOUT (rc $rc: cut to fit the budget)"; elif (( rc != 0 )); then verdict="FAIL (rc $rc)"; fi
  SUMMARY+=("$name|$verdict|$(( $(date +%s) - t0 ))")
  log "== $name: $verdict in $(( $(date +%s) - t0 )) s"
  return 0
}
# skip NAME WHY: a phase that will not run, said in the log and the summary (never silently)
skip() { SUMMARY+=("$1|skipped ($2)|0"); log "== $1: skipped ($2)"; }
ok() { local n; for n in "$@"; do printf '%s\n' "${SUMMARY[@]}" | grep -q "^$n|ok|" || return 1; done; }

# ---- env -----------------------------------------------------------------------------------------
p_env() {
  {
    echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"; echo "cpus: $(nproc)"
    timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    command -v nvcc && nvcc --version | tail -2 || echo "nvcc: none"
    cmake --version | head -1; command -v ninja && ninja --version || true
    echo "g++: $(g++ --version 2>/dev/null | head -1 || echo none)"
    echo "system node: $(command -v node || echo none) $(node -v 2>/dev/null || true)"
    echo "HF offline: HF_HUB_OFFLINE=$HF_HUB_OFFLINE TRANSFORMERS_OFFLINE=$TRANSFORMERS_OFFLINE HF_DATASETS_OFFLINE=$HF_DATASETS_OFFLINE"
    timeout 90 python3 - <<'PY' || true
import torch, os
print("python torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
print("torch cmake prefix", torch.utils.cmake_prefix_path)
for m in ("diffusers", "transformers", "huggingface_hub", "safetensors", "accelerate"):
    try:
        mod = __import__(m); print(m, getattr(mod, "__version__", "?"), os.path.dirname(mod.__file__))
    except Exception as e:
        print(m, "MISSING", type(e).__name__, e)
PY
    cat "$CARRY/MANIFEST.txt" 2>/dev/null || echo "no .carry/MANIFEST.txt (was scripts/gpu-pack.sh run and .carry carried?)"
  } > "$OUT/env.txt" 2>&1
  cat "$OUT/env.txt"
}

# ---- unpack --------------------------------------------------------------------------------------
unxz() {  # xz -dc, or python's lzma where xz is not installed
  if command -v xz >/dev/null; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}
p_unpack() {
  [[ -d "$CARRY" ]] || { echo ".carry missing: run scripts/gpu-pack.sh here and pass carry ['.carry']"; return 1; }
  mkdir -p /tmp/sdnode
  unxz "$CARRY/node.tar.xz" | tar -xf - -C /tmp/sdnode
  # node_modules: a worktree's symlink arrives dangling; the carried closure replaces it
  if [[ -L node_modules ]]; then rm node_modules; fi
  mkdir -p node_modules
  unxz "$CARRY/node_modules.tar.xz" | tar -xf - -C "$ROOT"
  if [[ ! -e "$ROOT/../shared/fixtures/goldens" ]]; then
    mkdir -p "$ROOT/../shared/fixtures"
    unxz "$CARRY/fixtures.tar.xz" | tar -xf - -C "$ROOT/../shared/fixtures"
  fi
  if [[ -f "$CARRY/diffusers.tar.xz" ]]; then
    mkdir -p /tmp/diffusers-src && unxz "$CARRY/diffusers.tar.xz" | tar -xf - -C /tmp/diffusers-src
  fi
  /tmp/sdnode/bin/node -v
  ls "$ROOT/../shared/fixtures/models" "$ROOT/../shared/fixtures/goldens"
}

# ---- build ---------------------------------------------------------------------------------------
p_build() {
  if [[ "$DRY" == 1 ]]; then
    mkdir -p build/Release && cp "${SD_NATIVE_ADDON:?SD_GPU_DRYRUN needs SD_NATIVE_ADDON}" build/Release/sd_native.node
    node --import tsx -e "import('./lib/index.ts').then((m) => console.log('buildInfo', JSON.stringify(m.buildInfo())))"
    return 0
  fi
  local prefix abi gen=() cudnn
  prefix="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
  abi="$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
  command -v ninja >/dev/null && gen=(-G Ninja)
  local cuda=()
  if command -v nvcc >/dev/null; then
    cuda=("-DCMAKE_CUDA_COMPILER=$(command -v nvcc)" "-DCUDAToolkit_ROOT=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")")
  fi
  local common=(-S "$ROOT" -B "$BUILD_DIR" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "${cuda[@]}"
    "-DCMAKE_PREFIX_PATH=$prefix" "-DSD_NODE_INCLUDE_DIR=$NODE_INC" "-DSD_NODE_ADDON_API_DIR=$ROOT/node_modules/node-addon-api"
    -DCMAKE_CUDA_ARCHITECTURES=90 "-DTORCH_CUDA_ARCH_LIST=9.0"
    # keep libtorch_cuda/c10_cuda as NEEDED even though no symbol of ours names them: without
    # them loaded, at::hasCUDA() is false
    "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--no-as-needed")
  echo "torch prefix $prefix, python torch cxx11 abi $abi"
  {
    timeout 120 cmake "${common[@]}" \
    || { echo "configure failed; retrying with cuDNN from the nvidia-cudnn wheel"; rm -rf "$BUILD_DIR";
         cudnn="$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)";
         timeout 120 cmake "${common[@]}" "-DCUDNN_ROOT=$cudnn" "-DCUDNN_INCLUDE_PATH=$cudnn/include" "-DCUDNN_LIBRARY_PATH=$(ls "$cudnn"/lib/libcudnn.so* 2>/dev/null | head -1)"; } \
    || { echo "configure failed again; retrying without cuDNN in the cmake config (libtorch still uses it)"; rm -rf "$BUILD_DIR";
         timeout 120 cmake "${common[@]}" -DCAFFE2_USE_CUDNN=OFF -DUSE_CUDNN=OFF; }
  } > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; return 1; }
  grep -E "sd-native: libtorch|_GLIBCXX_USE_CXX11_ABI|CUDA" "$OUT/build.log" | head -8 || true
  grep -q "_GLIBCXX_USE_CXX11_ABI=$abi" "$BUILD_DIR/compile_commands.json" \
    && echo "compile flags carry -D_GLIBCXX_USE_CXX11_ABI=$abi (python torch's ABI)" \
    || echo "WARNING: the compile commands do not show -D_GLIBCXX_USE_CXX11_ABI=$abi (python torch's ABI)"
  echo "building with -j$(nproc)"
  timeout "$(limit 240)" cmake --build "$BUILD_DIR" -j"$(nproc)" >> "$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -30; return 1; }
  grep -cE "warning:" "$OUT/build.log" | sed 's/^/compiler warnings: /' || true
  mkdir -p build/Release && cp "$BUILD_DIR/sd_native.node" build/Release/sd_native.node
  ldd build/Release/sd_native.node | grep -E "torch|c10|cuda" | sed 's/^/  /'
  node --import tsx -e "import('./lib/index.ts').then((m) => { const b = m.buildInfo(); console.log('buildInfo', JSON.stringify(b)); if (!b.cuda) process.exit(3); })"
}

# ---- parity --------------------------------------------------------------------------------------
p_parity() {
  # keep what model + race-sd-native + diffusers-eager need at least (60 + 60 + 45 s)
  SD_GPU_REPORT="$OUT/parity.json" timeout "$(limit 165)" node node_modules/vitest/vitest.mjs run test/gpu.test.ts \
    --reporter=verbose > "$OUT/parity.log" 2>&1 || { tail -60 "$OUT/parity.log"; return 1; }
  grep -E "✓|✗|×|Test Files|Tests " "$OUT/parity.log" | tail -12
}

# ---- model ---------------------------------------------------------------------------------------
p_model() {
  timeout "$(limit 105)" node --import tsx lib/cli.ts create-model --preset sd15 --scale "$SCALE" --device "$MODEL_DEVICE" \
    --out "$MODEL_DIR" >> "$OUT/race.log" 2>&1 || { tail -20 "$OUT/race.log"; return 1; }
  grep -E "^created" "$OUT/race.log" | tail -1
  du -sh "$MODEL_DIR"/* | sed 's/^/  /'
}

# nvidia-smi peak of the GPU's used memory while a command runs (includes the CUDA context and
# the caching allocator's reserve): appends {"impl","smi_peak_MiB","smi_base_MiB"} to race.jsonl
with_smi() {
  local impl=$1; shift
  local f; f=$(mktemp)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$f" 2>/dev/null & local smi=$!
  sleep 0.3
  local rc=0
  "$@" || rc=$?
  kill "$smi" 2>/dev/null || true; wait "$smi" 2>/dev/null || true
  python3 - "$f" "$impl" "$OUT/race.jsonl" <<'PY' || true
import json, sys
v = [int(x) for x in open(sys.argv[1]).read().split() if x.strip().isdigit()]
if v:
    open(sys.argv[3], "a").write(json.dumps({"impl": sys.argv[2], "smi_base_MiB": v[0], "smi_peak_MiB": max(v)}) + "\n")
PY
  rm -f "$f"
  return $rc
}

p_race_sd() {
  with_smi sd-native timeout "$(limit 150)" node --import tsx scripts/gpu/bench-race.ts --model "$MODEL_DIR" \
    --repeats "$REPEATS" --jsonl "$OUT/race.jsonl" "${RACE_ARGS[@]}" >> "$OUT/race.log" 2>&1 || { tail -8 "$OUT/race.log"; return 1; }
  grep '"impl":"sd-native"' "$OUT/race.jsonl" | tail -3
}

diffusers_py() {
  if "$PY" -c 'import diffusers' 2>/dev/null; then echo "device diffusers"; else export PYTHONPATH="/tmp/diffusers-src/src${PYTHONPATH:+:$PYTHONPATH}"; echo "carried diffusers"; fi
  # diffusers needs the safetensors package; the carried pure-python reader only where it is missing
  if ! "$PY" -c 'import safetensors.torch' 2>/dev/null && [[ -d /tmp/diffusers-src/shim/safetensors ]]; then
    export PYTHONPATH="$PYTHONPATH:/tmp/diffusers-src/shim"; echo "carried safetensors shim"; fi
  "$PY" -c 'import transformers' 2>/dev/null && echo "device transformers" \
    || echo "no transformers: diffusers_race.py times diffusers' loop over its UNet/scheduler/VAE (no text encoder)"
}
p_race_eager() {
  diffusers_py
  with_smi diffusers-eager timeout "$(limit 20)" "$PY" scripts/gpu/diffusers_race.py --model "$MODEL_DIR" \
    --mode eager --repeats "$REPEATS" --jsonl "$OUT/race.jsonl" "${DIFF_ARGS[@]}" >> "$OUT/race.log" 2>&1 || { tail -8 "$OUT/race.log"; return 1; }
}
p_race_compile() {
  diffusers_py
  with_smi diffusers-compile timeout "$(limit 10)" "$PY" scripts/gpu/diffusers_race.py --model "$MODEL_DIR" \
    --mode compile --repeats "$REPEATS" --jsonl "$OUT/race.jsonl" "${DIFF_ARGS[@]}" >> "$OUT/race.log" 2>&1 || { tail -8 "$OUT/race.log"; return 1; }
}
p_sdxl_model() {
  timeout "$(limit 120)" node --import tsx lib/cli.ts create-model --preset sdxl --scale "$SCALE" --device "$MODEL_DEVICE" \
    --out "$SDXL_DIR" >> "$OUT/race.log" 2>&1 || { tail -20 "$OUT/race.log"; return 1; }
  du -sh "$SDXL_DIR"/* | sed 's/^/  /'
}
p_sdxl_fp16() {
  with_smi sdxl-fp16 timeout "$(limit 60)" node --import tsx scripts/gpu/sdxl-vram.ts --model "$SDXL_DIR" \
    --jsonl "$OUT/race.jsonl" "${SDXL_ARGS[@]}" >> "$OUT/race.log" 2>&1 || { tail -8 "$OUT/race.log"; return 1; }
  grep '"impl":"sdxl-fp16"' "$OUT/race.jsonl" | tail -2
}
p_sdxl_fp8() {
  with_smi sdxl-fp8 timeout "$(limit 10)" node --import tsx scripts/gpu/sdxl-vram.ts --model "$SDXL_DIR" --fp8 \
    --jsonl "$OUT/race.jsonl" "${SDXL_ARGS[@]}" >> "$OUT/race.log" 2>&1 || { tail -8 "$OUT/race.log"; return 1; }
  grep '"impl":"sdxl-fp8"' "$OUT/race.jsonl" | tail -2
}
p_suite() {
  timeout "$(limit 5)" node node_modules/vitest/vitest.mjs run >> "$OUT/parity.log" 2>&1 || { tail -30 "$OUT/parity.log"; return 1; }
  tail -6 "$OUT/parity.log"
}

# ---- summary -------------------------------------------------------------------------------------
summary() {
  {
    echo "# gpu-check $(date -u +%FT%TZ) — $(timeout 10 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(elapsed) s of a ${BUDGET} s budget$([[ "$DRY" == 1 ]] && echo ' (DRY RUN: CPU, tiny model)')"
    echo
    echo "| phase | result | s |"; echo "| --- | --- | --- |"
    printf '%s\n' "${SUMMARY[@]}" | awk -F'|' '{printf "| %s | %s | %s |\n", $1, $2, $3}'
    echo
    timeout 20 python3 "$ROOT/scripts/gpu/summary.py" "$OUT/race.jsonl" "$OUT/parity.json" || true
  } > "$OUT/summary.md"
  cat "$OUT/summary.md"
}
trap summary EXIT

# ---- run -----------------------------------------------------------------------------------------
log "repo $(git rev-parse --short HEAD 2>/dev/null || echo '?'), budget ${BUDGET}s, OUT=$OUT"
phase env 0 p_env
phase unpack 0 p_unpack
if [[ -x /tmp/sdnode/bin/node ]]; then export PATH="/tmp/sdnode/bin:$PATH"; NODE_INC=/tmp/sdnode/include/node
else NODE_INC="$(dirname "$(dirname "$(command -v node)")")/include/node"; fi
export NODE_INC
phase build 120 p_build
if ok build; then
  phase parity 60 p_parity
  phase model 45 p_model
  if ok model; then phase race-sd-native 60 p_race_sd; else skip race-sd-native "no model"; fi
else
  log "build failed or skipped: no parity, no model (create-model needs the addon), so no race (see build.log)"
  for n in parity model race-sd-native; do skip "$n" "no build"; done
fi
# diffusers runs on the folder sd-native wrote; without it there is nothing to race
if ok model; then
  phase diffusers-eager 45 p_race_eager
  phase diffusers-compile 90 p_race_compile
else
  for n in diffusers-eager diffusers-compile; do skip "$n" "no model to race on"; done
fi
if [[ "${SD_GPU_SDXL:-0}" == 1 ]]; then
  if ok build; then
    phase sdxl-model 90 p_sdxl_model
    if ok sdxl-model; then phase sdxl-fp16 90 p_sdxl_fp16; phase sdxl-fp8 90 p_sdxl_fp8
    else for n in sdxl-fp16 sdxl-fp8; do skip "$n" "no SDXL model"; done; fi
  else
    for n in sdxl-model sdxl-fp16 sdxl-fp8; do skip "$n" "no build"; done
  fi
fi
if [[ "${SD_GPU_FULL_SUITE:-0}" == 1 ]]; then
  if ok build; then phase suite 120 p_suite; else skip suite "no build"; fi
fi
log "done in $(elapsed) s of the ${BUDGET} s budget"
