/**
 * `npm run bench -- --toggles`: one row per speed/memory toggle, measured side by side in one
 * run on one pipeline (ratios to the plain row are what count on a shared machine).
 *   npm run bench -- --toggles [--size 128] [--steps 4] [--repeats 3] [--batch 1]
 *                              [--model <dir> | --full] [--device cpu] [--json out.json] [--md out.md]
 * Default model: a tiny SD 1.5-shaped random model (.models/sd15-tiny-random), 128×128, CFG 7.5.
 * Each row: one warm-up call (it also applies the toggle) excluded, then the median of
 * `--repeats` calls. Peak RSS is per row (VmHWM reset through /proc/self/clear_refs on Linux);
 * CUDA rows would report max allocated/reserved instead (not measured here: no GPU).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StableDiffusionPipeline, createModel, buildInfo, type GenerateResult } from '../lib/index.js';

const args = process.argv.slice(2);
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const full = args.includes('--full');
const size = Number(arg('--size') ?? (full ? 256 : 128));
const steps = Number(arg('--steps') ?? 4);
const repeats = Number(arg('--repeats') ?? 3);
const batch = Number(arg('--batch') ?? 1);
const device = arg('--device') ?? 'cpu';
const cfg = 7.5;

let model = arg('--model');
if (!model) {
  model = path.resolve('.models', full ? 'sd15-full-random' : 'sd15-tiny-random');
  if (!fs.existsSync(path.join(model, 'unet', 'diffusion_pytorch_model.safetensors'))) {
    await createModel({ preset: 'sd15', scale: full ? 'full' : 'tiny', out: model, seed: 0 });
  }
}

const MiB = 2 ** 20;
function resetPeakRss(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5'); // Linux: VmHWM := VmRSS
    return true;
  } catch {
    return false;
  }
}
function peakRssMiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch { /* not Linux */ }
  return process.resourceUsage().maxRSS / 1024;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Row {
  configuration: string;
  status: 'ok' | 'unsupported';
  note?: string;
  peakRssMiB?: number;
  totalS?: number;
  sPerStep?: number;
  itPerS?: number;
  imagesPerMin?: number;
  unetMiB?: number;
  vaeMiB?: number;
  textEncoderMiB?: number;
  batch: number;
  resolution: string;
  steps: number;
  cfg: number;
}

type Pipe = StableDiffusionPipeline;
interface Config { name: string; dtype?: 'float32' | 'bfloat16' | 'float16'; apply?: (p: Pipe) => void; batch?: number }

const configs: Config[] = [
  { name: 'float32 baseline' },
  { name: 'attention slicing auto', apply: (p) => p.enableAttentionSlicing('auto') },
  { name: 'attention slicing max', apply: (p) => p.enableAttentionSlicing('max') },
  { name: 'memory-efficient attention (SDPA)', apply: (p) => p.enableMemoryEfficientAttention() },
  { name: 'channels-last', apply: (p) => p.enableChannelsLast() },
  { name: `VAE slicing (batch ${Math.max(2, batch)})`, apply: (p) => p.enableVaeSlicing(), batch: Math.max(2, batch) },
  { name: `no VAE slicing (batch ${Math.max(2, batch)})`, batch: Math.max(2, batch) },
  { name: 'VAE tiling', apply: (p) => p.enableVaeTiling() },
  { name: 'fp8 storage e4m3fn', apply: (p) => p.enableFp8Storage({ format: 'e4m3fn' }) },
  { name: 'fp8 storage e5m2', apply: (p) => p.enableFp8Storage({ format: 'e5m2' }) },
  { name: 'bfloat16', dtype: 'bfloat16' },
  { name: 'float16', dtype: 'float16' },
  { name: 'model CPU offload', apply: (p) => p.enableModelCpuOffload() },
  { name: 'sequential CPU offload', apply: (p) => p.enableSequentialCpuOffload() },
];

const info = buildInfo();
const date = new Date().toISOString().slice(0, 10);
const header = `sd-native toggles bench — ${date}, ${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, ` +
  `libtorch ${info.libtorchVersion}, ${info.threads} threads, device ${device}, model ${path.basename(model)}, ` +
  `${size}×${size}, ${steps} steps, CFG ${cfg}, median of ${repeats} after 1 warm-up`;
console.log(`# ${header}`);
const perRowRss = resetPeakRss();

const pipes = new Map<string, Pipe>();
async function pipeFor(dtype: string): Promise<Pipe> {
  let p = pipes.get(dtype);
  if (!p) {
    p = await StableDiffusionPipeline.fromPretrained(model!, { device, dtype: dtype as 'float32' });
    p.setScheduler('EulerDiscreteScheduler');
    pipes.set(dtype, p);
  }
  return p;
}

