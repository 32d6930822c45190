/**
 * The sd-native side of the race (issue 7), run on the GPU by scripts/gpu-check.sh:
 *   node --import tsx scripts/gpu/bench-race.ts --model /tmp/sd15 --jsonl $OUT/race.jsonl
 * Same settings as scripts/gpu/diffusers_race.py: the same folder, float16, 512×512, 50 steps,
 * CFG 7.5, batch 1, the folder's scheduler (PNDM), seed 42. Configurations, cumulative on one
 * loaded pipeline: 'fp16' (as loaded), then '+sdpa +channels-last +cudnn.benchmark', then
 * '+cuda-graphs' — each toggle applied only where this build has it (feature-detected, since
 * issue 5's toggles and enableCudaGraphs() land separately); the row names what was applied.
 * Per configuration: 2 warm-up calls at full size (3 steps), then --repeats timed calls; medians.
 *   it/s   steps / denoise time (the native loop, all steps)
 *   e2e s  the generate() call measured in JS (encode + loop + decode + uint8 copy)
 *   peak   a native CUDA memory statistic when the build exposes one; else null (gpu-check.sh
 *          adds the nvidia-smi process peak, which includes the CUDA context and the cache)
 */
import fs from 'node:fs';
import * as sd from '../../lib/index.js';
import { StableDiffusionPipeline, buildInfo } from '../../lib/index.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt?: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const model = arg('--model', '/tmp/sd15')!;
const steps = Number(arg('--steps', '50'));
const size = Number(arg('--size', '512'));
const cfg = Number(arg('--cfg', '7.5'));
const repeats = Number(arg('--repeats', '3'));
const dtype = (arg('--dtype', 'float16') as 'float16' | 'bfloat16' | 'float32');
const device = arg('--device', 'cuda')!;
const jsonl = arg('--jsonl');

const any = sd as any;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A native CUDA memory statistic, if this build exposes one (names tried in order). */
function memoryApi(): { name: string; reset?: () => void; peakBytes: () => number | undefined } | null {
  const c = any.cuda;
  if (c && typeof c.maxMemoryAllocated === 'function')
    return { name: 'cuda.maxMemoryAllocated', reset: c.resetPeakMemoryStats?.bind(c), peakBytes: () => Number(c.maxMemoryAllocated()) };
  for (const fn of ['cudaMemoryStats', 'memoryStats']) {
    if (typeof any[fn] === 'function')
      return {
        name: fn,
        reset: any.resetPeakMemoryStats ?? any.cudaResetPeakMemoryStats,
        peakBytes: () => {
          const s = any[fn]();
          return s?.maxAllocated ?? s?.peakAllocated ?? s?.['allocated_bytes.all.peak'];
        },
      };
  }
  return null;
}

function emit(row: Record<string, unknown>) {
  const line = JSON.stringify(row);
  console.log(line);
  if (jsonl) fs.appendFileSync(jsonl, line + '\n');
}

const info = buildInfo();
const mem = memoryApi();
console.log(`[bench-race] libtorch ${info.libtorchVersion}, cuda ${info.cuda}, sdpa ${info.sdpa}; memory stat: ${mem?.name ?? 'none'}`);
const t0 = performance.now();
const pipe = await StableDiffusionPipeline.fromPretrained(model, { device, dtype });
const loadS = (performance.now() - t0) / 1000;
console.log(`[bench-race] loaded ${model} in ${loadS.toFixed(1)} s`);
const p = pipe as any;

const applied: string[] = [];
const missing: string[] = [];
function tryApply(name: string, fn: () => boolean) {
  try {
    if (fn()) applied.push(name);
    else missing.push(name);
  } catch (e) {
    missing.push(`${name} (${e instanceof Error ? e.message.slice(0, 120) : String(e)})`);
  }
}

const configs: { name: string; apply: () => void }[] = [
  { name: 'fp16', apply: () => {} },
  {
    name: '+sdpa +channels-last +cudnn.benchmark',
    apply: () => {
      tryApply('sdpa', () => (typeof p.enableMemoryEfficientAttention === 'function' ? (p.enableMemoryEfficientAttention(), true) : false));
      tryApply('channels-last', () => (typeof p.enableChannelsLast === 'function' ? (p.enableChannelsLast(), true) : false));
      tryApply('cudnn.benchmark', () => (any.backends?.cudnn ? ((any.backends.cudnn.benchmark = true), true) : false));
    },
  },
  {
    name: '+cuda-graphs',
    apply: () => tryApply('cuda-graphs', () => (typeof p.enableCudaGraphs === 'function' ? (p.enableCudaGraphs(), true) : false)),
  },
];
if (dtype !== 'float16') configs[0].name = dtype;

const request = {
  prompt: 'a photo of an astronaut riding a horse on mars',
  height: size, width: size, guidanceScale: cfg, seed: 42,
};
let label = '';
for (const c of configs) {
  const before = applied.length, missingBefore = missing.length;
  c.apply();
  if (c.name !== configs[0].name && applied.length === before) {
    emit({ impl: 'sd-native', config: label + ' ' + c.name, skipped: `not in this build: ${missing.slice(missingBefore).join(', ')}` });
    continue;
  }
  label = c === configs[0] ? c.name : `${label} ${c.name}`;
  try {
    const tw = performance.now();
    for (let i = 0; i < 2; i++) await pipe.generate({ ...request, numInferenceSteps: 3 });
    const warmupS = (performance.now() - tw) / 1000;
    const its: number[] = [], e2e: number[] = [], peaks: number[] = [];
    let last: any;
    for (let r = 0; r < repeats; r++) {
      mem?.reset?.();
      last = await pipe.generate({ ...request, numInferenceSteps: steps });
      its.push(steps / (last.timings.denoiseMs / 1000));
      e2e.push(last.timings.wallMs / 1000);
      const pk = mem?.peakBytes() ?? last.memory?.maxAllocated ?? last.timings?.peakMemoryBytes;
      if (typeof pk === 'number' && Number.isFinite(pk)) peaks.push(pk);
    }
    const px = last.images[0].data as Uint8Array;
    let sum = 0;
    for (let i = 0; i < px.length; i++) sum += px[i];
    emit({
      impl: 'sd-native', config: label, applied: [...applied], missing: [...missing], size, steps, cfg, batch: 1, dtype,
      libtorch: info.libtorchVersion, load_s: Number(loadS.toFixed(2)), warmup_s: Number(warmupS.toFixed(2)),
      it_s: Number(median(its).toFixed(2)), e2e_s: Number(median(e2e).toFixed(3)),
      encode_ms: Number(last.timings.encodeMs.toFixed(1)), decode_ms: Number(last.timings.decodeMs.toFixed(1)),
      peak_alloc_MiB: peaks.length ? Number((Math.max(...peaks) / 2 ** 20).toFixed(1)) : null,
      peak_source: peaks.length ? (mem?.name ?? 'generate result') : 'none in this build (see nvidia-smi row)',
      runs_it_s: its.map((x) => Number(x.toFixed(2))), runs_e2e_s: e2e.map((x) => Number(x.toFixed(3))),
      image_mean: sum / px.length / 255,
    });
  } catch (e) {
    emit({ impl: 'sd-native', config: label, error: e instanceof Error ? `${(e as any).code ?? e.name}: ${e.message}`.slice(0, 1000) : String(e) });
  }
}
pipe.dispose();
