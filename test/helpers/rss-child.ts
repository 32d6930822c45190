/**
 * Child process for test/dispose-memory.test.ts (run with --expose-gc): `rounds` rounds of
 * loading `count` tiny pipelines at once and disposing them, printing the RSS (MiB, VmRSS) after
 * each round's dispose and gc() as JSON.
 */
import fs from 'node:fs';
import { StableDiffusionPipeline } from '../../lib/index.js';

const [model, rounds, count] = process.argv.slice(2);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
const gc = (globalThis as { gc?: () => void }).gc!;
const after: number[] = [];
for (let r = 0; r < Number(rounds); r++) {
  const ps = await Promise.all(Array.from({ length: Number(count) }, () => StableDiffusionPipeline.fromPretrained(model)));
  await ps[0].generate({ prompt: 'a fox', height: 32, width: 32, numInferenceSteps: 1, seed: 1 });
  for (const p of ps) p.dispose();
  gc();
  await new Promise((res) => setTimeout(res, 300)); // the allocator trim runs on a background thread
  after.push(rss());
}
process.stdout.write(JSON.stringify(after));
