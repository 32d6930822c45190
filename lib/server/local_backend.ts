/**
 * The in-process {@link JobBackend} of `sd-native serve`: one FIFO queue in this process, run by
 * one {@link JobExecutor}, one call at a time, with dynamic batching — compatible queued jobs
 * (equal {@link batchKey}: same model, task, size, steps, scheduler, guidance, toggles) run as one
 * call of up to `maxBatch` jobs; the head of the queue waits at most `batchWaitMs` for company.
 * Finished jobs are kept `keepFinishedMs` (default 10 minutes; at most `maxFinished`) for
 * `GET /v1/jobs/:id`.
 */
import { randomUUID } from 'node:crypto';
import { batchKey } from './executor.js';
import type { ExecutorJob, JobBackend, JobEvent, JobExecutor, JobInfo, JobRequest } from './backend.js';

/** Options of {@link LocalBackend}. */
export interface LocalBackendOptions {
  /** Most jobs per batched call (default 1: no batching). */
  maxBatch?: number;
  /** How long the head of the queue waits for compatible jobs when the batch is not full, ms (default 0). */
  batchWaitMs?: number;
  /** Most jobs waiting; a submit beyond it rejects with `E_QUEUE_FULL` (default 1000). */
  maxQueue?: number;
  /** How long finished jobs stay readable, ms (default 600000). */
  keepFinishedMs?: number;
  /** Most finished jobs kept (default 1000; the oldest go first). */
  maxFinished?: number;
}

/** An error with a `code` (the HTTP layer maps codes to statuses). */
export class BackendError extends Error {
  constructor(readonly code: string, message: string) { super(message); this.name = 'BackendError'; }
}

interface Entry {
  info: JobInfo;
  controller: AbortController;
  listeners: Set<(e: JobEvent) => void>;
  /** The last step event (with its preview), replayed to late subscribers. */
  lastStep?: Extract<JobEvent, { type: 'step' }>;
  key: string | undefined;
}

/** The event that describes a job's current state. */
function stateEvents(e: Entry): JobEvent[] {
  const { info } = e;
  switch (info.status) {
    case 'queued': return [{ type: 'queued', position: info.position ?? 0 }];
    case 'running': return e.lastStep ? [{ type: 'started' }, e.lastStep] : [{ type: 'started' }];
    case 'succeeded': return [{ type: 'result', result: info.result! }];
    case 'failed': return [{ type: 'error', error: info.error! }];
    case 'cancelled': return [{ type: 'cancelled' }];
  }
}

/** Jobs queued and run in this process. */
export class LocalBackend implements JobBackend {
  private readonly jobs = new Map<string, Entry>();
  private readonly queue: Entry[] = [];
  private readonly finished: string[] = [];
  private running: Entry[] = [];
  private closed = false;
  private waitTimer: NodeJS.Timeout | undefined;
  private idle: Array<() => void> = [];
  private readonly maxBatch: number;
  private readonly batchWaitMs: number;
  private readonly maxQueue: number;
  private readonly keepFinishedMs: number;
  private readonly maxFinished: number;

  constructor(private readonly executor: JobExecutor, options: LocalBackendOptions = {}) {
    this.maxBatch = Math.max(1, Math.floor(options.maxBatch ?? 1));
    this.batchWaitMs = Math.max(0, options.batchWaitMs ?? 0);
    this.maxQueue = options.maxQueue ?? 1000;
    this.keepFinishedMs = options.keepFinishedMs ?? 600_000;
    this.maxFinished = options.maxFinished ?? 1000;
  }

  async submit(request: JobRequest): Promise<string> {
    if (this.closed) throw new BackendError('E_UNAVAILABLE', 'the server is shutting down and takes no new jobs');
    if (this.queue.length >= this.maxQueue) throw new BackendError('E_QUEUE_FULL', `the queue is full (${this.maxQueue} jobs waiting)`);
    const id = randomUUID();
    const entry: Entry = {
      info: { id, status: 'queued', request, position: this.queue.length, createdAt: Date.now() },
      controller: new AbortController(),
      listeners: new Set(),
      key: batchKey(request),
    };
    this.jobs.set(id, entry);
    this.queue.push(entry);
    queueMicrotask(() => this.pump());
    return id;
  }

  async get(id: string): Promise<JobInfo | undefined> {
    const e = this.jobs.get(id);
    return e ? structuredClone(e.info) : undefined;
  }

  subscribe(id: string, onEvent: (event: JobEvent) => void): () => void {
    const e = this.jobs.get(id);
    if (!e) return () => undefined;
    for (const ev of stateEvents(e)) onEvent(ev);
    if (e.info.status === 'queued' || e.info.status === 'running') e.listeners.add(onEvent);
    return () => { e.listeners.delete(onEvent); };
  }

