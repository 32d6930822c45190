/**
 * Text to image.
 *
 *   npx tsx examples/txt2img.ts --model ./stable-diffusion-v1-5 \
 *     --prompt "a photo of an astronaut riding a horse on mars" --steps 25 --seed 42 --out astronaut.png
 *
 * Options: --model (diffusers folder or .safetensors file, required), --prompt, --negative-prompt,
 * --steps, --guidance, --seed, --width, --height, --scheduler, --device, --dtype, --out.
 */
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { StableDiffusionPipeline, SdError } from '../lib/index.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    prompt: { type: 'string', default: 'a photo of an astronaut riding a horse on mars' },
    'negative-prompt': { type: 'string' },
    steps: { type: 'string', default: '25' },
    guidance: { type: 'string', default: '7.5' },
    seed: { type: 'string' },
    width: { type: 'string' },
    height: { type: 'string' },
    scheduler: { type: 'string', default: 'EulerAncestralDiscreteScheduler' },
    device: { type: 'string', default: 'cpu' },
    dtype: { type: 'string', default: 'float32' },
    out: { type: 'string', default: 'txt2img.png' },
  },
});
if (!a.model) {
  console.error('usage: npx tsx examples/txt2img.ts --model <dir|file.safetensors> [--prompt ...] [--out file.png]');
  process.exit(1);
}
const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));

try {
  const isFile = (await stat(a.model)).isFile();
  const load = { device: a.device, dtype: a.dtype as 'float32' | 'float16' | 'bfloat16' };
  // `await using` disposes the native model when the block ends.
  await using pipe = isFile
    ? await StableDiffusionPipeline.fromSingleFile(a.model, load)
    : await StableDiffusionPipeline.fromPretrained(a.model, load);
  pipe.setScheduler(a.scheduler);
  console.log(`${pipe.info.className} (${pipe.info.family}) on ${pipe.info.device}; scheduler ${pipe.scheduler.samplerName}`);

  const { images, seed, timings } = await pipe.generate({
    prompt: a.prompt,
    negativePrompt: a['negative-prompt'],
    numInferenceSteps: num(a.steps),
    guidanceScale: num(a.guidance),
    seed: num(a.seed),
    width: num(a.width),
    height: num(a.height),
    onStep: ({ step, numSteps, elapsedMs }) => process.stdout.write(`\rstep ${step}/${numSteps}  ${(elapsedMs / 1000).toFixed(1)} s`),
  });
  process.stdout.write('\n');
  await images[0].save(a.out);
  console.log(`wrote ${a.out} (seed ${seed}, ${(timings.wallMs / 1000).toFixed(1)} s)`);
} catch (e) {
  console.error(e instanceof SdError ? `error [${e.code}]: ${e.message}` : e);
  process.exitCode = 1;
}
