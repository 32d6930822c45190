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
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# Dependencies without the install hook (it would compile with node-gyp); then the fast
# (The script is "compile", not "build": npm would run "prebuild" — prebuildify — before a "build".)
# incremental CMake build of the addon and the TypeScript build.
npm ci --ignore-scripts --no-audit --no-fund
npm run compile
