/**
 * Scale-out of `sd-native serve` on Redis (lib/server/redis_backend.ts), against a real
 * redis-server (Debian package `redis-server`; scripts/setup.sh installs it) started here on a
 * free loopback port with no persistence, one API (this process) and two worker processes
 * (test/helpers/redis-worker.ts: startRedisWorker over StableDiffusionPipeline on tiny-sd15).
 * Proves: N jobs complete exactly once with step events across processes; queued and running
 * cancel; unknown model refused at submit; kill -9 of a worker mid-job → the job completes once on
 * the other worker; Redis restarted while idle → API and workers reconnect, new jobs complete.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { fixture } from './helpers/fixtures.js';
import { createRedisBackend, startRedisWorker, type RedisJobBackend } from '../lib/server/redis_backend.js';
import type { JobEvent, JobRequest } from '../lib/server/backend.js';
import { SdError } from '../lib/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modelDir = fixture('models', 'tiny-sd15');
const MODEL = 'tiny-sd15';
// short lock / stall check so that a killed worker's job is re-queued within ~3 s (production: 30 s each)
const LOCK_MS = 2000;
const STALLED_MS = 1000;

const redisBin = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => T | Promise<T>, ms: number): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** A child process whose stdout lines are kept. */
interface Proc { child: ChildProcess; lines: string[]; name: string; exited: Promise<number | null> }

function track(child: ChildProcess, name: string): Proc {
  const lines: string[] = [];
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => { err += d.toString(); if (err.length > 20_000) err = err.slice(-10_000); });
  Object.defineProperty(lines, 'stderr', { get: () => err });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => {
    if (code && code !== 0) process.stderr.write(`[${name}] exited ${code}: ${err.slice(-2000)}\n`);
    r(code);
  }));
  return { child, lines, name, exited };
}

let dir: string;
let port: number;
let url: string;
let redis: Proc | undefined;
const workers: Proc[] = [];
let api: RedisJobBackend;
const queueName = `test-${process.pid}`;

async function startRedis(): Promise<void> {
  const child = spawn(redisBin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] });
  redis = track(child, 'redis');
  await until('redis-server to answer PING', () => new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('error', () => resolve(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')); });
  }), 10_000);
}

async function stopRedis(): Promise<void> {
  if (!redis) return;
  redis.child.kill('SIGTERM');
  await redis.exited;
  redis = undefined;
}

function startWorker(name: string, queue = queueName, batch: string[] = []): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/redis-worker.ts', url, queue, modelDir, String(LOCK_MS), String(STALLED_MS), ...batch], {
    cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
    // one intra-op thread per worker: two workers share this machine's cores
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  const p = track(child, name);
  workers.push(p);
  return p;
}

const request = (seed: number, steps = 3, size = 32): JobRequest => ({
  model: MODEL, task: 'text2image',
  params: { prompt: 'a red cube', width: size, height: size, numInferenceSteps: steps, guidanceScale: 7.5, seed },
});

/** Subscribes and records every event; `settled` resolves with all events after the terminal one (and a grace period). */
function watch(id: string): { events: JobEvent[]; settled: Promise<JobEvent[]> } {
  const events: JobEvent[] = [];
  let resolveTerminal!: () => void;
  const terminal = new Promise<void>((r) => { resolveTerminal = r; });
  api.subscribe(id, (e) => {
    events.push(e);
    if (e.type === 'result' || e.type === 'error' || e.type === 'cancelled') resolveTerminal();
  });
  // a second outcome would arrive after the first: wait a little longer before counting
  return { events, settled: terminal.then(() => sleep(300)).then(() => events) };
}

const terminals = (events: JobEvent[]) => events.filter((e) => e.type === 'result' || e.type === 'error' || e.type === 'cancelled');
const doneCount = (id: string) => workers.reduce((n, w) => n + w.lines.filter((l) => l === `done ${id}`).length, 0);

