/**
 * A minimal image server on node:http: one pipeline, requests queued in order, the event loop
 * free while images are generated (GET /health answers during a generation).
 *
 *   npx tsx examples/http-server.ts --model ./stable-diffusion-v1-5 [--port 8080] [--device cuda]
 *
 *   curl -s localhost:8080/health
 *   curl -s -X POST localhost:8080/generate -H 'content-type: application/json' \
 *     -d '{"prompt":"a lighthouse at dusk","steps":20,"seed":7}' -o lighthouse.png
 *
 * POST /generate JSON body: prompt (required), negativePrompt, steps, guidance, seed, width,
 * height, scheduler. Answers image/png (with the A1111 `parameters` chunk) and the headers
 * X-Seed and X-Timing-Ms; errors answer JSON `{ error: { code, message } }` (400 for bad input,
 * 499 when the client went away, 503 on out-of-memory, 500 otherwise). A client that disconnects
 * cancels its generation (queued or running).
 */
import http from 'node:http';
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { StableDiffusionPipeline, SdError, type GenerateOptions } from '../lib/index.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    port: { type: 'string', default: '8080' },
    device: { type: 'string', default: 'cpu' },
    dtype: { type: 'string', default: 'float32' },
    'max-body': { type: 'string', default: '65536' },
  },
});
if (!a.model) {
  console.error('usage: npx tsx examples/http-server.ts --model <dir|file.safetensors> [--port 8080]');
  process.exit(1);
}

const load = { device: a.device, dtype: a.dtype as 'float32' | 'float16' | 'bfloat16' };
const pipe = (await stat(a.model)).isFile()
  ? await StableDiffusionPipeline.fromSingleFile(a.model, load)
  : await StableDiffusionPipeline.fromPretrained(a.model, load);
const defaultScheduler = pipe.scheduler.name;
let served = 0;
let progress: { step: number; numSteps: number } | undefined;

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function statusOf(e: unknown): number {
  if (!(e instanceof SdError)) return 500;
  switch (e.code) {
    case 'E_INVALID_ARGUMENT': case 'E_UNSUPPORTED_MODEL': return 400;
    case 'E_ABORTED': return 499;
    case 'E_OUT_OF_MEMORY': return 503;
    default: return 500;
  }
}

async function readJson(req: http.IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw Object.assign(new Error(`request body over ${limit} bytes`), { status: 413 });
    chunks.push(c as Buffer);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('the body must be a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw Object.assign(new Error(`invalid JSON: ${(e as Error).message}`), { status: 400 });
  }
}

async function generate(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = await readJson(req, Number(a['max-body']));
  // Cancel when the client disconnects before the answer is sent.
  const ac = new AbortController();
  res.on('close', () => { if (!res.writableFinished) ac.abort(new Error('client disconnected')); });

  // Scheduler per request: setScheduler affects calls made after it, so set it right before
  // queueing this call (each queued call keeps the scheduler it was made with).
  pipe.setScheduler(typeof body.scheduler === 'string' ? body.scheduler : defaultScheduler);
  const options: GenerateOptions = {
    prompt: body.prompt as string,
    negativePrompt: body.negativePrompt as string | undefined,
    numInferenceSteps: (body.steps ?? body.numInferenceSteps) as number | undefined,
    guidanceScale: (body.guidance ?? body.guidanceScale) as number | undefined,
    seed: body.seed as number | undefined,
    width: body.width as number | undefined,
    height: body.height as number | undefined,
    signal: ac.signal,
    onStep: (s) => { progress = { step: s.step, numSteps: s.numSteps }; },
  };
  for (const k of Object.keys(options) as (keyof GenerateOptions)[]) if (options[k] === undefined) delete options[k];

  const { images, seed, timings } = await pipe.generate(options);
  progress = undefined;
  const png = await images[0].toPNG();
  served++;
  res.writeHead(200, {
    'content-type': 'image/png', 'content-length': png.length,
    'x-seed': String(seed), 'x-timing-ms': timings.wallMs.toFixed(0),
  });
  res.end(png);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/health') {
    sendJson(res, 200, { ok: true, model: pipe.info.modelPath, pending: pipe.pendingCalls, progress, served });
    return;
  }
  if (req.method === 'POST' && url.pathname === '/generate') {
    generate(req, res).catch((e: unknown) => {
      if (res.headersSent || res.destroyed) return;
      const status = (e as { status?: number }).status ?? statusOf(e);
      const code = e instanceof SdError ? e.code : status === 413 ? 'E_TOO_LARGE' : status === 400 ? 'E_INVALID_ARGUMENT' : 'E_INTERNAL';
      sendJson(res, status, { error: { code, message: (e as Error).message } });
    });
    return;
  }
  sendJson(res, 404, { error: { code: 'E_NOT_FOUND', message: `no route ${req.method} ${url.pathname}` } });
});

server.listen(Number(a.port), () => {
  console.log(`${pipe.info.className} (${pipe.info.family}) ready on http://localhost:${a.port} — POST /generate, GET /health`);
});

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.log(`\n${sig}: closing`);
    server.close();
    server.closeAllConnections();
    void pipe[Symbol.asyncDispose]().then(() => process.exit(0));
  });
}
