/**
 * Benchmarks, printed as markdown rows for docs/BENCHMARKS.md.
 *   npm run bench                          # tiny SD 1.5-family model: phases and it/s at 64² and 128²
 *   npm run bench -- --full [--steps 3]    # the real SD 1.5 architecture (random weights), 512², CFG 7.5
 *   npm run bench -- --model <dir>         # any diffusers folder
 *   npm run bench -- --toggles [--size 128] # one row per optimization toggle (scripts/bench-toggles.ts)
 *   npm run bench -- --memory [--preset sdxl] [--scale full] # weight bytes / load time per dtype and fp8 (scripts/bench-memory.ts)
 *   npm run bench -- --race [sizes] [dtypes] [steps] [rounds] # sd-native vs diffusers, same weights (scripts/race.sh; REF, MODEL)
 * On a shared 2-core machine compare rows of one run (ratios); absolute times count on the GPU.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StableDiffusionPipeline, createModel, buildInfo } from '../lib/index.js';

const args = process.argv.slice(2);
if (args.includes('--race')) {
  // sd-native vs diffusers on the same weights and libtorch, the issue-17 table with ratios
  const { spawnSync } = await import('node:child_process');
  const rest = args.filter((a) => a !== '--race');
  const r = spawnSync('bash', [path.join(path.dirname(new URL(import.meta.url).pathname), 'race.sh'), ...rest], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
if (args.includes('--toggles')) {
  await import('./bench-toggles.js'); // one row per speed/memory toggle (docs/BENCHMARKS.md)
  process.exit(0);
}
if (args.includes('--memory')) {
  await import('./bench-memory.js'); // weight bytes per component in float32 / bfloat16 / fp8 storage
  process.exit(0);
}
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const full = args.includes('--full');
const steps = Number(arg('--steps') ?? (full ? 3 : 10));
const device = arg('--device') ?? 'cpu';
const dtype = (arg('--dtype') ?? 'float32') as 'float32' | 'float16' | 'bfloat16';

let model = arg('--model');
let createdMs = 0;
if (!model) {
  model = path.resolve('.models', full ? 'sd15-full-random' : 'sd15-tiny-random');
  if (!fs.existsSync(path.join(model, 'unet', 'diffusion_pytorch_model.safetensors'))) {
    const t = performance.now();
    await createModel({ preset: 'sd15', scale: full ? 'full' : 'tiny', out: model, seed: 0 });
    createdMs = performance.now() - t;
  }
}
const info = buildInfo();
const peakRssMiB = () => process.resourceUsage().maxRSS / 1024;
console.log(`# sd-native bench — ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, ` +
  `libtorch ${info.libtorchVersion}, ${info.threads} threads, device ${device}, dtype ${dtype}`);
if (createdMs) console.log(`created ${model} in ${(createdMs / 1000).toFixed(1)} s`);
const rssBefore = peakRssMiB();
const t0 = performance.now();
const pipe = await StableDiffusionPipeline.fromPretrained(model, { device, dtype });
const loadMs = performance.now() - t0;
console.log(`load: ${(loadMs / 1000).toFixed(2)} s; weights ${pipe.info.components.map((c) => `${c.name} ${(c.bytes / 2 ** 20).toFixed(0)} MiB`).join(', ')}`);
console.log('\n| size | steps | CFG | encode ms | denoise ms | s/it | it/s | decode ms | total s | peak RSS MiB |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
const sizes = full ? [512] : [64, 128];
pipe.setScheduler('EulerDiscreteScheduler');
for (const size of sizes) {
  await pipe.generate({ prompt: 'warm-up', height: size, width: size, numInferenceSteps: 1, seed: 0 });
  const r = await pipe.generate({
    prompt: 'a photo of an astronaut riding a horse on mars', negativePrompt: 'blurry',
    height: size, width: size, numInferenceSteps: steps, guidanceScale: 7.5, seed: 42,
  });
  const t = r.timings;
  console.log(`| ${size}² | ${steps} | 7.5 | ${t.encodeMs.toFixed(0)} | ${t.denoiseMs.toFixed(0)} | ${(t.denoiseMs / steps / 1000).toFixed(3)} | ` +
    `${(steps / (t.denoiseMs / 1000)).toFixed(2)} | ${t.decodeMs.toFixed(0)} | ${(t.totalMs / 1000).toFixed(2)} | ${peakRssMiB().toFixed(0)} |`);
}
console.log(`\npeak RSS before load ${rssBefore.toFixed(0)} MiB, after the runs ${peakRssMiB().toFixed(0)} MiB`);
pipe.dispose();
