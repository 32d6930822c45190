/**
 * The Redis backend of `sd-native serve --redis <url> --role api|worker|both`: API processes
 * enqueue jobs into a BullMQ queue; worker processes (one per GPU or machine) hold the models,
 * take jobs, run them through a {@link JobExecutor} and publish step events and results back.
 *
 * How the pieces travel (docs/SCALE-OUT.md has the deployment side):
 * - A job is a BullMQ job whose id is the job id and whose data is the {@link JobRequest}. Its
 *   result is the BullMQ return value (a {@link JobResult}); a failure is a BullMQ failure whose
 *   reason is the JSON of a {@link JobError} (`E_ABORTED` = cancelled). BullMQ moves a job to
 *   completed only for the worker that holds its lock, so a job has exactly one outcome even when
 *   a stalled job was re-run elsewhere.
 * - Terminal events (result / error / cancelled) come from BullMQ's QueueEvents (a Redis stream:
 *   an API that reconnects resumes reading where it stopped, so it misses no outcome). Live
 *   events (`started`, `step` with its preview) go through Redis pub/sub on one channel per job:
 *   they are ephemeral, may carry preview images (a stream would keep thousands of them) and
 *   only matter to whoever listens now. The worker also records the step as the job's BullMQ
 *   progress, so `get` reports it from any process.
 * - Cancel: a queued job is removed (a tombstone key keeps `get` answering `cancelled`); a
 *   running one gets a cancel key (seen by a worker that picks the job up later, e.g. after a
 *   stall) and a pub/sub message on the cancel channel, which aborts the job's AbortSignal in the
 *   worker running it — the executor stops within one step.
 * - A worker that dies (kill -9) stops renewing its job lock; another worker's stalled-job check
 *   moves the job back to the queue after `lockDurationMs` (+ up to `stalledIntervalMs`) and it
 *   runs again there (up to `maxStalledCount` times).
 * - Workers advertise their model names: a `workers` sorted set (score = expiry) and one key per
 *   worker with its models, refreshed every few seconds, so the API knows the models without
 *   loading them (`models()`, `GET /sdapi/v1/sd-models`) and refuses an unknown one at submit.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { Queue, QueueEvents, Worker, Job, UnrecoverableError, WaitingError } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { InvalidArgumentError, ModelNotFoundError, UnavailableError, toSdError } from '../errors.js';
import type { ModelDescriptor } from './executor.js';
import type {
  ExecutorJob, JobBackend, JobError, JobEvent, JobExecutor, JobInfo, JobRequest, JobResult, JobStatus,
} from './backend.js';

/** The default BullMQ queue name. */
export const DEFAULT_QUEUE_NAME = 'sd-native';

/** Production defaults of the stall detection (BullMQ's own defaults). */
export const DEFAULT_LOCK_DURATION_MS = 30_000;
export const DEFAULT_STALLED_INTERVAL_MS = 30_000;
/** How many times a job whose worker died is re-queued before it fails (`E_INTERNAL`). */
export const DEFAULT_MAX_STALLED_COUNT = 2;
/** Finished jobs (with their images) stay readable this long, in seconds. */
export const DEFAULT_RESULT_TTL_S = 3600;

const HEARTBEAT_MS = 5_000;
const WORKER_TTL_MS = 15_000;
/** BullMQ's events stream is trimmed to about this many entries (results carry images). */
const EVENTS_MAX_LEN = 1000;

/** Options of {@link createRedisBackend}. */
export interface RedisBackendOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS). */
  url: string;
  /** BullMQ queue name (default `sd-native`); API and workers must agree. */
  queueName?: string;
  /** Seconds a finished job's result stays readable (default 3600). */
  resultTtlS?: number;
}

/** Options of {@link startRedisWorker}. */
export interface RedisWorkerOptions {
  url: string;
  queueName?: string;
  executor: JobExecutor;
  /** Up to this many compatible jobs run as one executor call (default 1: no batching). */
  maxBatch?: number;
  /** How long the first job of a batch waits for companions, in ms (default 0). */
  batchWaitMs?: number;
  /**
   * BullMQ lock duration, ms (default `SD_NATIVE_REDIS_LOCK_MS` or 30000): how long after a
   * worker died its job counts as stalled. The lock is renewed every half of it.
   */
  lockDurationMs?: number;
  /** How often this worker checks for stalled jobs, ms (default `SD_NATIVE_REDIS_STALLED_MS` or 30000). */
  stalledIntervalMs?: number;
  /** Re-queues of a stalled job before it fails (default 2). */
  maxStalledCount?: number;
}

