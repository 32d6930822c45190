/**
 * Child process for test/attention-budget.test.ts: one generate on the tiny pipeline under the
 * SD_NATIVE_ATTENTION_BUDGET_MB the parent set (read once per process by the core), then the
 * final latents, the images and the peak RSS (VmHWM, KiB) written to the file argv[3].
 */
import fs from 'node:fs';
import { StableDiffusionPipeline } from '../../lib/index.js';

const [model, out, size, batch] = process.argv.slice(2);
const pipe = await StableDiffusionPipeline.fromPretrained(model);
const hwmBefore = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
const r = await pipe.generate({
  prompt: 'a lighthouse at dusk', height: Number(size), width: Number(size), numInferenceSteps: 1, seed: 5,
  numImagesPerPrompt: Number(batch), outputType: 'image',
});
const hwm = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
const lat = await pipe.generate({
  prompt: 'a lighthouse at dusk', height: Number(size), width: Number(size), numInferenceSteps: 1, seed: 5,
  numImagesPerPrompt: Number(batch), outputType: 'latent',
});
fs.writeFileSync(out, JSON.stringify({
  hwmBefore, hwm,
  latents: Array.from(lat.latents!.data as Float32Array),
  images: r.images.map((im) => Buffer.from(im.data).toString('base64')),
}));
pipe.dispose();
