/**
 * Soak test: many tiny generations in one process, with aborts mixed in; resident memory must
 * stay flat (within 5 % after warm-up). `npm run soak [-- --n 500]`. Exits 1 on growth.
 */
import fs from 'node:fs';
import path from 'node:path';
import { StableDiffusionPipeline, createModel, SdError } from '../lib/index.js';

const args = process.argv.slice(2);
const n = Number(args[args.indexOf('--n') + 1] ?? 500) || 500;
const warmup = Math.min(50, Math.floor(n / 5));
const model = path.resolve('.models', 'soak-tiny');
if (!fs.existsSync(path.join(model, 'unet', 'diffusion_pytorch_model.safetensors'))) {
  await createModel({ preset: 'sd15', scale: 'tiny', out: model, seed: 1 });
}
const pipe = await StableDiffusionPipeline.fromPretrained(model);
const mb = () => process.memoryUsage().rss / 2 ** 20;
let aborted = 0, completed = 0, baseline = 0, peak = 0;
const samples: Array<[number, number]> = [];
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  const controller = new AbortController();
  const abortThis = i % 7 === 3;
  try {
    await pipe.generate({
      prompt: `soak ${i}`, height: 32, width: 32, numInferenceSteps: 3, seed: i,
      signal: controller.signal,
      onStep: ({ step }) => { if (abortThis && step === 1) controller.abort(); },
    });
    completed++;
  } catch (e) {
    if (!(e instanceof SdError) || e.code !== 'E_ABORTED') throw e;
    aborted++;
  }
  if (i === warmup) baseline = mb();
  if (i > warmup) peak = Math.max(peak, mb());
  if (i % 50 === 0 || i === n - 1) {
    samples.push([i, mb()]);
    console.log(`${String(i).padStart(4)}  rss ${mb().toFixed(1)} MiB  (${completed} done, ${aborted} aborted, ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
}
pipe.dispose();
const end = samples[samples.length - 1][1];
const growth = (end - baseline) / baseline;
console.log(`\n${n} generations (${completed} completed, ${aborted} aborted) in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
console.log(`RSS after warm-up (${warmup}): ${baseline.toFixed(1)} MiB; at the end: ${end.toFixed(1)} MiB; peak: ${peak.toFixed(1)} MiB; growth ${(growth * 100).toFixed(2)} %`);
if (growth > 0.05) {
  console.error('FAIL: resident memory grew by more than 5 %');
  process.exit(1);
}
console.log('OK: resident memory flat within 5 %');