/** The API side: a {@link JobBackend} plus the models the live workers advertise. */
export interface RedisJobBackend extends JobBackend {
  /** Model names advertised by live workers (sorted, deduplicated); empty when none is up. */
  models(): Promise<string[]>;
  /**
   * What live workers say about their models (family, default size, scheduler…) when their
   * executor has `descriptors()` (PipelineExecutor does), one per name; for `GET /sdapi/v1/sd-models`
   * and request checks in the API role without loading anything.
   */
  modelDescriptors(): Promise<ModelDescriptor[]>;
  /** Live workers: id, host, pid and models. */
  workers(): Promise<WorkerInfo[]>;
}

/** A live worker as it advertises itself in Redis. */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  models: string[];
  descriptors?: ModelDescriptor[];
}

// ---------------------------------------------------------------------------------------------
// Keys and codecs shared by both roles
// ---------------------------------------------------------------------------------------------

interface JobData { request: JobRequest }

function keysOf(queueName: string) {
  const base = `sd-native:${queueName}`;
  return {
    workers: `${base}:workers`,
    worker: (id: string) => `${base}:worker:${id}`,
    events: (id: string) => `${base}:events:${id}`,
    cancelChannel: `${base}:cancel`,
    cancelFlag: (id: string) => `${base}:cancel:${id}`,
    tombstone: (id: string) => `${base}:cancelled:${id}`,
  };
}

/** ioredis options for long-lived connections: BullMQ needs `maxRetriesPerRequest: null`. */
function redisOptions(): RedisOptions {
  return {
    maxRetriesPerRequest: null,
    // reconnect forever, backing off to 2 s (a restarted Redis is picked up within ~2 s)
    retryStrategy: (times) => Math.min(times * 100, 2000),
    lazyConnect: false,
  };
}

function connect(url: string, extra: RedisOptions = {}): Redis {
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
    throw new InvalidArgumentError(`Expected a redis:// or rediss:// URL for the Redis connection but received ${JSON.stringify(url)}`);
  }
  const r = new Redis(url, { ...redisOptions(), ...extra });
  r.on('error', () => { /* reconnects by itself; errors surface on the commands that fail */ });
  return r;
}

const CANCELLED: JobError = { code: 'E_ABORTED', message: 'the job was cancelled' };

function encodeError(e: JobError): string {
  return JSON.stringify({ code: e.code, message: e.message });
}

function decodeError(reason: string | undefined): JobError {
  if (reason) {
    try {
      const v = JSON.parse(reason) as Partial<JobError>;
      if (typeof v.code === 'string' && typeof v.message === 'string') return { code: v.code, message: v.message };
    } catch { /* a BullMQ reason (e.g. "job stalled more than allowable limit") */ }
  }
  return { code: 'E_INTERNAL', message: reason || 'the job failed' };
}

function toJobError(e: unknown): JobError {
  const s = toSdError(e);
  return { code: s.code, message: s.message };
}

function parseResult(v: unknown): JobResult {
  return (typeof v === 'string' ? JSON.parse(v) : v) as JobResult;
}

function terminalEvent(info: JobInfo): JobEvent | undefined {
  if (info.status === 'succeeded' && info.result) return { type: 'result', result: info.result };
  if (info.status === 'failed') return { type: 'error', error: info.error ?? { code: 'E_INTERNAL', message: 'the job failed' } };
  if (info.status === 'cancelled') return { type: 'cancelled' };
  return undefined;
}

const isTerminal = (e: JobEvent): boolean => e.type === 'result' || e.type === 'error' || e.type === 'cancelled';

// ---------------------------------------------------------------------------------------------
// API role
// ---------------------------------------------------------------------------------------------