async function expectPng(b64: string, size: number): Promise<void> {
  const buf = Buffer.from(b64, 'base64');
  const meta = await sharp(buf).metadata();
  expect(meta.format).toBe('png');
  expect([meta.width, meta.height]).toEqual([size, size]);
  const { data } = await sharp(buf).raw().toBuffer({ resolveWithObject: true });
  expect(Math.max(...data) - Math.min(...data)).toBeGreaterThan(0); // an image, not a blank
}

describe.runIf(process.platform === 'linux')('Redis scale-out (BullMQ): 1 API + 2 workers on a real redis-server', () => {
  beforeAll(async () => {
    if (!redisBin) throw new Error('redis-server is not installed (scripts/setup.sh installs the Debian package redis-server)');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-redis-'));
    port = await freePort();
    url = `redis://127.0.0.1:${port}`;
    await startRedis();
    const [a, b] = [startWorker('worker-a'), startWorker('worker-b')];
    api = await createRedisBackend({ url, queueName });
    await until('both workers to be ready', () => a.lines.includes('ready') && b.lines.includes('ready'), 90_000);
  }, 120_000);

  afterAll(async () => {
    await api?.close({ drain: false }).catch(() => {});
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await stopRedis();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('workers advertise their models; an unknown model is refused before enqueue (E_MODEL_NOT_FOUND)', async () => {
    expect(await api.models()).toEqual([MODEL]);
    expect((await api.workers()).length).toBe(2);
    const [d] = await api.modelDescriptors();
    expect(d).toMatchObject({ name: MODEL, family: 'sd1' });
    const before = await api.stats();
    const err = await api.submit({ ...request(1), model: 'no-such-model' }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SdError);
    expect((err as SdError).code).toBe('E_MODEL_NOT_FOUND');
    expect((err as SdError).message).toContain('tiny-sd15');
    expect(await api.stats()).toEqual(before);
    expect(await api.get('no-such-id')).toBeUndefined();
    expect(await api.cancel('no-such-id')).toBe(false);
  }, 30_000);

  it('bad options and an unreachable Redis are typed errors, not hangs', async () => {
    const executor = { run: async () => [], models: () => [], dispose: () => {} };
    const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e as SdError).code);
    expect(await code(createRedisBackend({ url: 'http://127.0.0.1:6379' }))).toBe('E_INVALID_ARGUMENT');
    expect(await code(startRedisWorker({ url, executor, maxBatch: 0 }))).toBe('E_INVALID_ARGUMENT');
    expect(await code(startRedisWorker({ url, executor, batchWaitMs: -1 }))).toBe('E_INVALID_ARGUMENT');
    const closedPort = await freePort();
    const t0 = Date.now();
    expect(await code(createRedisBackend({ url: `redis://127.0.0.1:${closedPort}` }))).toBe('E_UNAVAILABLE');
    expect(Date.now() - t0).toBeLessThan(15_000);
  }, 30_000);

  it('N jobs all complete exactly once, with step events across processes; the same seed gives the same image on either worker', async () => {
    const N = 6;
    // jobs 0 and 1 share seed and parameters (they may run on different workers)
    const seeds = [11, 11, 12, 13, 14, 15];
    const ids = await Promise.all(seeds.map((s) => api.submit(request(s, 4))));
    expect(new Set(ids).size).toBe(N);
    const watched = ids.map((id) => watch(id));
    const all = await Promise.all(watched.map((w) => w.settled));
    for (const [i, events] of all.entries()) {
      const t = terminals(events);
      expect(t.map((e) => e.type), `job ${i}: ${JSON.stringify(events.map((e) => e.type))}`).toEqual(['result']);
      const steps = events.filter((e): e is Extract<JobEvent, { type: 'step' }> => e.type === 'step');
      expect(steps.length, `job ${i} step events`).toBeGreaterThan(0);
      // numSteps as the pipeline reports it (tiny-sd15's PNDM runs numInferenceSteps + 1 steps)
      const numSteps = steps[0].numSteps;
      expect(numSteps).toBeGreaterThanOrEqual(4);
      expect(steps.every((s, k) => s.numSteps === numSteps && s.step >= 1 && s.step <= numSteps && (k === 0 || s.step > steps[k - 1].step)), JSON.stringify(steps)).toBe(true);
      const r = (t[0] as Extract<JobEvent, { type: 'result' }>).result;
      expect(r.images.length).toBe(1);
      expect(r.seeds).toEqual([seeds[i]]);
      expect(r.parameters[0]).toContain(`Seed: ${seeds[i]}`);
      await expectPng(r.images[0], 32);
    }
    const r0 = (terminals(all[0])[0] as Extract<JobEvent, { type: 'result' }>).result;
    const r1 = (terminals(all[1])[0] as Extract<JobEvent, { type: 'result' }>).result;
    const r2 = (terminals(all[2])[0] as Extract<JobEvent, { type: 'result' }>).result;
    expect(r1.images[0]).toBe(r0.images[0]);
    expect(r2.images[0]).not.toBe(r0.images[0]);
    for (const id of ids) {
      expect(doneCount(id), `workers that finished ${id}`).toBe(1);
      const info = await api.get(id);
      expect(info?.status).toBe('succeeded');
      expect(info?.result?.images.length).toBe(1);
      expect(info!.finishedAt! >= info!.startedAt! && info!.startedAt! >= info!.createdAt).toBe(true);
    }
    // a late subscriber hears the finished job's result once
    const late = watch(ids[3]);
    expect(terminals(await late.settled).map((e) => e.type)).toEqual(['result']);
    expect(await api.stats()).toEqual({ queued: 0, running: 0 });
  }, 60_000);

  it('over HTTP: `sd-native serve --role api` (another process) streams a job run by a worker as SSE, one result', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli.ts', 'serve', '--redis', url, '--role', 'api', '--queue-name', queueName,
      '--model', modelDir, '--port', '0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = track(child, 'api-http');
    try {
      const stderrOf = () => (proc.lines as unknown as { stderr: string }).stderr;
      const base = await until('the API to listen', () => /listening on (http:\/\/[^\s]+)/.exec(stderrOf())?.[1], 60_000);
      const post = await fetch(`${base}/v1/jobs`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ params: { prompt: 'a red cube', width: 32, height: 32, numInferenceSteps: 4, seed: 81 } }),
      });
      expect(post.status).toBe(202);
      const { id } = await post.json() as { id: string };
      const sse = await fetch(`${base}/v1/jobs/${id}/events`);
      expect(sse.headers.get('content-type')).toContain('text/event-stream');
      let text = '';
      const decoder = new TextDecoder();
      for await (const chunk of sse.body as unknown as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        if (/event: (result|error|cancelled)\n/.test(text)) break;
      }
      const types = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
      expect(types.filter((t) => t === 'result')).toEqual(['result']);
      expect(types).not.toContain('error');
      expect(types.filter((t) => t === 'step').length).toBeGreaterThan(0);
      expect(doneCount(id)).toBe(1);
      const bad = await fetch(`${base}/v1/jobs`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'no-such-model', params: { prompt: 'x' } }),
      });
      expect(bad.status).toBe(404);
      expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('E_MODEL_NOT_FOUND');
    } finally {
      child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    }
  }, 90_000);

  it('a batching worker (maxBatch 2) runs two compatible jobs as one call; each keeps its seed and matches the job served alone', async () => {
    const batchQueue = `${queueName}-batch`;
    const bw = startWorker('worker-batch', batchQueue, ['2', '3000']);
    const bapi = await createRedisBackend({ url, queueName: batchQueue });
    try {
      await until('the batching worker', () => bw.lines.includes('ready'), 60_000);
      const ids = [await bapi.submit(request(71, 4)), await bapi.submit(request(72, 4))];
      const results = await Promise.all(ids.map(async (id) => {
        const events: JobEvent[] = [];
        await new Promise<void>((resolve) => bapi.subscribe(id, (e) => { events.push(e); if (terminals([e]).length) resolve(); }));
        return terminals(events)[0];
      }));
      expect(bw.lines).toContain(`run ${ids.join(',')}`); // one executor call for both
      const alone = await Promise.all([api.submit(request(71, 4)), api.submit(request(72, 4))].map(async (p) => {
        const w = watch(await p);
        return terminals(await w.settled)[0];
      }));
      for (let i = 0; i < 2; i++) {
        expect(results[i].type).toBe('result');
        expect(alone[i].type).toBe('result');
        const rb = (results[i] as Extract<JobEvent, { type: 'result' }>).result;
        const ra = (alone[i] as Extract<JobEvent, { type: 'result' }>).result;
        expect(rb.seeds).toEqual([71 + i]);
        const [pb, pa] = await Promise.all([rb, ra].map((r) => sharp(Buffer.from(r.images[0], 'base64')).raw().toBuffer()));
        let maxDiff = 0;
        for (let k = 0; k < pa.length; k++) maxDiff = Math.max(maxDiff, Math.abs(pa[k] - pb[k]));
        // batched GEMMs round differently from single ones: within one 8-bit level (test/per-image-seeds.test.ts)
        expect(maxDiff, `job ${i}: batched vs alone`).toBeLessThanOrEqual(1);
      }
    } finally {
      bw.child.kill('SIGTERM');
      await bw.exited;
      await bapi.close({ drain: false });
    }
  }, 90_000);

  it('cancel: a queued job is removed, a running one stops within a step; both report cancelled', async () => {
    // two long jobs occupy both workers, the third waits
    const long = [await api.submit(request(21, 200)), await api.submit(request(22, 200))];
    const longW = long.map((id) => watch(id));
    await until('both long jobs to run', () => long.every((id) => workers.some((w) => w.lines.includes(`step ${id} 1`))), 30_000);
    const queued = await api.submit(request(23, 3));
    const qw = watch(queued);
    const qinfo = await api.get(queued);
    expect(qinfo?.status).toBe('queued');
    expect(qinfo?.position).toBe(0);
    expect(await api.stats()).toEqual({ queued: 1, running: 2 });

    expect(await api.cancel(queued)).toBe(true);
    expect(terminals(await qw.settled).map((e) => e.type)).toEqual(['cancelled']);
    expect(qw.events[0]).toEqual({ type: 'queued', position: 0 });
    expect((await api.get(queued))?.status).toBe('cancelled');
    expect(await api.cancel(queued)).toBe(false);

    const runningInfo = await api.get(long[0]);
    expect(runningInfo?.status).toBe('running');
    const t0 = Date.now();
    for (const id of long) expect(await api.cancel(id)).toBe(true);
    for (const w of longW) expect(terminals(await w.settled).map((e) => e.type)).toEqual(['cancelled']);
    const cancelMs = Date.now() - t0;
    for (const id of long) {
      expect(workers.some((w) => w.lines.includes(`aborted ${id}`))).toBe(true);
      expect(doneCount(id)).toBe(0);
      const lastStep = Math.max(...workers.flatMap((w) => w.lines.filter((l) => l.startsWith(`step ${id} `)).map((l) => Number(l.split(' ')[2]))));
      expect(lastStep).toBeLessThan(200);
      expect((await api.get(id))?.status).toBe('cancelled');
    }
    expect(workers.every((w) => !w.lines.includes(`start ${queued}`))).toBe(true);
    console.log(`cancel of 2 running jobs: both cancelled events within ${cancelMs} ms`);
    expect(await api.stats()).toEqual({ queued: 0, running: 0 });
  }, 60_000);

  it('kill -9 of a worker mid-job: the job completes on the other worker, exactly once', async () => {
    const id = await api.submit(request(31, 40));
    const w = watch(id);
    const victim = await until('a worker to run the job', () => workers.find((p) => p.lines.includes(`step ${id} 2`)), 30_000);
    const survivor = workers.find((p) => p !== victim && p.child.exitCode === null)!;
    const t0 = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    const events = await w.settled;
    const recoverMs = Date.now() - t0;
    expect(terminals(events).map((e) => e.type)).toEqual(['result']);
    expect(victim.lines).not.toContain(`done ${id}`);
    expect(survivor.lines).toContain(`start ${id}`);
    expect(survivor.lines.filter((l) => l === `done ${id}`).length).toBe(1);
    // the listener heard it go back to the queue, then start again on the survivor
    expect(events.some((e) => e.type === 'queued')).toBe(true);
    expect(events.filter((e) => e.type === 'started').length).toBeGreaterThanOrEqual(2);
    const info = await api.get(id);
    expect(info?.status).toBe('succeeded');
    await expectPng(info!.result!.images[0], 32);
    console.log(`kill -9 mid-job: result from the other worker ${recoverMs} ms after the kill (lock ${LOCK_MS} ms, stall check ${STALLED_MS} ms)`);
    // bring the pool back to two workers
    const again = startWorker('worker-c');
    await until('the replacement worker', () => again.lines.includes('ready'), 60_000);
    await until('two live workers advertised', async () => (await api.workers()).length === 2, 20_000);
  }, 90_000);

  it('Redis restarted while idle: API and workers reconnect and new jobs complete', async () => {
    await stopRedis();
    // while Redis is away, submit refuses at once with a typed error (nothing is enqueued later)
    const t0 = Date.now();
    const err = await api.submit(request(40)).then(() => undefined, (e: unknown) => e);
    expect((err as SdError)?.code).toBe('E_UNAVAILABLE');
    expect(Date.now() - t0).toBeLessThan(2000);
    await sleep(500);
    await startRedis(); // empty: no persistence
    const ids = await until('the API to enqueue again', () => Promise.all([api.submit(request(41)), api.submit(request(42))]).catch(() => undefined), 20_000);
    const all = await Promise.all(ids.map((id) => watch(id).settled));
    for (const events of all) expect(terminals(events).map((e) => e.type)).toEqual(['result']);
    for (const id of ids) expect(doneCount(id)).toBe(1);
    // the workers re-advertise their models within a heartbeat
    await until('the workers to re-register', async () => (await api.workers()).length === 2, 10_000);
    expect(await api.models()).toEqual([MODEL]);
  }, 60_000);

  let spare: Proc;
  it('a worker closed with drain finishes its job and leaves the registry', async () => {
    spare = startWorker('worker-d'); // for the next test, loading meanwhile
    const id = await api.submit(request(51, 20));
    const w = watch(id);
    const runner = await until('a worker to run the job', () => workers.find((p) => p.lines.includes(`step ${id} 1`)), 30_000);
    runner.child.kill('SIGTERM');
    expect(terminals(await w.settled).map((e) => e.type)).toEqual(['result']);
    expect(await runner.exited).toBe(0);
    expect(runner.lines).toContain(`done ${id}`);
    expect(runner.lines.at(-1)).toBe('closed');
    expect((await api.workers()).some((w) => w.pid === runner.child.pid)).toBe(false);
  }, 60_000);

  it('a worker closed without drain hands its running job back; another worker completes it once', async () => {
    await until('the spare worker', () => spare.lines.includes('ready'), 60_000);
    const id = await api.submit(request(61, 60));
    const w = watch(id);
    const runner = await until('a worker to run the job', () => workers.find((p) => p.child.exitCode === null && p.lines.includes(`step ${id} 1`)), 30_000);
    runner.child.kill('SIGINT');
    expect(await runner.exited).toBe(0);
    const events = await w.settled;
    expect(terminals(events).map((e) => e.type)).toEqual(['result']);
    expect(runner.lines).toContain(`aborted ${id}`);
    expect(doneCount(id)).toBe(1);
    expect(events.some((e) => e.type === 'queued')).toBe(true);
    expect((await api.get(id))?.status).toBe('succeeded');
  }, 90_000);

  it('shutting down while Redis is away does not hang: workers (drain) and the API close within bounds', async () => {
    await stopRedis();
    const live = workers.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
    expect(live.length).toBeGreaterThan(0);
    const t0 = Date.now();
    for (const p of live) p.child.kill('SIGTERM');
    expect(await Promise.all(live.map((p) => p.exited))).toEqual(live.map(() => 0));
    await api.close({ drain: true });
    const ms = Date.now() - t0;
    expect(ms).toBeLessThan(30_000);
    console.log(`workers and API closed ${ms} ms after SIGTERM with Redis down`);
  }, 60_000);
});
