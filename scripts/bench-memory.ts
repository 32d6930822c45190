/**
 * Weight memory per component and load time, per storage setting, printed as markdown rows for
 * docs/BENCHMARKS.md:
 *   npm run bench -- --memory [--preset sdxl] [--scale full] [--size 64]
 * Each setting (float32, bfloat16, float32 + fp8 e4m3fn UNet storage, bfloat16 + fp8) runs in its
 * own child process so every peak RSS is that setting's alone. A setting loads the model, runs one
 * 1-step generation at --size² (toggles apply at the start of a call: the fp8 conversion is inside
 * it), then a second one (the steady state: fp8 weights are decoded layer by layer in every call),
 * and reports the bytes each component holds then. The model is created with random weights
 * (create-model) under .models/ when missing.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline, StableDiffusionXLPipeline, buildInfo, createModel, type ModelPreset, type ModelScale } from '../lib/index.js';

const args = process.argv.slice(2);
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const preset = (arg('--preset') ?? 'sdxl') as ModelPreset;
const scale = (arg('--scale') ?? 'full') as ModelScale;
const size = Number(arg('--size') ?? 64);
const MiB = 2 ** 20;

interface Row { setting: string; loadS: number; firstCallS: number; secondCallS: number; components: Record<string, number>; rssMiB: number; peakRssMiB: number }

async function measure(model: string, dtype: 'float32' | 'bfloat16', fp8: boolean): Promise<Row> {
  const t0 = performance.now();
  const pipe = preset === 'sdxl'
    ? await StableDiffusionXLPipeline.fromPretrained(model, { dtype })
    : await StableDiffusionPipeline.fromPretrained(model, { dtype });
  const loadS = (performance.now() - t0) / 1000;
  if (fp8) pipe.enableFp8Storage({ format: 'e4m3fn' });
  const t1 = performance.now();
  await pipe.generate({ prompt: 'a lighthouse', height: size, width: size, numInferenceSteps: 1, guidanceScale: 1, seed: 0 });
  const firstCallS = (performance.now() - t1) / 1000;
  const t2 = performance.now();
  await pipe.generate({ prompt: 'a lighthouse', height: size, width: size, numInferenceSteps: 1, guidanceScale: 1, seed: 0 });
  const secondCallS = (performance.now() - t2) / 1000;
  const components = Object.fromEntries(pipe.info.components.map((c) => [c.name, c.bytes]));
  const row: Row = {
    setting: `${dtype}${fp8 ? ' + fp8 e4m3fn UNet' : ''}`, loadS, firstCallS, secondCallS, components,
    rssMiB: process.memoryUsage().rss / MiB, peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
  pipe.dispose();
  return row;
}

const child = arg('--child');
if (child) {
  const [model, dtype, fp8] = child.split(',');
  console.log(JSON.stringify(await measure(model, dtype as 'float32' | 'bfloat16', fp8 === '1')));
  process.exit(0);
}

const model = path.resolve('.models', `${preset}-${scale}-random`);
let createdS = 0;
if (!fs.existsSync(path.join(model, 'unet', 'diffusion_pytorch_model.safetensors'))) {
  const t = performance.now();
  await createModel({ preset, scale, out: model, seed: 0 });
  createdS = (performance.now() - t) / 1000;
}
const info = buildInfo();
console.log(`# sd-native weight memory — ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, ` +
  `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, libtorch ${info.libtorchVersion}; ${preset} ${scale} (random weights), ` +
  `one ${size}² step per setting`);
if (createdS) console.log(`created ${model} in ${createdS.toFixed(1)} s`);
const self = fileURLToPath(import.meta.url);
const rows: Row[] = [];
for (const [dtype, fp8] of [['float32', false], ['bfloat16', false], ['float32', true], ['bfloat16', true]] as const) {
  const out = execFileSync(process.execPath, [...process.execArgv, self, '--preset', preset, '--scale', scale, '--size', String(size),
    '--child', `${model},${dtype},${fp8 ? 1 : 0}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  rows.push(JSON.parse(out.trim().split('\n').pop()!));
}
const names = Object.keys(rows[0].components);
console.log(`\n| setting | load s | first call s | second call s | ${names.map((n) => `${n} MiB`).join(' | ')} | total weights MiB | RSS after MiB | peak RSS MiB |`);
console.log(`| --- | --- | --- | --- | ${names.map(() => '---').join(' | ')} | --- | --- | --- |`);
for (const r of rows) {
  const total = Object.values(r.components).reduce((a, b) => a + b, 0);
  console.log(`| ${r.setting} | ${r.loadS.toFixed(1)} | ${r.firstCallS.toFixed(1)} | ${r.secondCallS.toFixed(1)} | ${names.map((n) => (r.components[n] / MiB).toFixed(0)).join(' | ')} | ` +
    `${(total / MiB).toFixed(0)} | ${r.rssMiB.toFixed(0)} | ${r.peakRssMiB.toFixed(0)} |`);
}
const unet = (r: Row) => r.components.unet;
console.log(`\nUNet bytes: bfloat16 / float32 = ${(unet(rows[1]) / unet(rows[0])).toFixed(3)}, fp8 / float32 = ${(unet(rows[2]) / unet(rows[0])).toFixed(3)}, ` +
  `fp8 / bfloat16 = ${(unet(rows[3]) / unet(rows[1])).toFixed(3)}`);
