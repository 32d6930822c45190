/**
 * Calibration of the peak-memory estimate (issue 19, docs/RELIABILITY.md "Peak-memory estimate"):
 * for each size point, the estimate (read from the E_OUT_OF_MEMORY message under a 1-byte
 * memoryLimit) and the measured peak RSS growth of the same call, each measured in a fresh process
 * (glibc keeps freed memory resident, so a second call in one process under-reports): a 64² warm-up
 * call, then VmHWM reset with `echo 5 > /proc/self/clear_refs`, the call, VmHWM − VmRSS before.
 * Two measurements per point: the whole call, and the call with outputType 'latent' (no decode).
 *   node --import tsx scripts/memory-calibrate.ts <model> <size>x<batch>[,...] [guidanceScale=7.5] [steps=1]
 */
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline } from '../lib/index.js';

const [model, points, cfgArg, stepsArg, child] = process.argv.slice(2);
const guidanceScale = Number(cfgArg ?? 7.5);
const steps = Number(stepsArg ?? 1);
const kib = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
const pipe = await StableDiffusionPipeline.fromPretrained(model);
const call = (size: number, batch: number, outputType: 'image' | 'latent' = 'image') => pipe.generate({
  prompt: 'a lighthouse at dusk', height: size, width: size, numInferenceSteps: steps, seed: 1,
  numImagesPerPrompt: batch, guidanceScale, outputType,
});

if (child) { // measure one call: "<size>x<batch>:<outputType>"
  const [point, outputType] = child.split(':');
  const [size, batch] = point.split('x').map(Number);
  await call(64, 1); // warm-up: thread pools, kernel caches
  fs.writeFileSync('/proc/self/clear_refs', '5');
  const before = kib('VmRSS');
  await call(size, batch, outputType as 'image' | 'latent');
  console.log(((kib('VmHWM') - before) / 1024).toFixed(0));
} else {
  const measure = (p: string, outputType: string) => Number(execFileSync(process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), model, p, String(guidanceScale), String(steps), `${p}:${outputType}`],
    { encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' } }).trim());
  console.log('size\tbatch\testimate MiB\tstep\tdecode\tmeasured latent-only\tmeasured whole call\testimate / measured');
  for (const p of points.split(',')) {
    const [size, batch] = p.split('x').map(Number);
    pipe.setMemoryLimit(1);
    let msg = '';
    try { await call(size, batch); } catch (e) { msg = (e as Error).message; }
    const mib = (label: string) => {
      const m = new RegExp(`${label} ([\\d.]+) (GiB|MiB|KiB)`).exec(msg);
      return m ? Number(m[1]) * (m[2] === 'GiB' ? 1024 : m[2] === 'KiB' ? 1 / 1024 : 1) : Number.NaN;
    };
    const est = mib('estimated');
    const latent = measure(p, 'latent');
    const whole = measure(p, 'image');
    console.log(`${size}\t${batch}\t${est.toFixed(0)}\t${mib('step').toFixed(0)}\t${mib('decode').toFixed(0)}\t${latent}\t${whole}\t${(est / Math.max(latent, whole)).toFixed(2)}`);
  }
}
pipe.dispose();
