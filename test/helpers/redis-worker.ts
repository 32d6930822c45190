/**
 * Child process for test/server-redis.test.ts: one Redis worker (startRedisWorker) over a small
 * real executor that runs StableDiffusionPipeline on the given model (no canned images).
 *
 *   tsx test/helpers/redis-worker.ts <redis-url> <queue> <model-dir> <lock-ms> <stalled-ms>
 *
 * Prints one line per fact the parent waits on: `ready`, `start <id>`, `step <id> <n>`,
 * `done <id>`, `closed`. SIGTERM closes with drain.
 */
import path from 'node:path';
import { StableDiffusionPipeline, SdError } from '../../lib/index.js';
import type { ExecutorJob, JobExecutor, JobResult } from '../../lib/server/backend.js';
import { startRedisWorker } from '../../lib/server/redis_backend.js';

const [url, queueName, modelDir, lockMs, stalledMs] = process.argv.slice(2);
const say = (line: string): void => { process.stdout.write(`${line}\n`); };

const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
const name = path.basename(modelDir);

/** Runs each job alone through pipe.generate (the serve branch's executor batches; this one need not). */
const executor: JobExecutor = {
  models: () => [name],
  dispose: () => pipe.dispose(),
  async run(jobs: ExecutorJob[]) {
    const out: Awaited<ReturnType<JobExecutor['run']>> = [];
    for (const job of jobs) {
      const p = job.request.params;
      say(`start ${job.id}`);
      job.onEvent({ type: 'started' });
      const t0 = performance.now();
      try {
        const seed = Array.isArray(p.seed) ? p.seed[0] : p.seed;
        const r = await pipe.generate({
          prompt: p.prompt, negativePrompt: p.negativePrompt, width: p.width, height: p.height,
          numInferenceSteps: p.numInferenceSteps, guidanceScale: p.guidanceScale, seed,
          signal: job.signal,
          onStep: (s) => { say(`step ${job.id} ${s.step}`); job.onEvent({ type: 'step', step: s.step, numSteps: s.numSteps }); },
        });
        const images = await Promise.all(r.images.map(async (im) => (await im.toPNG()).toString('base64')));
        const result: JobResult = {
          images, seeds: r.seeds, parameters: r.images.map((im) => im.infotext), seconds: (performance.now() - t0) / 1000,
        };
        say(`done ${job.id}`);
        out.push({ result });
      } catch (e) {
        if (e instanceof SdError && e.code === 'E_ABORTED') { say(`aborted ${job.id}`); out.push({ cancelled: true }); } else {
          out.push({ error: { code: e instanceof SdError ? e.code : 'E_INTERNAL', message: (e as Error).message } });
        }
      }
    }
    return out;
  },
};

const worker = await startRedisWorker({
  url, queueName, executor, lockDurationMs: Number(lockMs), stalledIntervalMs: Number(stalledMs),
});
say('ready');
process.on('SIGTERM', () => {
  void worker.close({ drain: true }).then(() => { executor.dispose(); say('closed'); process.exit(0); });
});
