#!/usr/bin/env bash
# CPU race, sd-native vs diffusers, one run, same weights, same libtorch, same thread count:
# seconds per CFG step (UNet at batch 2), per VAE decode (batch 1) and peak RSS, as the table of
# issue 17 with ratios (diffusers ÷ sd-native: above 1 means sd-native is faster).
#
#   [REF=/path/to/reference-env] [MODEL=/path/to/sd15-full] [THREADS=2] \
#     bash scripts/race.sh [sizes="256 512"] [dtypes="float32 bfloat16"] [steps=4] [rounds=2]
#   npm run bench -- --race [same arguments]
#
# - MODEL: a diffusers folder; made once with `sd-native create-model --preset sd15 --scale full`
#   (default .models/sd15-full-race) when absent.
# - REF: the diffusers reference environment (../shared/race/setup_ref_env.sh makes one from Debian's
#   python3-torch and fetched sources; its env.sh sets PYTHONPATH and $PY). Without it only the
#   sd-native columns are filled. On a libtorch 2.x root (Debian 13) diffusers runs SDPA.
# - The two systems alternate (A B A B …) per size and dtype, `rounds` times; the table gives
#   medians over rounds. On a shared machine only the ratios of one run mean anything: the load
#   average before and after is printed with the table.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-"256 512"} dtypes=${2:-"float32 bfloat16"} steps=${3:-4} rounds=${4:-2}
threads=${THREADS:-2}
model=${MODEL:-.models/sd15-full-race}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [ ! -f "$model/model_index.json" ]; then
  echo "race: creating $model (sd15, full size, random weights, seed 0)" >&2
  npx tsx lib/cli.ts create-model --preset sd15 --scale full --seed 0 --out "$model" >&2
fi
have_ref=0
if [ -n "${REF:-}" ] && [ -f "$REF/env.sh" ]; then have_ref=1; fi
load0=$(cut -d' ' -f1-3 /proc/loadavg)
export OMP_NUM_THREADS=$threads
run() {  # run NAME COMMAND... → appends the RESULT line, with peak RSS, to $out/results
  local name=$1; shift
  if /usr/bin/time -f '%M' -o "$out/rss" "$@" > "$out/stdout" 2> "$out/stderr"; then
    local line; line=$(grep '^RESULT ' "$out/stdout" | tail -1 | cut -d' ' -f2-)
    echo "{\"rssKb\": $(tail -1 "$out/rss"), \"r\": $line}" >> "$out/results"
    echo "race: $name: $line" >&2
  else
    echo "race: $name failed:" >&2; tail -5 "$out/stderr" >&2
  fi
}
for r in $(seq "$rounds"); do
  for size in $sizes; do
    for dt in $dtypes; do
      run "sd-native $size $dt (round $r)" npx tsx scripts/race/sdnative_step.ts "$model" "$size" "$steps" "$dt"
      if [ $have_ref -eq 1 ]; then
        run "diffusers $size $dt (round $r)" bash -c '. "$REF/env.sh" && export OMP_NUM_THREADS='"$threads"' && exec $PY scripts/race/diffusers_step.py "$@"' \
          race "$model" "$size" "$steps" "$dt" "$threads"
      fi
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
touch "$out/results"
node - "$out/results" "$load0" "$load1" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" <<'NODE'
const fs = require('node:fs');
const [file, load0, load1, cores, cpu] = process.argv.slice(2);
const rows = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const med = (xs) => { const s = xs.filter(Number.isFinite).sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; };
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '—');
const ratio = (ref, ours) => (Number.isFinite(ref) && Number.isFinite(ours) ? (ref / ours).toFixed(2) + '×' : '—');
const keys = [...new Set(rows.map((x) => `${x.r.size}|${x.r.dtype}`))];
const versions = [...new Set(rows.map((x) => x.r.system === 'sd-native' ? `sd-native on libtorch ${x.r.libtorch}` : `diffusers on torch ${x.r.torch}`))];
console.log(`\n${new Date().toISOString()}, ${cpu} (${cores} cores), ${versions.join(', ')}, ${rows[0]?.r.threads ?? '?'} threads; load average before ${load0}, after ${load1}`);
console.log('ratio = diffusers ÷ sd-native (> 1: sd-native faster); medians over rounds; all values in one run\n');
console.log('| size, dtype | sd-native step s | diffusers step s | step ratio | sd-native VAE s | diffusers VAE s | VAE ratio | sd-native peak RSS MiB | diffusers peak RSS MiB |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const k of keys) {
  const [size, dtype] = k.split('|');
  const of = (sys) => rows.filter((x) => x.r.system === sys && `${x.r.size}|${x.r.dtype}` === k);
  const a = of('sd-native'), b = of('diffusers');
  const s = (xs, key) => med(xs.map((x) => x.r[key]));
  const rss = (xs) => med(xs.map((x) => x.rssKb / 1024));
  console.log(`| ${size}², ${dtype} | ${f(s(a, 'step'))} | ${f(s(b, 'step'))} | ${ratio(s(b, 'step'), s(a, 'step'))} | ` +
    `${f(s(a, 'vae'))} | ${f(s(b, 'vae'))} | ${ratio(s(b, 'vae'), s(a, 'vae'))} | ${f(rss(a), 0)} | ${f(rss(b), 0)} |`);
}
NODE
