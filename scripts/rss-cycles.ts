/**
 * RSS over load/dispose cycles (issue 19, items 4 and 6): loads a pipeline, optionally generates
 * once (or disposes it while a call runs), disposes, waits for the background malloc_trim, runs
 * gc(), and prints VmRSS after each cycle.
 *
 *   node --expose-gc --import tsx scripts/rss-cycles.ts <model folder> [cycles=50] [gen|dispose-running|load]
 *
 * Prints one line per cycle and a summary: RSS before any load, after cycle 1 (the warmed-up
 * level: libtorch's and the allocator's one-time state), after the last, and the largest excursion
 * from the warmed-up level over cycles 2..N, in percent.
 */
import fs from 'node:fs';
import { StableDiffusionPipeline } from '../lib/index.js';

const [model, cyclesArg = '50', mode = 'gen'] = process.argv.slice(2);
if (!model) {
  console.error('usage: node --expose-gc --import tsx scripts/rss-cycles.ts <model> [cycles] [gen|dispose-running|load]');
  process.exit(2);
}
const cycles = Number(cyclesArg);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
/** gc() and wait until RSS stops falling (the trim runs on a native background thread): two
 * readings 100 ms apart within 1 %, or 5 s. */
const settle = async () => {
  let last = Infinity;
  for (let waited = 0; waited < 5000; waited += 100) {
    gc();
    await new Promise((r) => setTimeout(r, 100));
    const now = rssMiB();
    if (Math.abs(now - last) <= 0.01 * now) return;
    last = now;
  }
};
const call = { prompt: 'a lighthouse', width: 64, height: 64, numInferenceSteps: 2, seed: 1 };

await settle();
const start = rssMiB();
const after: number[] = [];
for (let c = 1; c <= cycles; c++) {
  const pipe = await StableDiffusionPipeline.fromPretrained(model);
  if (mode === 'gen') await pipe.generate(call);
  if (mode === 'dispose-running') {
    const running = pipe.generate({ ...call, numInferenceSteps: 20 }).catch((e) => e);
    await new Promise((r) => setTimeout(r, 30));
    pipe.dispose();
    const r = await running;
    if (!(r instanceof Error) || (r as { code?: string }).code !== 'E_DISPOSED') {
      // a call that finished before the dispose is fine; anything else is reported
      if (r instanceof Error) console.log(`cycle ${c}: the running call ended with ${(r as { code?: string }).code ?? r.name}`);
    }
  } else {
    pipe.dispose();
  }
  await settle();
  after.push(rssMiB());
  const m = process.memoryUsage();
  console.log(`cycle ${c}: ${after[c - 1].toFixed(0)} MiB (V8 heap ${(m.heapTotal / 2 ** 20).toFixed(0)} MiB, external ` +
    `${(m.external / 2 ** 20).toFixed(0)} MiB, array buffers ${(m.arrayBuffers / 2 ** 20).toFixed(0)} MiB)`);
}
const warm = after[0];
const excursion = Math.max(...after.slice(1).map((x) => Math.abs(x - warm) / warm));
console.log(`RESULT start ${start.toFixed(0)} MiB, after cycle 1 ${warm.toFixed(0)} MiB, after cycle ${cycles} ` +
  `${after[cycles - 1].toFixed(0)} MiB, max |excursion| over cycles 2..${cycles}: ${(100 * excursion).toFixed(1)} % (${mode})`);
