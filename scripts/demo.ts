/**
 * The main job in one command: make a random-weight SD 1.5-family model if none is given,
 * run a real prompt through the whole pipeline and write demo.png.
 *   npm run demo                       # tiny model, 128×128, 20 steps (seconds)
 *   npm run demo -- --full             # the real SD 1.5 architecture at 512×512 (minutes on 2 cores)
 *   npm run demo -- --model <dir|file> # your own weights
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { StableDiffusionPipeline, createModel } from '../lib/index.js';

const args = process.argv.slice(2);
const full = args.includes('--full');
const modelArg = args.indexOf('--model') >= 0 ? args[args.indexOf('--model') + 1] : undefined;
const prompt = 'a photo of an astronaut riding a horse on mars';

let model = modelArg;
if (!model) {
  model = path.resolve('.models', full ? 'sd15-full-random' : 'sd15-tiny-random');
  if (!fs.existsSync(path.join(model, 'unet', 'diffusion_pytorch_model.safetensors'))) {
    console.log(`creating a random-weight SD 1.5 ${full ? 'full-size' : 'tiny'} model in ${model} …`);
    const created = await createModel({ preset: 'sd15', scale: full ? 'full' : 'tiny', out: model, seed: 0 });
    console.log('  parameters:', created.parameters);
  }
}
const t0 = performance.now();
const pipe = model.endsWith('.safetensors')
  ? await StableDiffusionPipeline.fromSingleFile(model)
  : await StableDiffusionPipeline.fromPretrained(model);
console.log(`loaded ${model} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
pipe.setScheduler('EulerAncestralDiscreteScheduler');
const size = full ? 512 : 64;
const { images, seeds, timings } = await pipe.generate({
  prompt,
  negativePrompt: 'blurry',
  numInferenceSteps: 20,
  guidanceScale: 7.5,
  width: size,
  height: size,
  seed: 42,
  onStep: ({ step, numSteps, elapsedMs }) => process.stdout.write(`\rstep ${step}/${numSteps}  ${(elapsedMs / 1000).toFixed(1)} s`),
});
process.stdout.write('\n');
await writeFile('demo.png', await images[0].toPNG());
console.log(`wrote demo.png (${images[0].width}×${images[0].height}, seed ${seeds[0]}) in ${(timings.totalMs / 1000).toFixed(1)} s`);
pipe.dispose();
