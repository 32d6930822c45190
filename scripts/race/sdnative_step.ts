/**
 * sd-native side of the CPU race (scripts/race.sh): one pipeline call on a diffusers folder, CFG
 * (UNet batch 2), printing one `RESULT` JSON line: seconds per CFG step (median of the intervals
 * between onStep calls, so the first step's warm-up is excluded), text encoding, VAE decode, load.
 *   npx tsx scripts/race/sdnative_step.ts MODEL_DIR SIZE STEPS DTYPE
 */
import { StableDiffusionPipeline, buildInfo } from '../../lib/index.js';

const [dir, size = '256', steps = '4', dtype = 'float32'] = process.argv.slice(2);
const t0 = performance.now();
const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device: 'cpu', dtype: dtype as 'float32' | 'bfloat16' });
const load = (performance.now() - t0) / 1000;
const marks: number[] = [];
const res = await pipe.generate({
  prompt: 'a photograph of an astronaut riding a horse', negativePrompt: '', guidanceScale: 7, seed: 42,
  numInferenceSteps: Number(steps), height: Number(size), width: Number(size), outputType: 'image',
  onStep: () => { marks.push(performance.now()); },
});
const per = marks.slice(1).map((m, i) => (m - marks[i]) / 1000).sort((a, b) => a - b);
const b = buildInfo();
console.log('RESULT ' + JSON.stringify({
  system: 'sd-native', libtorch: b.libtorchVersion, threads: b.threads, dtype, size: Number(size),
  step: per.length ? per[Math.floor(per.length / 2)] : NaN, steps: per,
  text: res.timings.encodeMs / 1000, vae: res.timings.decodeMs / 1000, load,
}));
pipe.dispose();
