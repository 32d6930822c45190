/**
 * The time cost of a ControlNet step relative to a plain step, measured in one run on one shared
 * model (issue 18):
 *   npx tsx scripts/bench-controlnet.ts [--size 64] [--steps 8] [--repeats 5] [--threads 2]
 * Model: the fixture tiny-sd15 + tiny-sd15-controlnet (../shared/fixtures/models), CPU float32, CFG 7.5,
 * Euler. Rows alternate plain / ControlNet (one warm-up each, excluded); each row reports the median
 * denoise time per step. The ControlNet copies the UNet's encoder + mid block, so the expected cost is
 * roughly 1 + (encoder+mid share of the UNet) ≈ 1.4–1.6× a plain step.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline, buildInfo } from '../lib/index.js';

const args = process.argv.slice(2);
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const size = Number(arg('--size') ?? 64);
const steps = Number(arg('--steps') ?? 8);
const repeats = Number(arg('--repeats') ?? 5);
const threads = arg('--threads') ? Number(arg('--threads')) : undefined;
const models = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'fixtures', 'models');

const controlnet = await ControlNetModel.fromPretrained(path.join(models, 'tiny-sd15-controlnet'));
const plain = await StableDiffusionPipeline.fromPretrained(path.join(models, 'tiny-sd15'), threads ? { threads } : {});
const cn = StableDiffusionControlNetPipeline.fromPipeline(plain, { controlnet });
plain.setScheduler('EulerDiscreteScheduler');
cn.setScheduler('EulerDiscreteScheduler');
const image = { data: new Uint8Array(size * size * 3).map((_, i) => (i * 31) % 256), width: size, height: size, channels: 3 as const };
const common = { prompt: 'a house', numInferenceSteps: steps, seed: 1, height: size, width: size, outputType: 'latent' as const };

const perStep: { plain: number[]; controlnet: number[] } = { plain: [], controlnet: [] };
for (let r = 0; r <= repeats; r++) {
  const a = await plain.generate(common);
  const b = await cn.generate({ ...common, image });
  if (r === 0) continue;  // warm-up
  perStep.plain.push(a.timings.denoiseMs / steps);
  perStep.controlnet.push(b.timings.denoiseMs / steps);
}
const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
const p = median(perStep.plain), c = median(perStep.controlnet);
console.log(`libtorch ${buildInfo().libtorchVersion}, ${size}x${size}, ${steps} steps, CFG 7.5, ${repeats} repeats (medians)`);
console.log(`plain step      ${p.toFixed(2)} ms`);
console.log(`ControlNet step ${c.toFixed(2)} ms`);
console.log(`ratio           ${(c / p).toFixed(3)}`);
cn.dispose();
plain.dispose();
controlnet.dispose();