  async cancel(id: string): Promise<boolean> {
    const e = this.jobs.get(id);
    if (!e) return false;
    if (e.info.status === 'queued') {
      this.queue.splice(this.queue.indexOf(e), 1);
      e.controller.abort();
      this.finish(e, { cancelled: true });
      this.updatePositions();
      return true;
    }
    if (e.info.status === 'running') {
      // the executor stops the call within one step (or drops this job from its batch)
      e.controller.abort();
      this.finish(e, { cancelled: true });
      return true;
    }
    return false;
  }

  async stats(): Promise<{ queued: number; running: number }> {
    return { queued: this.queue.length, running: this.running.length };
  }

  async close(options: { drain: boolean }): Promise<void> {
    this.closed = true;
    if (!options.drain) {
      for (const e of [...this.queue, ...this.running]) await this.cancel(e.info.id);
    }
    if (this.waitTimer) { clearTimeout(this.waitTimer); this.waitTimer = undefined; this.pump(true); }
    if (this.queue.length === 0 && this.running.length === 0) return;
    await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  private emit(e: Entry, event: JobEvent): void {
    if (event.type === 'step') {
      e.lastStep = event;
      e.info.step = event.step;
      e.info.numSteps = event.numSteps;
    }
    for (const l of [...e.listeners]) {
      try { l(event); } catch { /* a listener's failure is its own */ }
    }
  }

  private updatePositions(): void {
    this.queue.forEach((e, i) => {
      if (e.info.position !== i) {
        e.info.position = i;
        this.emit(e, { type: 'queued', position: i });
      }
    });
  }

  private finish(e: Entry, outcome: Awaited<ReturnType<JobExecutor['run']>>[number]): void {
    if (e.info.status !== 'queued' && e.info.status !== 'running') return;
    e.info.finishedAt = Date.now();
    delete e.info.position;
    let event: JobEvent;
    if ('result' in outcome) {
      e.info.status = 'succeeded';
      e.info.result = outcome.result;
      event = { type: 'result', result: outcome.result };
    } else if ('error' in outcome) {
      e.info.status = 'failed';
      e.info.error = outcome.error;
      event = { type: 'error', error: outcome.error };
    } else {
      e.info.status = 'cancelled';
      event = { type: 'cancelled' };
    }
    this.emit(e, event);
    e.listeners.clear();
    e.lastStep = undefined;
    this.finished.push(e.info.id);
    const expire = setTimeout(() => this.forget(e.info.id), this.keepFinishedMs);
    expire.unref();
    while (this.finished.length > this.maxFinished) this.forget(this.finished[0]);
  }

  private forget(id: string): void {
    const i = this.finished.indexOf(id);
    if (i >= 0) this.finished.splice(i, 1);
    this.jobs.delete(id);
  }

  /** Starts the next call when idle: the head of the queue plus compatible jobs behind it. */
  private pump(force = false): void {
    if (this.running.length > 0 || this.queue.length === 0) return;
    const head = this.queue[0];
    const batch: Entry[] = [head];
    if (head.key !== undefined && this.maxBatch > 1) {
      for (const e of this.queue.slice(1)) {
        if (batch.length >= this.maxBatch) break;
        if (e.key === head.key) batch.push(e);
      }
      const waited = Date.now() - head.info.createdAt;
      if (!force && !this.closed && batch.length < this.maxBatch && waited < this.batchWaitMs) {
        if (!this.waitTimer) {
          this.waitTimer = setTimeout(() => { this.waitTimer = undefined; this.pump(true); }, this.batchWaitMs - waited);
        }
        return;
      }
    }
    if (this.waitTimer) { clearTimeout(this.waitTimer); this.waitTimer = undefined; }
    for (const e of batch) this.queue.splice(this.queue.indexOf(e), 1);
    this.running = batch;
    const now = Date.now();
    for (const e of batch) {
      e.info.status = 'running';
      e.info.startedAt = now;
      delete e.info.position;
    }
    this.updatePositions();
    const jobs: ExecutorJob[] = batch.map((e) => ({
      id: e.info.id,
      request: e.info.request,
      signal: e.controller.signal,
      onEvent: (event) => {
        if (e.info.status !== 'running') return;
        if (event.type === 'step' || event.type === 'started') this.emit(e, event);
      },
    }));
    this.executor.run(jobs).then(
      (outcomes) => batch.forEach((e, i) => this.finish(e, outcomes[i] ?? { error: { code: 'E_INTERNAL', message: 'the executor returned no outcome' } })),
      (err: unknown) => batch.forEach((e) => this.finish(e, { error: { code: 'E_INTERNAL', message: (err as Error)?.message ?? String(err) } })),
    ).finally(() => {
      this.running = [];
      if (this.queue.length === 0) {
        for (const resolve of this.idle.splice(0)) resolve();
      }
      this.pump();
    });
  }
}