const rows: Row[] = [];
for (const c of configs) {
  const b = c.batch ?? batch;
  const row: Row = { configuration: c.name, status: 'ok', batch: b, resolution: `${size}×${size}`, steps, cfg };
  let pipe: Pipe | undefined;
  try {
    pipe = await pipeFor(c.dtype ?? 'float32');
    c.apply?.(pipe);
    const opts = {
      prompt: 'a photo of an astronaut riding a horse on mars', negativePrompt: 'blurry',
      height: size, width: size, numInferenceSteps: steps, guidanceScale: cfg, seed: 42, numImagesPerPrompt: b,
    };
    await pipe.generate({ ...opts, numInferenceSteps: 1 }); // warm-up; applies the toggle
    resetPeakRss();
    const results: GenerateResult[] = [];
    for (let i = 0; i < repeats; i++) results.push(await pipe.generate(opts));
    const total = median(results.map((r) => r.timings.totalMs)) / 1000;
    const denoise = median(results.map((r) => r.timings.denoiseMs)) / 1000;
    const comp = Object.fromEntries(pipe.info.components.map((x) => [x.name, x.bytes / MiB]));
    Object.assign(row, {
      peakRssMiB: peakRssMiB(), totalS: total, sPerStep: denoise / steps, itPerS: steps / denoise,
      imagesPerMin: (60 * b) / total, unetMiB: comp.unet, vaeMiB: comp.vae, textEncoderMiB: comp.text_encoder,
    });
  } catch (e) {
    row.status = 'unsupported';
    row.note = `${(e as { code?: string }).code ?? 'error'}: ${(e as Error).message.split('\n')[0]}`;
  } finally {
    if (pipe) {
      // back to plain for the next row (the bf16/fp16 pipelines are used by one row each)
      pipe.disableAttentionSlicing().disableChannelsLast().disableVaeSlicing().disableVaeTiling().disableFp8Storage()
        .disableMemoryEfficientAttention().disableCpuOffload();
    }
  }
  rows.push(row);
  const r = row;
  console.log(r.status === 'ok'
    ? `${r.configuration}: ${r.totalS!.toFixed(2)} s, ${r.itPerS!.toFixed(2)} it/s, peak RSS ${r.peakRssMiB!.toFixed(0)} MiB, UNet ${r.unetMiB!.toFixed(2)} MiB`
    : `${r.configuration}: ${r.note}`);
}
for (const p of pipes.values()) p.dispose();

const baseRow = rows[0];
const ratio = (v: number | undefined, b: number | undefined) => (v === undefined || !b ? '' : ` (${(v / b).toFixed(2)}×)`);
const f = (v: number | undefined, d: number) => (v === undefined ? '—' : v.toFixed(d));
const lines = [
  `| configuration | peak RSS MiB | total s | s/step | it/s | images/min | UNet weights MiB | VAE MiB | text enc. MiB | batch | resolution | steps | CFG |`,
  `| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
];
for (const r of rows) {
  if (r.status !== 'ok') {
    lines.push(`| ${r.configuration} | not run: ${r.note!.replace(/\|/g, '/')} | — | — | — | — | — | — | — | ${r.batch} | ${r.resolution} | ${r.steps} | ${r.cfg} |`);
    continue;
  }
  const same = r.batch === baseRow.batch;
  lines.push(`| ${r.configuration} | ${f(r.peakRssMiB, 0)}${same ? ratio(r.peakRssMiB, baseRow.peakRssMiB) : ''} | ` +
    `${f(r.totalS, 2)}${same ? ratio(r.totalS, baseRow.totalS) : ''} | ${f(r.sPerStep, 3)} | ${f(r.itPerS, 2)} | ${f(r.imagesPerMin, 1)} | ` +
    `${f(r.unetMiB, 2)}${ratio(r.unetMiB, baseRow.unetMiB)} | ${f(r.vaeMiB, 2)} | ${f(r.textEncoderMiB, 2)} | ${r.batch} | ${r.resolution} | ${r.steps} | ${r.cfg} |`);
}
const table = lines.join('\n');
console.log(`\n${table}\n`);
if (!perRowRss) console.log('(peak RSS is the process maximum: /proc/self/clear_refs is not available)');
const json = arg('--json');
if (json) fs.writeFileSync(json, JSON.stringify({ header, date, libtorch: info.libtorchVersion, device, model, rows }, null, 2));
const md = arg('--md');
if (md) fs.writeFileSync(md, `${header}\n\n${table}\n`);
