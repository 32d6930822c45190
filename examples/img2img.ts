/**
 * Image to image: start from an existing picture and steer it with a prompt.
 *
 *   npx tsx examples/img2img.ts --model ./stable-diffusion-v1-5 --image sketch.png \
 *     --prompt "a fantasy landscape, trending on artstation" --strength 0.75 --seed 1 --out landscape.png
 *
 * Without --image a synthetic gradient is used, so the example runs with nothing but a model.
 * The image is resized to --width × --height when given, else to its own size rounded down to a
 * multiple of 8 (as diffusers does).
 */
import { parseArgs } from 'node:util';
import { stat } from 'node:fs/promises';
import { StableDiffusionImg2ImgPipeline, SdError, type ImageInput } from '../lib/index.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    image: { type: 'string' },
    prompt: { type: 'string', default: 'a fantasy landscape, trending on artstation' },
    'negative-prompt': { type: 'string' },
    strength: { type: 'string', default: '0.75' },
    steps: { type: 'string', default: '30' },
    guidance: { type: 'string', default: '7.5' },
    seed: { type: 'string' },
    width: { type: 'string' },
    height: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    out: { type: 'string', default: 'img2img.png' },
  },
});
if (!a.model) {
  console.error('usage: npx tsx examples/img2img.ts --model <dir|file.safetensors> [--image in.png] [--prompt ...] [--strength 0.75]');
  process.exit(1);
}
const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));

/** A 512×512 RGB gradient (raw pixels are an accepted input, like paths and encoded buffers). */
function gradient(size = 512): ImageInput {
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 3;
      data[i] = (x * 255) / size;
      data[i + 1] = (y * 255) / size;
      data[i + 2] = 128;
    }
  }
  return { data, width: size, height: size, channels: 3 };
}

try {
  const isFile = (await stat(a.model)).isFile();
  await using pipe = isFile
    ? await StableDiffusionImg2ImgPipeline.fromSingleFile(a.model, { device: a.device })
    : await StableDiffusionImg2ImgPipeline.fromPretrained(a.model, { device: a.device });

  const { images, seed } = await pipe.generate({
    image: a.image ?? gradient(pipe.info.defaultWidth),
    prompt: a.prompt,
    negativePrompt: a['negative-prompt'],
    strength: num(a.strength),
    numInferenceSteps: num(a.steps),
    guidanceScale: num(a.guidance),
    seed: num(a.seed),
    width: num(a.width),
    height: num(a.height),
    onStep: ({ step, numSteps }) => process.stdout.write(`\rstep ${step}/${numSteps}`),
  });
  process.stdout.write('\n');
  await images[0].save(a.out);
  console.log(`wrote ${a.out} (${images[0].width}x${images[0].height}, seed ${seed})`);
} catch (e) {
  console.error(e instanceof SdError ? `error [${e.code}]: ${e.message}` : e);
  process.exitCode = 1;
}