/**
 * Connects an API process to the job queue on Redis. Submitting enqueues; `get`, `subscribe`,
 * `cancel` and `stats` work for jobs submitted by any API process and run by any worker.
 *
 * @param options.url - the Redis URL (`redis://host:6379`)
 * @param options.queueName - BullMQ queue name (default `sd-native`)
 * @returns the backend; `close()` disconnects (with `drain`, after this process's jobs finish)
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a URL that is not redis:// or rediss://
 * @throws UnavailableError (`E_UNAVAILABLE`) when Redis cannot be reached within 10 s
 */
export async function createRedisBackend(options: RedisBackendOptions): Promise<RedisJobBackend> {
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  const ttlS = options.resultTtlS ?? DEFAULT_RESULT_TTL_S;
  const keys = keysOf(queueName);
  // The API's command connection fails fast while Redis is away (no offline queue): submit then
  // answers E_UNAVAILABLE at once instead of hanging, and no job is enqueued behind the caller's back.
  const cmd = connect(options.url, { enableOfflineQueue: false });
  const sub = connect(options.url);
  const queueConn = connect(options.url);
  const eventsConn = connect(options.url);
  const queue = new Queue<JobData, JobResult>(queueName, {
    connection: queueConn,
    streams: { events: { maxLen: EVENTS_MAX_LEN } },
  });
  queue.on('error', () => { /* reconnecting */ });
  const queueEvents = new QueueEvents(queueName, { connection: eventsConn });
  const disconnectAll = (): void => { for (const c of [cmd, sub, queueConn, eventsConn]) c.disconnect(); };
  queueEvents.on('error', () => { /* reconnecting */ });
  try {
    const cmdReady = cmd.status === 'ready' ? Promise.resolve() : new Promise<void>((r) => cmd.once('ready', () => r()));
    await withTimeout(Promise.all([cmdReady, queue.waitUntilReady(), queueEvents.waitUntilReady()]), 10_000,
      `Redis at ${redactUrl(options.url)} did not answer within 10 s`);
  } catch (e) {
    await settleWithin(Promise.allSettled([queueEvents.close(), queue.close()]), 1_000);
    disconnectAll();
    throw e instanceof UnavailableError ? e : new UnavailableError(`cannot reach Redis at ${redactUrl(options.url)}: ${(e as Error).message}`, { cause: e });
  }

  // --- live subscriptions: job id → listeners (each drops itself after a terminal event)
  type Listener = (e: JobEvent) => void;
  const listeners = new Map<string, Set<Listener>>();
  const channelToId = new Map<string, string>();
  const dispatch = (id: string, e: JobEvent): void => {
    for (const l of [...(listeners.get(id) ?? [])]) l(e);
  };
  sub.on('message', (channel: string, message: string) => {
    const id = channelToId.get(channel);
    if (id === undefined) return;
    try { dispatch(id, JSON.parse(message) as JobEvent); } catch { /* not ours */ }
  });
  queueEvents.on('completed', ({ jobId, returnvalue }) => {
    try { dispatch(jobId, { type: 'result', result: parseResult(returnvalue) }); } catch (e) {
      dispatch(jobId, { type: 'error', error: toJobError(e) });
    }
    submitted.delete(jobId);
  });
  queueEvents.on('failed', ({ jobId, failedReason }) => {
    const error = decodeError(failedReason);
    dispatch(jobId, error.code === 'E_ABORTED' ? { type: 'cancelled' } : { type: 'error', error });
    submitted.delete(jobId);
  });
  queueEvents.on('removed', ({ jobId }) => {
    dispatch(jobId, { type: 'cancelled' });
    submitted.delete(jobId);
  });
  queueEvents.on('waiting', ({ jobId, prev }) => {
    // a stalled job re-queued after its worker died goes back to the head of the queue
    // (moveStalledJobsToWait RPUSHes it: the next job taken): tell listeners it waits again
    if (prev === 'active') dispatch(jobId, { type: 'queued', position: 0 });
  });

  /** 0-based place in the wait list (BullMQ pushes on the left and takes from the right). */
  async function position(id: string): Promise<number | undefined> {
    const waitKey = queue.keys.wait;
    const [idx, len] = await Promise.all([cmd.lpos(waitKey, id), cmd.llen(waitKey)]);
    return idx === null ? undefined : len - 1 - idx;
  }

  async function models(): Promise<string[]> {
    const ws = await workers();
    return [...new Set(ws.flatMap((w) => w.models))].sort();
  }

  async function modelDescriptors(): Promise<ModelDescriptor[]> {
    const byName = new Map<string, ModelDescriptor>();
    for (const w of await workers()) for (const d of w.descriptors ?? []) if (!byName.has(d.name)) byName.set(d.name, d);
    return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async function workers(): Promise<WorkerInfo[]> {
    const ids = await cmd.zrangebyscore(keys.workers, Date.now(), '+inf');
    if (ids.length === 0) return [];
    const raw = await cmd.mget(ids.map(keys.worker));
    const out: WorkerInfo[] = [];
    raw.forEach((r, i) => {
      if (!r) return;
      try {
        const v = JSON.parse(r) as Omit<WorkerInfo, 'id'>;
        out.push({ id: ids[i], ...v });
      } catch { /* a half-written entry: skip */ }
    });
    return out;
  }

  let closing = false;
  const submitted = new Set<string>();

  async function get(id: string): Promise<JobInfo | undefined> {
    if (typeof id !== 'string' || id === '') return undefined;
    const job = await Job.fromId<JobData, JobResult>(queue, id);
    if (!job) {
      const t = await cmd.get(keys.tombstone(id));
      if (!t) return undefined;
      const v = JSON.parse(t) as { request: JobRequest; createdAt: number; finishedAt: number };
      return { id, status: 'cancelled', request: v.request, createdAt: v.createdAt, finishedAt: v.finishedAt };
    }
    const state = await job.getState();
    const info: JobInfo = { id, status: 'queued', request: job.data.request, createdAt: job.timestamp };
    if (job.processedOn) info.startedAt = job.processedOn;
    if (job.finishedOn) info.finishedAt = job.finishedOn;
    let status: JobStatus;
    switch (state) {
      case 'completed':
        status = 'succeeded';
        info.result = parseResult(job.returnvalue);
        break;
      case 'failed': {
        const error = decodeError(job.failedReason);
        if (error.code === 'E_ABORTED') status = 'cancelled';
        else { status = 'failed'; info.error = error; }
        break;
      }
      case 'active': {
        status = 'running';
        const p = job.progress as { step?: number; numSteps?: number } | number;
        if (typeof p === 'object' && p && typeof p.step === 'number') { info.step = p.step; info.numSteps = p.numSteps; }
        break;
      }
      case 'unknown':
        return undefined;
      default: // waiting, prioritized, delayed, waiting-children
        status = 'queued';
        info.position = await position(id);
        delete info.startedAt;
    }
    info.status = status;
    return info;
  }

  async function cancel(id: string): Promise<boolean> {
    const job = await Job.fromId<JobData, JobResult>(queue, id);
    if (!job) return false;
    const state = await job.getState();
    if (state === 'completed' || state === 'failed' || state === 'unknown') return false;
    if (state !== 'active') {
      // queued: remove it, leaving a tombstone so that get() still answers 'cancelled'
      const tomb = JSON.stringify({ request: job.data.request, createdAt: job.timestamp, finishedAt: Date.now() });
      await cmd.set(keys.tombstone(id), tomb, 'EX', ttlS);
      try {
        await job.remove();
        return true;
      } catch {
        // a worker took it meanwhile (it is locked): cancel it as a running job
        await cmd.del(keys.tombstone(id));
      }
    }
    await cmd.set(keys.cancelFlag(id), '1', 'EX', ttlS);
    await cmd.publish(keys.cancelChannel, id);
    return true;
  }

  /** Reads and writes of the API fail with E_UNAVAILABLE after 10 s without Redis instead of hanging. */
  function guard<T>(p: Promise<T>): Promise<T> {
    return withTimeout(p, 10_000, 'Redis did not answer within 10 s');
  }

  const backend: RedisJobBackend = {
    async submit(request: JobRequest): Promise<string> {
      if (closing) throw new UnavailableError('the server is shutting down and takes no new jobs');
      if (!request || typeof request.model !== 'string') {
        throw new InvalidArgumentError(`Expected a job request with a model name but received ${JSON.stringify(request)?.slice(0, 80)}`);
      }
      const known = await models().catch((e: unknown) => {
        throw new UnavailableError(`cannot reach Redis: ${(e as Error).message}`, { cause: e });
      });
      // With no live worker the job waits for one; with workers up, a model none of them holds is refused.
      if (known.length > 0 && !known.includes(request.model)) {
        throw new ModelNotFoundError(`Expected a model the workers hold (${known.map((m) => JSON.stringify(m)).join(', ')}) but received ${JSON.stringify(request.model)}`);
      }
      const id = randomUUID();
      try {
        await queue.add('generate', { request }, {
          jobId: id,
          attempts: 1,
          removeOnComplete: { age: ttlS },
          removeOnFail: { age: ttlS },
        });
      } catch (e) {
        throw new UnavailableError(`cannot enqueue the job on Redis: ${(e as Error).message}`, { cause: e });
      }
      submitted.add(id);
      return id;
    },

    get: (id) => guard(get(id)),

    subscribe(id: string, onEvent: (event: JobEvent) => void): () => void {
      let done = false;
      let ready = false;
      const buffered: JobEvent[] = [];
      const channel = keys.events(id);
      const deliver = (e: JobEvent): void => {
        if (done) return;
        if (isTerminal(e)) { done = true; unsubscribe(); }
        try { onEvent(e); } catch { /* a listener's failure is its own */ }
      };
      const listener = (e: JobEvent): void => { if (ready) deliver(e); else buffered.push(e); };
      let set = listeners.get(id);
      if (!set) {
        set = new Set();
        listeners.set(id, set);
        channelToId.set(channel, id);
        void sub.subscribe(channel).catch(() => {});
      }
      set.add(listener);
      function unsubscribe(): void {
        const s = listeners.get(id);
        if (!s || !s.delete(listener) || s.size > 0) return;
        listeners.delete(id);
        channelToId.delete(channel);
        void sub.unsubscribe(channel).catch(() => {});
      }
      // the current state first, then what arrived meanwhile
      void get(id).then((info) => {
        if (done) return;
        if (!info) {
          deliver({ type: 'error', error: { code: 'E_NOT_FOUND', message: `no job with id ${JSON.stringify(id)} (unknown or expired)` } });
          return;
        }
        const t = terminalEvent(info);
        if (t) { deliver(t); return; }
        if (info.status === 'queued') deliver({ type: 'queued', position: info.position ?? 0 });
        else {
          deliver({ type: 'started' });
          if (info.step !== undefined && info.numSteps !== undefined) deliver({ type: 'step', step: info.step, numSteps: info.numSteps });
        }
        ready = true;
        for (const e of buffered.splice(0)) {
          // a step already reported by the snapshot is not repeated; a second 'started' (the job was re-run) is kept
          if (e.type === 'step' && info.step !== undefined && e.step <= info.step && info.status === 'running') continue;
          deliver(e);
        }
      }, (e: unknown) => deliver({ type: 'error', error: { code: 'E_UNAVAILABLE', message: `cannot read the job from Redis: ${(e as Error).message}` } }));
      return () => { done = true; unsubscribe(); };
    },

    cancel: (id: string): Promise<boolean> => guard(cancel(id)),

    async stats(): Promise<{ queued: number; running: number }> {
      const c = await guard(queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused', 'active'));
      return { queued: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) + (c.paused ?? 0), running: c.active ?? 0 };
    },
    async close({ drain }: { drain: boolean }): Promise<void> {
      closing = true;
      if (drain) {
        // wait for the jobs this process submitted (their outcome arrives through QueueEvents;
        // polling covers an event lost while Redis was away)
        while (submitted.size > 0) {
          await new Promise((r) => setTimeout(r, 250));
          for (const id of [...submitted]) {
            const info = await get(id).catch(() => undefined);
            if (!info || terminalEvent(info) || info.status === 'cancelled') submitted.delete(id);
          }
        }
      }
      // BullMQ's close waits for Redis; while Redis is away, give up after 5 s and drop the connections
      await settleWithin(Promise.allSettled([queueEvents.close(), queue.close()]), 5_000);
      disconnectAll();
    },

    models,
    modelDescriptors,
    workers,
  };
  return backend;
}

// ---------------------------------------------------------------------------------------------
// Worker role
// ---------------------------------------------------------------------------------------------

/**
 * Jobs that may share one executor call: same model, task, size, steps, scheduler, guidance and
 * toggles. A coarse partition: the executor still runs jobs it cannot batch one by one.
 */
function groupKey(r: JobRequest): string {
  const p = r.params;
  return JSON.stringify([r.model, r.task, p.width, p.height, p.numInferenceSteps, p.scheduler, p.guidanceScale, p.strength, p.clipSkip, !!r.previews]);
}

/**
 * Starts a worker: takes jobs from the queue, runs them with `executor` (grouping compatible
 * jobs up to `maxBatch` when `maxBatch` > 1), publishes their step events and settles each job
 * with its result or error. Advertises `executor.models()` while it runs.
 *
 * @returns `close({ drain })`: with `drain`, running and already-taken jobs finish first;
 *   without, they are aborted and put back in the queue for another worker.
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a bad URL, maxBatch or batchWaitMs
 * @throws UnavailableError (`E_UNAVAILABLE`) when Redis cannot be reached within 10 s
 */
export async function startRedisWorker(options: RedisWorkerOptions): Promise<{ close(o: { drain: boolean }): Promise<void> }> {
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  const maxBatch = options.maxBatch ?? 1;
  const batchWaitMs = options.batchWaitMs ?? 0;
  if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > 64) {
    throw new InvalidArgumentError(`Expected an integer from 1 to 64 for maxBatch but received ${maxBatch}`);
  }
  if (!Number.isFinite(batchWaitMs) || batchWaitMs < 0 || batchWaitMs > 60_000) {
    throw new InvalidArgumentError(`Expected a number of ms from 0 to 60000 for batchWaitMs but received ${batchWaitMs}`);
  }
  const envMs = (name: string): number | undefined => {
    const v = process.env[name];
    return v !== undefined && v !== '' && Number.isFinite(Number(v)) && Number(v) > 0 ? Number(v) : undefined;
  };
  const lockDuration = options.lockDurationMs ?? envMs('SD_NATIVE_REDIS_LOCK_MS') ?? DEFAULT_LOCK_DURATION_MS;
  const stalledInterval = options.stalledIntervalMs ?? envMs('SD_NATIVE_REDIS_STALLED_MS') ?? DEFAULT_STALLED_INTERVAL_MS;
  const maxStalledCount = options.maxStalledCount ?? DEFAULT_MAX_STALLED_COUNT;
  const executor = options.executor;
  const keys = keysOf(queueName);
  const workerId = randomUUID();
  const cmd = connect(options.url);
  const sub = connect(options.url);
  try {
    await withTimeout(cmd.ping(), 10_000, `Redis at ${redactUrl(options.url)} did not answer within 10 s`);
  } catch (e) {
    cmd.disconnect(); sub.disconnect();
    throw e instanceof UnavailableError ? e : new UnavailableError(`cannot reach Redis at ${redactUrl(options.url)}: ${(e as Error).message}`, { cause: e });
  }

  // --- advertise the models (and refresh after a Redis restart)
  const described = executor as JobExecutor & { descriptors?: () => ModelDescriptor[] };
  const advert = (): Omit<WorkerInfo, 'id'> => ({
    host: os.hostname(), pid: process.pid, models: executor.models(),
    ...(typeof described.descriptors === 'function' ? { descriptors: described.descriptors() } : {}),
  });
  const heartbeat = async (): Promise<void> => {
    const now = Date.now();
    await cmd.multi()
      .set(keys.worker(workerId), JSON.stringify(advert()), 'PX', WORKER_TTL_MS)
      .zadd(keys.workers, now + WORKER_TTL_MS, workerId)
      .zremrangebyscore(keys.workers, '-inf', now)
      .exec();
  };
  await heartbeat();
  const beat = setInterval(() => { heartbeat().catch(() => {}); }, HEARTBEAT_MS);

  // --- cancel signals: abort the job's AbortSignal when it runs here
  const running = new Map<string, AbortController>();
  let shuttingDown = false;
  sub.on('message', (_channel: string, id: string) => running.get(id)?.abort(new Error('cancelled')));
  await sub.subscribe(keys.cancelChannel);

  // --- batching: jobs taken within batchWaitMs of each other run as one executor call per group
  type Outcome = Awaited<ReturnType<JobExecutor['run']>>[number];
  let pending: Array<{ job: ExecutorJob; resolve: (o: Outcome) => void }> = [];
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  const flush = (): void => {
    if (timer) { clearTimeout(timer); timer = undefined; }
    const taken = pending;
    pending = [];
    const groups = new Map<string, typeof taken>();
    for (const t of taken) {
      const k = groupKey(t.job.request);
      groups.set(k, [...(groups.get(k) ?? []), t]);
    }
    for (const g of groups.values()) {
      chain = chain.then(async () => {
        let outcomes: Outcome[];
        try {
          outcomes = await executor.run(g.map((t) => t.job));
          if (outcomes.length !== g.length) throw new Error(`the executor settled ${outcomes.length} of ${g.length} jobs`);
        } catch (e) {
          outcomes = g.map(() => ({ error: toJobError(e) }));
        }
        g.forEach((t, i) => t.resolve(outcomes[i]));
      });
    }
  };
  const runBatched = (job: ExecutorJob): Promise<Outcome> => new Promise((resolve) => {
    pending.push({ job, resolve });
    if (pending.length >= maxBatch || batchWaitMs === 0) flush();
    else if (!timer) timer = setTimeout(flush, batchWaitMs);
  });

  const workerConn = connect(options.url);
  const worker = new Worker<JobData, JobResult>(queueName, async (job, token) => {
    const id = job.id!;
    const ac = new AbortController();
    running.set(id, ac); // from here on, close({ drain }) waits for this job
    const channel = keys.events(id);
    const publish = (e: JobEvent): void => { cmd.publish(channel, JSON.stringify(e)).catch(() => {}); };
    let outcome: Outcome;
    try {
      // cancelled while queued but taken before the removal (or re-queued after a stall)
      if (await cmd.exists(keys.cancelFlag(id))) throw new UnrecoverableError(encodeError(CANCELLED));
      outcome = await runBatched({
        id,
        request: job.data.request,
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === 'started') publish(e);
          else if (e.type === 'step') {
            publish(e);
            job.updateProgress({ step: e.step, numSteps: e.numSteps }).catch(() => {});
          }
          // result / error / cancelled travel as the BullMQ outcome below
        },
      });
    } finally {
      running.delete(id);
    }
    if ('result' in outcome) return outcome.result;
    if ('cancelled' in outcome) {
      if (shuttingDown) {
        // closing without drain: hand the job back to the queue for another worker
        await job.moveToWait(token);
        throw new WaitingError();
      }
      throw new UnrecoverableError(encodeError(CANCELLED));
    }
    throw new UnrecoverableError(encodeError(outcome.error));
  }, {
    connection: workerConn,
    concurrency: maxBatch,
    lockDuration,
    stalledInterval,
    maxStalledCount,
    // results are removed by the options each job was added with
  });
  worker.on('error', () => { /* connection errors: BullMQ reconnects */ });
  await worker.waitUntilReady();

  return {
    async close({ drain }: { drain: boolean }): Promise<void> {
      clearInterval(beat);
      if (!drain) {
        shuttingDown = true;
        for (const ac of running.values()) ac.abort(new Error('worker shutting down'));
      }
      const closed = worker.close(); // takes no new job; resolves when the running ones are settled in Redis
      // Bounded: once this worker's jobs have run, BullMQ gets 10 s to report them and close; while
      // Redis is away it cannot, so the connections are dropped (an unreported job's lock expires
      // and another worker runs it again once Redis is back).
      while (running.size > 0 || pending.length > 0) await new Promise((r) => setTimeout(r, 100));
      await settleWithin(closed, 10_000);
      await settleWithin(cmd.multi().zrem(keys.workers, workerId).del(keys.worker(workerId)).exec(), 2_000);
      sub.disconnect();
      cmd.disconnect();
      workerConn.disconnect();
    },
  };
}

// ---------------------------------------------------------------------------------------------

function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/** Waits for `p` to settle, at most `ms`. */
async function settleWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p.then(() => {}, () => {}), new Promise<void>((r) => { t = setTimeout(r, ms); })]);
  clearTimeout(t);
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { t = setTimeout(() => reject(new UnavailableError(message)), ms); })]);
  } finally {
    clearTimeout(t);
  }
}
