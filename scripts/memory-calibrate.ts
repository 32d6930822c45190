/**
 * Calibration of the peak-memory estimate (issue 19, docs/RELIABILITY.md "Peak-memory estimate"):
 * for each size point, the estimate (read from the E_OUT_OF_MEMORY message under a 1-byte
 * memoryLimit) and the measured peak RSS growth of the same call (VmHWM reset with
 * `echo 5 > /proc/self/clear_refs` just before it, minus VmRSS then).
 *   node --import tsx scripts/memory-calibrate.ts <model> <size>x<batch>[,...] [cfg=7.5] [steps=1]
 */
import fs from 'node:fs';
import { StableDiffusionPipeline } from '../lib/index.js';

const [model, points, cfgArg, stepsArg] = process.argv.slice(2);
const guidanceScale = Number(cfgArg ?? 7.5);
const steps = Number(stepsArg ?? 1);
const kib = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
const pipe = await StableDiffusionPipeline.fromPretrained(model);
const call = (size: number, batch: number, outputType: 'image' | 'latent' = 'image') => pipe.generate({
  prompt: 'a lighthouse at dusk', height: size, width: size, numInferenceSteps: steps, seed: 1,
  numImagesPerPrompt: batch, guidanceScale, outputType,
});
/** Peak RSS growth (MiB) of one call. */
async function measure(size: number, batch: number, outputType: 'image' | 'latent'): Promise<number> {
  fs.writeFileSync('/proc/self/clear_refs', '5');
  const before = kib('VmRSS');
  await call(size, batch, outputType);
  return (kib('VmHWM') - before) / 1024;
}
await call(64, 1); // warm-up: thread pools, kernel caches
console.log('size\tbatch\testimate\tunet\tvae\tmeasured latent-only\tmeasured MiB\tratio');
for (const p of points.split(',')) {
  const [size, batch] = p.split('x').map(Number);
  pipe.setMemoryLimit(1);
  let msg = '';
  try { await call(size, batch); } catch (e) { msg = (e as Error).message; }
  const mib = (re: RegExp) => {
    const m = re.exec(msg);
    if (!m) return Number.NaN;
    return Number(m[1]) * (m[2] === 'GiB' ? 1024 : m[2] === 'KiB' ? 1 / 1024 : 1);
  };
  const est = mib(/estimated ([\d.]+) (GiB|MiB|KiB)/), unet = mib(/step ([\d.]+) (GiB|MiB|KiB)/), vae = mib(/decode ([\d.]+) (GiB|MiB|KiB)/);
  pipe.setMemoryLimit(null);
  const latentOnly = await measure(size, batch, 'latent');
  const grown = await measure(size, batch, 'image');
  console.log(`${size}\t${batch}\t${est.toFixed(0)}\t${unet.toFixed(0)}\t${vae.toFixed(0)}\t${latentOnly.toFixed(0)}\t${grown.toFixed(0)}\t${(est / grown).toFixed(2)}`);
}
pipe.dispose();
