/**
 * Child process for test/vae-auto-slicing.test.ts: one batch-of-2 generate on the tiny pipeline
 * under the SD_NATIVE_ATTENTION_BUDGET_MB the parent set (read once per process), with the
 * attention backend argv[4] ('auto' or 'math'), then the same with enableVaeSlicing(); the images
 * (base64) of both written to argv[3].
 */
import fs from 'node:fs';
import { StableDiffusionPipeline } from '../../lib/index.js';

const [model, out, backend] = process.argv.slice(2);
const pipe = await StableDiffusionPipeline.fromPretrained(model);
pipe.setAttentionBackend(backend as 'auto' | 'math');
const call = () => pipe.generate({
  prompt: 'a lighthouse at dusk', height: 64, width: 64, numInferenceSteps: 1, seed: 5, numImagesPerPrompt: 2,
});
const r = await call();
pipe.enableVaeSlicing();
const sliced = await call();
const b64 = (x: typeof r) => x.images.map((im) => Buffer.from(im.data).toString('base64'));
fs.writeFileSync(out, JSON.stringify({ images: b64(r), explicitlySliced: b64(sliced) }));
pipe.dispose();
