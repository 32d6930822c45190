/**
 * Load test of `sd-native serve` on loopback (issue 15, items 2 and 5). Bounded: a fixed number
 * of requests per phase and a wall-clock cap per phase.
 *
 * 1. Robustness: REQUESTS requests (default 200) at concurrency 1, 4 and 16 against one server
 *    process; 10 % have invalid bodies (expected 400), 5 % are clients that disconnect
 *    mid-generation (their jobs must be cancelled). Reports p50/p99 latency of the valid requests,
 *    answers by status and error code, the server's RSS before and after, and checks nothing was
 *    lost: every valid request answered 200, every job accounted for in /metrics, queue empty,
 *    /health ok at the end.
 * 2. Batching: images/min at concurrency 1, 4 and 8, with batching off (--max-batch 1) and on
 *    (--max-batch 8 --batch-wait-ms WAIT), side by side, BATCH_REQUESTS requests per cell.
 *
 *   npx tsx scripts/loadtest.ts [--model DIR] [--requests 200] [--steps 4] [--size 64]
 *     [--batch-requests 48] [--batch-wait-ms 25] [--phase-timeout-s 300] [--device cpu] [--threads N] [--json out.json]
 *     [--only robustness|throughput]
 *
 * The server runs as a child process (`sd-native serve`: lib/cli.ts via tsx in a checkout, else dist/).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: path.resolve(root, '..', 'shared', 'fixtures', 'models', 'tiny-sd15') },
    requests: { type: 'string', default: '200' },
    steps: { type: 'string', default: '4' },
    size: { type: 'string', default: '64' },
    'batch-requests': { type: 'string', default: '48' },
    'batch-wait-ms': { type: 'string', default: '25' },
    'phase-timeout-s': { type: 'string', default: '300' },
    device: { type: 'string', default: 'cpu' },
    threads: { type: 'string' },
    json: { type: 'string' },
    only: { type: 'string' },
  },
});
const REQUESTS = Number(a.requests);
const STEPS = Number(a.steps);
const SIZE = Number(a.size);
const BATCH_REQUESTS = Number(a['batch-requests']);
const PHASE_TIMEOUT_MS = Number(a['phase-timeout-s']) * 1000;

interface Server { base: string; child: ChildProcess; stop(): Promise<number | null> }

async function startServer(extra: string[]): Promise<Server> {
  // a checkout runs the sources (dist/ may be stale); an installed package its build
  const source = path.join(root, 'lib', 'cli.ts');
  const args = [...(existsSync(source) ? ['--import', 'tsx', source] : [path.join(root, 'dist', 'lib', 'cli.js')]),
    'serve', '--model', a.model!, '--port', '0', '--device', a.device!, ...(a.threads ? ['--threads', a.threads] : []), ...extra];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = await new Promise<string>((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) { clearInterval(t); resolve(m[1]); }
    }, 50);
    void exited.then((code) => { clearInterval(t); reject(new Error(`server exited ${code}: ${stderr}`)); });
  });
  return { base, child, stop: async () => { child.kill('SIGTERM'); return exited; } };
}

async function metrics(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(base + '/metrics')).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};

/** Runs `n` tasks with `concurrency` workers in a closed loop; stops starting new ones after the deadline. */
async function pool(n: number, concurrency: number, deadline: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let done = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n && Date.now() < deadline) {
      const i = next++;
      await task(i);
      done++;
    }
  }));
  return done;
}

type Kind = 'valid' | 'invalid' | 'disconnect';
const INVALID_BODIES: unknown[] = [
  { prompt: 'x', steps: 0 }, { prompt: 'x', size: '33x33' }, { prompt: 'x', response_format: 'png' }, { prompt: '' },
  { prompt: 'x', n: 99 }, { prompt: 'x', scheduler: 'Nope' }, '{"prompt": ', { prompt: 7 }, { prompt: 'x', seed: -1 }, { prompt: 'x', guidance_scale: 'high' },
];

