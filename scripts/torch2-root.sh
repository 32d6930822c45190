#!/usr/bin/env bash
# The libtorch 2.x leg: a Debian 13 ("trixie") root with Debian's libtorch-dev 2.6, made with
# debootstrap, in which a command runs over a fresh copy of this working tree.
#
#   bash scripts/torch2-root.sh [--] COMMAND...      e.g.  bash scripts/torch2-root.sh bash -c 'bash scripts/setup.sh && npm test'
#   bash scripts/torch2-root.sh --prepare            only make (or update) the root
#
# - Idempotent and cached: the root lives in $SD_TORCH2_ROOT (default /var/cache/sd-native/trixie)
#   and is made once per machine; later runs only check it (a stamp file names what it holds).
# - The command runs in /work/sd-native inside the root: a copy of this tree's tracked and
#   untracked-not-ignored files (so build/, dist/ and node_modules/ start clean), with the
#   ../shared folder beside it bind-mounted read-only (the fixtures stay where they are).
# - The host's node and npm run inside (copied in with Node's headers, so builds need no download),
#   with the CA files that NODE_EXTRA_CA_CERTS / SSL_CERT_FILE name, so npm reaches its registry.
# - /proc, /dev, /dev/pts and /dev/shm are bind-mounted for the command and unmounted on exit
#   (trap), whatever the command's outcome. Runs as root (debootstrap and chroot need it).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$(pwd)
SHARED=$(cd .. && pwd)/shared

ROOT=${SD_TORCH2_ROOT:-/var/cache/sd-native/trixie}
SUITE=trixie
MIRROR=${SD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(libtorch-dev libopenblas0-pthread g++ cmake make python3 ca-certificates git)
STAMP="$ROOT/.sd-native-root"
STAMP_TEXT="suite=$SUITE packages=${PACKAGES[*]} v=1"

log() { echo "torch2-root: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (debootstrap and chroot); try: sudo bash scripts/torch2-root.sh $*"
  exit 2
fi

prepare=0
if [ "${1:-}" = "--prepare" ]; then prepare=1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
if [ $prepare -eq 0 ] && [ $# -eq 0 ]; then
  log "usage: bash scripts/torch2-root.sh [--prepare] [--] COMMAND..."
  exit 2
fi

MOUNTED=()
cleanup() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTED[i]}" 2>/dev/null || true
  done
  MOUNTED=()
}
trap cleanup EXIT INT TERM

bind() { # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  MOUNTED+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

mount_system() {
  bind /proc "$ROOT/proc"
  bind /dev "$ROOT/dev"
  [ -d /dev/pts ] && bind /dev/pts "$ROOT/dev/pts"
  [ -d /dev/shm ] && bind /dev/shm "$ROOT/dev/shm"
  return 0
}

in_root() { # in_root COMMAND... (as root, no project mounts)
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}

# --- 1. the root itself (cached) ---------------------------------------------------------------
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$STAMP_TEXT" ]; then
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  }
  if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    log "debootstrap $SUITE into $ROOT (once per machine; a few minutes)"
    # --one-file-system: never descend into a /proc or /dev bind mount a killed run left behind
    rm -rf --one-file-system "$ROOT" "$ROOT.partial"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase "$SUITE" "$ROOT.partial" "$MIRROR"
    mv "$ROOT.partial" "$ROOT"
  fi
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  mount_system
  log "installing ${PACKAGES[*]} in the root"
  in_root apt-get update -q
  in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
  in_root apt-get clean
  cleanup
  echo "$STAMP_TEXT" >"$STAMP"
fi

# --- 2. node, npm and the CA files from the host (every run: cheap, follows the host) ----------
NODE=$(command -v node)
NPM_DIR=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd) # …/node_modules/npm
NODE_PREFIX=$(cd "$(dirname "$NODE")/.." && pwd)
mkdir -p "$ROOT/usr/local/bin" "$ROOT/usr/local/lib/node_modules" "$ROOT/usr/local/include"
install -m 755 "$NODE" "$ROOT/usr/local/bin/node"
rm -rf "$ROOT/usr/local/lib/node_modules/npm"
cp -a "$NPM_DIR" "$ROOT/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"
if [ -d "$NODE_PREFIX/include/node" ]; then
  rm -rf "$ROOT/usr/local/include/node"
  cp -a "$NODE_PREFIX/include/node" "$ROOT/usr/local/include/node"
fi
CA_VARS=()
for var in NODE_EXTRA_CA_CERTS SSL_CERT_FILE; do
  f=${!var:-}
  if [ -n "$f" ] && [ -f "$f" ]; then
    mkdir -p "$ROOT$(dirname "$f")"
    cp -L "$f" "$ROOT$f"
    CA_VARS+=("$var=$f")
  fi
done
# Neither named: the host's system bundle (it may hold a local registry proxy's CA) for node too.
if [ ${#CA_VARS[@]} -eq 0 ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"
  CA_VARS+=("NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca-certificates.crt")
fi
# npm's user configuration (registry, CA settings), with node's headers where they now are.
NPMRC_VARS=()
if [ -f "$HOME/.npmrc" ]; then
  grep -v '^nodedir=' "$HOME/.npmrc" >"$ROOT/root/.npmrc" || true
fi
echo "nodedir=/usr/local" >>"$ROOT/root/.npmrc"
for var in npm_config_registry NPM_CONFIG_REGISTRY npm_config_cafile; do
  [ -n "${!var:-}" ] && NPMRC_VARS+=("$var=${!var}")
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

[ $prepare -eq 1 ] && { log "root ready: $ROOT ($(in_root dpkg-query -W -f='${Version}' libtorch-dev))"; exit 0; }

# --- 3. a clean copy of the working tree, ../shared beside it ------------------------------------
WORK="$ROOT/work"
rm -rf --one-file-system "$WORK/sd-native"
mkdir -p "$WORK/sd-native" "$WORK/shared"
if git -C "$PROJECT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$PROJECT" ls-files -z --cached --others --exclude-standard |
    (cd "$PROJECT" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
    tar -C "$PROJECT" --null -T - -cf - | tar -C "$WORK/sd-native" -xf -
else
  tar -C "$PROJECT" --exclude=./node_modules --exclude=./build --exclude='./build-*' --exclude=./dist \
    --exclude=./prebuilds -cf - . | tar -C "$WORK/sd-native" -xf -
fi

mount_system
[ -d "$SHARED" ] && bind "$SHARED" "$WORK/shared" ro

log "libtorch $(in_root dpkg-query -W -f='${Version}' libtorch-dev) in $ROOT; running: $*"
set +e
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
  LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" ${CA_VARS[@]+"${CA_VARS[@]}"} ${NPMRC_VARS[@]+"${NPMRC_VARS[@]}"} \
  SD_TORCH2_LEG=1 ${SD_WERROR:+SD_WERROR="$SD_WERROR"} \
  /bin/bash -c 'cd /work/sd-native && exec "$@"' bash "$@"
rc=$?
set -e
exit $rc
