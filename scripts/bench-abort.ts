/**
 * Abort latency: the time from `AbortController.abort()` to the rejection of `generate`, over
 * random abort times within whole calls (text encoding, UNet steps, VAE decode), on the tiny
 * SD 1.5 fixture (full-size models are not available on this machine).
 *
 *   npx tsx scripts/bench-abort.ts [--runs 50] [--sizes 64,128] [--steps 2] [--model DIR]
 *
 * For each size: one warm-up call and one timed call (its wall time T), then `runs` calls each
 * aborted at a uniform random time in [0, 0.95·T]; prints median / p90 / max latency in ms and
 * checks that the pipeline still gives the seed's image afterwards.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline, buildInfo } from '../lib/index.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const here = path.dirname(fileURLToPath(import.meta.url));
const modelDir = arg('model', path.resolve(here, '../../shared/fixtures/models/tiny-sd15'));
const runs = Number(arg('runs', '50'));
const sizes = arg('sizes', '64,128').split(',').map(Number);
const steps = Number(arg('steps', '2'));

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
};

const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
const info = buildInfo();
console.log(`sd-native abort bench — ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, ` +
  `libtorch ${info.libtorchVersion ?? '?'}, model ${path.basename(modelDir)}, ${steps} steps, CFG 7.5, ${runs} aborts per size`);
console.log('| size | call ms | aborted | completed first | median ms | p90 ms | max ms |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const size of sizes) {
  const opts = { prompt: 'a lighthouse at dusk', height: size, width: size, seed: 7, numInferenceSteps: steps };
  await pipe.generate(opts); // warm-up
  const t0 = performance.now();
  const ref = await pipe.generate(opts);
  const callMs = performance.now() - t0;
  const lat: number[] = [];
  let completed = 0;
  for (let i = 0; i < runs; ++i) {
    const c = new AbortController();
    let abortedAt = 0;
    const timer = setTimeout(() => { abortedAt = performance.now(); c.abort(); }, Math.random() * 0.95 * callMs);
    const r = await pipe.generate({ ...opts, signal: c.signal }).then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
    const end = performance.now();
    clearTimeout(timer);
    if (r === 'ok') { ++completed; continue; } // finished before the timer fired
    if (r !== 'E_ABORTED') throw new Error(`unexpected rejection ${r}`);
    lat.push(end - abortedAt);
  }
  const after = await pipe.generate(opts);
  if (Buffer.compare(after.images[0].data, ref.images[0].data) !== 0) throw new Error('output changed after aborts');
  const f = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1)); // every run may finish first
  console.log(`| ${size}×${size} | ${callMs.toFixed(0)} | ${lat.length} | ${completed} | ${f(quantile(lat, 0.5))} | ${f(quantile(lat, 0.9))} | ${f(lat.length ? Math.max(...lat) : undefined)} |`);
}
pipe.dispose();
