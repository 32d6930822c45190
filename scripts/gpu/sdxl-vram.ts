/**
 * Issue 6, item 6 on a GPU: SDXL peak GPU memory at 1024², float16 weights vs float16 with fp8 UNet
 * storage (the seed reports 5.3 → 6.4 GB on its card; diffusers' figure is 10.47 GiB at fp16).
 * One setting per process, so scripts/gpu-check.sh can wrap each in its nvidia-smi sampler:
 *   node --import tsx scripts/gpu/sdxl-vram.ts --model /tmp/sdxl [--fp8] [--size 1024] [--steps 4]
 *     [--device cuda] [--dtype float16] [--no-vae-tiling] [--jsonl out.jsonl]
 * Appends one JSON row {impl: 'sdxl-fp16' | 'sdxl-fp8', …} to --jsonl: load s, the first call
 * (includes the fp8 conversion), the timed call, it/s, weight MiB per component.
 */
import fs from 'node:fs';
import { StableDiffusionXLPipeline, buildInfo } from '../../lib/index.js';

const args = process.argv.slice(2);
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const model = arg('--model');
if (!model) throw new Error('--model <SDXL diffusers folder> is required');
const fp8 = args.includes('--fp8');
const size = Number(arg('--size') ?? 1024);
const steps = Number(arg('--steps') ?? 4);
const device = arg('--device') ?? 'cuda';
const dtype = (arg('--dtype') ?? 'float16') as 'float16' | 'float32' | 'bfloat16';
const jsonl = arg('--jsonl');
const MiB = 2 ** 20;

const row: Record<string, unknown> = {
  impl: fp8 ? 'sdxl-fp8' : 'sdxl-fp16', config: `SDXL ${size}², ${steps} steps, CFG 5, ${dtype}${fp8 ? ' + fp8 e4m3fn UNet' : ''}${args.includes('--no-vae-tiling') ? '' : ', VAE tiling'}, ${device}`,
  libtorch: buildInfo().libtorchVersion,
};
try {
  const t0 = performance.now();
  const pipe = await StableDiffusionXLPipeline.fromPretrained(model, { device, dtype });
  row.load_s = +((performance.now() - t0) / 1000).toFixed(2);
  if (fp8) pipe.enableFp8Storage({ format: 'e4m3fn' });
  // the 1024² float32 (force_upcast) VAE decode would otherwise set the peak of both settings
  if (!args.includes('--no-vae-tiling')) pipe.enableVaeTiling();
  const call = { prompt: 'a lighthouse on a cliff at dusk, oil painting', negativePrompt: 'blurry', height: size, width: size, guidanceScale: 5, seed: 1 };
  const t1 = performance.now();
  await pipe.generate({ ...call, numInferenceSteps: 1 });
  row.first_call_s = +((performance.now() - t1) / 1000).toFixed(2);
  const r = await pipe.generate({ ...call, numInferenceSteps: steps });
  row.e2e_s = +(r.timings.totalMs / 1000).toFixed(2);
  row.it_s = +(steps / (r.timings.denoiseMs / 1000)).toFixed(3);
  row.weights_MiB = Object.fromEntries(pipe.info.components.map((c) => [c.name, Math.round(c.bytes / MiB)]));
  pipe.dispose();
} catch (e) {
  row.error = `${(e as { code?: string }).code ?? ''} ${(e as Error).message}`.trim();
}
console.log(JSON.stringify(row));
if (jsonl) fs.appendFileSync(jsonl, `${JSON.stringify(row)}\n`);
if (row.error) process.exit(1);
