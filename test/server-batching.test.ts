/**
 * `sd-native serve` beyond one request: dynamic batching in the in-process backend (issue 15,
 * item 2) — compatible queued jobs run as one call and each image equals the same request served
 * alone (same seeds and parameters; pixels within one level: batched GEMMs round differently) — and the CLI's SIGTERM drain (running jobs finish and are answered, new
 * ones get 503, exit status 0).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalBackend } from '../lib/server/local_backend.js';
import { PipelineExecutor, batchKey, librarySupportsSeedLists } from '../lib/server/executor.js';
import type { ExecutorJob, JobExecutor, JobInfo, JobRequest } from '../lib/server/backend.js';
import { fixture } from './helpers/fixtures.js';
import sharp from 'sharp';
import { readPngText } from '../lib/index.js';

/**
 * A batched image against the same request served alone: the same seeds, the same parameters
 * chunk, and pixels within one level. Not byte-identical on the CPU: the initial noise and every
 * ancestral draw are bit-exact (one CPU generator per image, test/per-image-seeds.test.ts), but a
 * batched GEMM rounds differently from a batch-of-one GEMM, which moves some pixels by one level
 * (the tolerance test/per-image-seeds.test.ts uses for the library's own batches).
 */
async function expectSameImage(batched: string, alone: string): Promise<{ differing: number; maxDiff: number }> {
  const [a, b] = [Buffer.from(batched, 'base64'), Buffer.from(alone, 'base64')];
  expect(readPngText(a)).toEqual(readPngText(b));
  const [pa, pb] = await Promise.all([sharp(a).raw().toBuffer(), sharp(b).raw().toBuffer()]);
  expect(pa.length).toBe(pb.length);
  let differing = 0;
  let maxDiff = 0;
  for (let i = 0; i < pa.length; i++) {
    const d = Math.abs(pa[i] - pb[i]);
    if (d > 0) differing++;
    maxDiff = Math.max(maxDiff, d);
  }
  expect(maxDiff).toBeLessThanOrEqual(1);
  return { differing, maxDiff };
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const model = fixture('models', 'tiny-sd15');
let executor: PipelineExecutor;
beforeAll(async () => { executor = await PipelineExecutor.load([model], { threads: 1 }); });
afterAll(() => executor?.dispose());

/** The executor, recording how many jobs each call ran. */
function recording(calls: number[]): JobExecutor {
  return {
    run: (jobs: ExecutorJob[]) => { calls.push(jobs.length); return executor.run(jobs); },
    models: () => executor.models(),
    dispose: () => undefined,
  };
}

async function finished(backend: LocalBackend, id: string): Promise<JobInfo> {
  await new Promise<void>((resolve) => {
    let unsub: (() => void) | undefined;
    let done = false;
    unsub = backend.subscribe(id, (e) => { if (e.type === 'result' || e.type === 'error' || e.type === 'cancelled') { done = true; resolve(); unsub?.(); } });
    if (done) unsub();
  });
  return (await backend.get(id))!;
}

const job = (prompt: string, seed: number, extra: Record<string, unknown> = {}): JobRequest =>
  ({ model: 'tiny-sd15', task: 'text2image', params: { prompt, seed, numInferenceSteps: 3, width: 32, height: 32, ...extra } });

describe('dynamic batching', () => {
  it('batchKey: equal for requests that may share a call, different when model, size, steps, scheduler, guidance or n differ', () => {
    const k = batchKey(job('a', 1));
    if (!librarySupportsSeedLists()) {
      // without per-image generators a batched image would differ from the image served alone
      expect(k).toBeUndefined();
      return;
    }
    expect(k).toBeDefined();
    expect(batchKey(job('another prompt', 2, { negativePrompt: 'x' }))).toBe(k);
    for (const change of [{ width: 40 }, { numInferenceSteps: 4 }, { scheduler: 'Euler a' }, { guidanceScale: 3 }, { numImagesPerPrompt: 2 }, { clipSkip: 1 }]) {
      expect(batchKey(job('a', 1, change))).not.toBe(k);
    }
    expect(batchKey({ ...job('a', 1), model: 'other' })).not.toBe(k);
    expect(batchKey({ ...job('a', 1), task: 'image2image' })).toBeUndefined();
  });

  it.runIf(librarySupportsSeedLists())('compatible queued jobs run as one call; every image equals the same request served alone (within one level)', async () => {
    const calls: number[] = [];
    const batched = new LocalBackend(recording(calls), { maxBatch: 4, batchWaitMs: 500 });
    const requests = [
      job('a red cube', 11), job('a green sphere', 12, { negativePrompt: 'blur' }), job('a blue cone', 13),
      job('a red cube', 11, { numInferenceSteps: 2 }), // not compatible: its own call
    ];
    const ids = await Promise.all(requests.map((r) => batched.submit(r)));
    const infos = await Promise.all(ids.map((id) => finished(batched, id)));
    expect(calls).toEqual([3, 1]);
    const aloneCalls: number[] = [];
    const alone = new LocalBackend(recording(aloneCalls), { maxBatch: 1 });
    for (const [i, r] of requests.entries()) {
      const solo = await finished(alone, await alone.submit(r));
      expect(infos[i].status).toBe('succeeded');
      expect(infos[i].result!.seeds).toEqual(solo.result!.seeds);
      const d = await expectSameImage(infos[i].result!.images[0], solo.result!.images[0]);
      console.log(`batched vs alone, job ${i}: ${d.differing} of ${32 * 32 * 3} bytes differ, max ${d.maxDiff} level`);
    }
    expect(aloneCalls).toEqual([1, 1, 1, 1]);
  });

  it.runIf(librarySupportsSeedLists())('per-image seeds with n > 1 and an ancestral sampler: batched = alone; a job cancelled in a batch leaves the others', async () => {
    const calls: number[] = [];
    const batched = new LocalBackend(recording(calls), { maxBatch: 3, batchWaitMs: 500 });
    const opts = { scheduler: 'Euler a', numImagesPerPrompt: 2, numInferenceSteps: 6 };
    const requests = [job('one', 5, opts), job('two', 100, opts), job('three', 7, opts)];
    const ids = await Promise.all(requests.map((r) => batched.submit(r)));
    const cancelled = new Promise<void>((resolve) => {
      const unsub = batched.subscribe(ids[2], (e) => { if (e.type === 'step' && e.step === 2) { void batched.cancel(ids[2]); unsub(); resolve(); } });
    });
    const infos = await Promise.all(ids.map((id) => finished(batched, id)));
    await cancelled;
    expect(calls).toEqual([3]);
    expect(infos.map((i) => i.status)).toEqual(['succeeded', 'succeeded', 'cancelled']);
    expect(infos[1].result!.seeds).toEqual([100, 101]);
    const alone = new LocalBackend(executor);
    for (const i of [0, 1]) {
      const solo = await finished(alone, await alone.submit(requests[i]));
      expect(infos[i].result!.images).toHaveLength(2);
      for (const k of [0, 1]) await expectSameImage(infos[i].result!.images[k], solo.result!.images[k]);
    }
  });

  it('with batching off, or for incompatible jobs, every job runs in its own call', async () => {
    const calls: number[] = [];
    const b = new LocalBackend(recording(calls), { maxBatch: 4, batchWaitMs: 50 });
    const ids = await Promise.all([job('a', 1), job('b', 2, { width: 40 })].map((r) => b.submit(r)));
    const infos = await Promise.all(ids.map((id) => finished(b, id)));
    expect(calls).toEqual([1, 1]);
    expect(infos.map((i) => i.status)).toEqual(['succeeded', 'succeeded']);
  });
});

describe('sd-native serve (CLI)', () => {
  it('listens, answers, and on SIGTERM drains: the running request is answered, new ones get 503, exit status 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli.ts', 'serve', '--model', model, '--port', '0', '--threads', '1'], {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const base = await new Promise<string>((resolve, reject) => {
        const t = setInterval(() => {
          const m = /listening on (http:\/\/\S+)/.exec(stderr);
          if (m) { clearInterval(t); resolve(m[1]); }
        }, 50);
        void exited.then((code) => { clearInterval(t); reject(new Error(`serve exited ${code}: ${stderr}`)); });
      });
      const running = fetch(`${base}/sdapi/v1/txt2img`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'last one', steps: 400, width: 32, height: 32, seed: 3 }),
      });
      for (let i = 0; i < 400; i++) {
        const p = await (await fetch(`${base}/sdapi/v1/progress`)).json() as { state: { sampling_step: number } };
        if (p.state.sampling_step >= 1) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // 400 steps: seconds even on a fast machine, so the request below meets a draining server
      // (with 25 steps, libtorch 2.6 finished the job before it, and the server had exited)
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      const refused = await fetch(`${base}/v1/images/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"late"}' });
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('E_UNAVAILABLE');
      const r = await running;
      expect(r.status).toBe(200);
      const body = await r.json() as { images: string[]; info: string };
      expect(body.images).toHaveLength(1);
      expect(JSON.parse(body.info).seed).toBe(3);
      expect(await exited).toBe(0);
      expect(stderr).toContain('SIGTERM: draining');
      expect(stderr).toContain('drained; exiting');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses bad flags with the flag named', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli.ts', 'serve', '--model', model, '--max-batch', '0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toContain('error [E_INVALID_ARGUMENT]: --max-batch must be an integer in [1, 64]; received 0');
  });
});
