// Previews cost: run with `npm run build:ts && OPENBLAS_NUM_THREADS=1 RUNS=7 node scripts/bench-previews.mjs` (tiny-sd15 + tiny-taesd fixtures).
// One run, side by side (interleaved): the same generation with no onStep, onStep without previews,
// latent2rgb and taesd previews on every step. Wall time of the denoising loop (timings.denoiseMs)
// and the process CPU time (all threads) per call; medians over the runs.
import { StableDiffusionPipeline, AutoencoderTiny } from '../dist/lib/index.js';
const fx = new URL('../../shared/fixtures/models', import.meta.url).pathname;
const pipe = await StableDiffusionPipeline.fromPretrained(`${fx}/tiny-sd15`, { previewDecoder: await AutoencoderTiny.fromPretrained(`${fx}/tiny-taesd`), threads: 1 });
pipe.setScheduler('EulerDiscreteScheduler');
const base = { prompt: 'a red sports car', numInferenceSteps: 10, seed: 1, width: 32, height: 32 };
const variants = {
  'no onStep': {},
  'onStep, previews off': { onStep: () => {} },
  'latent2rgb every step': { onStep: () => {}, previews: 'latent2rgb' },
  'taesd every step': { onStep: () => {}, previews: 'taesd' },
};
await pipe.generate(base); await pipe.generate(base); // warm-up
const R = Number(process.env.RUNS ?? 9);
const wall = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const cpu = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let r = 0; r < R; r++) for (const [k, v] of Object.entries(variants)) {
  const c0 = process.cpuUsage();
  const t = (await pipe.generate({ ...base, ...v })).timings;
  const c = process.cpuUsage(c0);
  wall[k].push(t.denoiseMs);
  cpu[k].push((c.user + c.system) / 1000);
}
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
for (const k of Object.keys(variants)) {
  console.log(`${k.padEnd(24)} denoise wall median ${med(wall[k]).toFixed(0)} ms, call CPU median ${med(cpu[k]).toFixed(0)} ms (${R} runs of 10 steps, 32x32, threads 1)`);
}
pipe.dispose();