async function robustness(concurrency: number): Promise<Record<string, unknown>> {
  const server = await startServer(['--max-body-mb', '1']);
  try {
    const before = await metrics(server.base);
    const kinds: Kind[] = Array.from({ length: REQUESTS }, (_, i) => (i % 10 === 3 ? 'invalid' : i % 20 === 7 ? 'disconnect' : 'valid'));
    const latencies: number[] = [];
    const answers: Record<string, number> = {};
    const count = (k: string) => { answers[k] = (answers[k] ?? 0) + 1; };
    const t0 = Date.now();
    const done = await pool(REQUESTS, concurrency, t0 + PHASE_TIMEOUT_MS, async (i) => {
      const kind = kinds[i];
      const body = kind === 'invalid' ? INVALID_BODIES[i % INVALID_BODIES.length]
        : { prompt: `load test ${i}`, size: `${SIZE}x${SIZE}`, steps: kind === 'disconnect' ? STEPS * 10 : STEPS, seed: i, response_format: 'b64_json' };
      const c = new AbortController();
      if (kind === 'disconnect') {
        // leave once the job is running: poll the jobs' progress
        void (async () => {
          for (let k = 0; k < 2000 && !c.signal.aborted; k++) {
            await new Promise((r) => setTimeout(r, 20));
            const p = await (await fetch(server.base + '/sdapi/v1/progress')).json() as { state: { sampling_step: number } };
            if (p.state.sampling_step >= 2) break;
          }
          c.abort();
        })();
      }
      const started = performance.now();
      try {
        const res = await fetch(server.base + '/v1/images/generations', {
          method: 'POST', headers: { 'content-type': 'application/json' }, signal: c.signal,
          body: typeof body === 'string' ? body : JSON.stringify(body),
        });
        const json = await res.json() as { error?: { code: string }; data?: unknown[] };
        if (kind === 'disconnect') c.abort();
        count(res.status === 200 ? `200 (${kind})` : `${res.status} ${json.error?.code} (${kind})`);
        if (kind === 'valid' && res.status === 200) latencies.push(performance.now() - started);
      } catch (e) {
        count(kind === 'disconnect' ? 'disconnected (disconnect)' : `client error ${(e as Error).name} (${kind})`);
      }
    });
    const seconds = (Date.now() - t0) / 1000;
    // let cancellations land
    for (let k = 0; k < 100; k++) {
      const h = await (await fetch(server.base + '/health')).json() as { queued: number; running: number };
      if (h.queued === 0 && h.running === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await metrics(server.base);
    const health = await fetch(server.base + '/health');
    const valid = kinds.slice(0, done).filter((k) => k === 'valid').length;
    const disconnects = kinds.slice(0, done).filter((k) => k === 'disconnect').length;
    const jobs = (o: string) => (after[`sd_native_jobs_total{outcome="${o}"}`] ?? 0) - (before[`sd_native_jobs_total{outcome="${o}"}`] ?? 0);
    const r = {
      concurrency, requests: done, seconds: +seconds.toFixed(1),
      p50_ms: Math.round(percentile(latencies, 50)), p99_ms: Math.round(percentile(latencies, 99)),
      answers,
      jobs: { succeeded: jobs('succeeded'), cancelled: jobs('cancelled'), failed: jobs('failed') },
      rss_mb_before: +(before.sd_native_process_resident_memory_bytes / 2 ** 20).toFixed(1),
      rss_mb_after: +(after.sd_native_process_resident_memory_bytes / 2 ** 20).toFixed(1),
      health_after: health.status,
      // nothing lost: each valid request answered 200; each disconnect's job cancelled (or finished first)
      nothing_lost: (answers['200 (valid)'] ?? 0) === valid && jobs('succeeded') + jobs('cancelled') === valid + disconnects && jobs('failed') === 0 && health.status === 200,
    };
    return r;
  } finally {
    const code = await server.stop();
    if (code !== 0) console.error(`server exit status ${code}`);
  }
}

async function throughput(maxBatch: number, concurrency: number): Promise<{ imagesPerMin: number; seconds: number; images: number }> {
  const server = await startServer(['--max-batch', String(maxBatch), '--batch-wait-ms', maxBatch > 1 ? a['batch-wait-ms']! : '0']);
  try {
    // warm-up
    await fetch(server.base + '/v1/images/generations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'warm', size: `${SIZE}x${SIZE}`, steps: STEPS, response_format: 'b64_json' }) });
    const t0 = performance.now();
    let images = 0;
    await pool(BATCH_REQUESTS, concurrency, Date.now() + PHASE_TIMEOUT_MS, async (i) => {
      const res = await fetch(server.base + '/v1/images/generations', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: `throughput ${i}`, size: `${SIZE}x${SIZE}`, steps: STEPS, seed: i, response_format: 'b64_json' }),
      });
      if (res.status === 200) images += ((await res.json()) as { data: unknown[] }).data.length;
      else throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    });
    const seconds = (performance.now() - t0) / 1000;
    return { imagesPerMin: +(images / seconds * 60).toFixed(1), seconds: +seconds.toFixed(1), images };
  } finally {
    await server.stop();
  }
}

const report: Record<string, unknown> = {
  date: new Date().toISOString(), host: `${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`,
  model: a.model, device: a.device, steps: STEPS, size: SIZE,
};
console.log(`# sd-native serve load test — ${report.date}\n${report.host}; model ${path.basename(a.model!)}, ${SIZE}x${SIZE}, ${STEPS} steps, device ${a.device}\n`);
const rob = [];
for (const c of a.only === 'throughput' ? [] : [1, 4, 16]) {
  const r = await robustness(c);
  rob.push(r);
  console.log(JSON.stringify(r));
}
report.robustness = rob;
console.log('\n| concurrency | requests | p50 ms | p99 ms | answers | jobs | RSS MiB before → after | nothing lost |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rob as Array<Record<string, any>>) {
  console.log(`| ${r.concurrency} | ${r.requests} | ${r.p50_ms} | ${r.p99_ms} | ${Object.entries(r.answers).map(([k, v]) => `${k}: ${v}`).join('; ')} | ` +
    `${r.jobs.succeeded} ok, ${r.jobs.cancelled} cancelled, ${r.jobs.failed} failed | ${r.rss_mb_before} → ${r.rss_mb_after} | ${r.nothing_lost ? 'yes' : 'NO'} |`);
}
const thr: Record<string, unknown>[] = [];
for (const c of a.only === 'robustness' ? [] : [1, 4, 8]) {
  const off = await throughput(1, c);
  const on = await throughput(8, c);
  thr.push({ concurrency: c, off, on });
}
report.throughput = thr;
console.log(`\n| concurrency | images/min, batching off | images/min, --max-batch 8 --batch-wait-ms ${a['batch-wait-ms']} | speed-up |`);
console.log('|---|---|---|---|');
for (const t of thr as Array<Record<string, any>>) {
  console.log(`| ${t.concurrency} | ${t.off.imagesPerMin} | ${t.on.imagesPerMin} | ${(t.on.imagesPerMin / t.off.imagesPerMin).toFixed(2)}× |`);
}
if (a.json) writeFileSync(a.json, JSON.stringify(report, null, 2));
const ok = (rob as Array<{ nothing_lost: boolean }>).every((r) => r.nothing_lost);
process.exitCode = ok ? 0 : 1;
