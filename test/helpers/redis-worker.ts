/**
 * Child process for test/server-redis.test.ts: one Redis worker (startRedisWorker) over the
 * server's PipelineExecutor (lib/server/executor.ts) on the given model — real generations.
 *
 *   tsx test/helpers/redis-worker.ts <redis-url> <queue> <model-dir> <lock-ms> <stalled-ms> [max-batch batch-wait-ms]
 *
 * Prints one line per fact the parent waits on: `ready`, `start <id>`, `step <id> <n>`,
 * `done <id>`, `aborted <id>`, `failed <id> <code>`, `closed`. SIGTERM closes with drain, SIGINT
 * without (running jobs go back to the queue).
 */
import { PipelineExecutor } from '../../lib/server/executor.js';
import type { JobExecutor } from '../../lib/server/backend.js';
import { startRedisWorker } from '../../lib/server/redis_backend.js';

const [url, queueName, modelDir, lockMs, stalledMs, maxBatch = '1', batchWaitMs = '0'] = process.argv.slice(2);
const say = (line: string): void => { process.stdout.write(`${line}\n`); };

const inner = await PipelineExecutor.load([modelDir]);
/** The executor, with each job's progress printed for the parent. */
const executor: JobExecutor & Pick<PipelineExecutor, 'descriptors'> = {
  models: () => inner.models(),
  descriptors: () => inner.descriptors(),
  dispose: () => inner.dispose(),
  async run(jobs) {
    say(`run ${jobs.map((j) => j.id).join(',')}`);
    const outcomes = await inner.run(jobs.map((job) => ({
      ...job,
      onEvent: (e) => {
        if (e.type === 'started') say(`start ${job.id}`);
        if (e.type === 'step') say(`step ${job.id} ${e.step}`);
        job.onEvent(e);
      },
    })));
    outcomes.forEach((o, i) => {
      const id = jobs[i].id;
      say('result' in o ? `done ${id}` : 'cancelled' in o ? `aborted ${id}` : `failed ${id} ${o.error.code}`);
    });
    return outcomes;
  },
};

const worker = await startRedisWorker({
  url, queueName, executor, lockDurationMs: Number(lockMs), stalledIntervalMs: Number(stalledMs),
  maxBatch: Number(maxBatch), batchWaitMs: Number(batchWaitMs),
});
say('ready');
for (const [signal, drain] of [['SIGTERM', true], ['SIGINT', false]] as const) {
  process.on(signal, () => {
    void worker.close({ drain }).then(() => { executor.dispose(); say('closed'); process.exit(0); });
  });
}
