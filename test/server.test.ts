/**
 * `sd-native serve` (issue 15): every route and error code of lib/server/app.ts on the tiny
 * fixture model, over a real loopback socket — OpenAI images (generations, multipart edits), the
 * A1111 API, the jobs API with Server-Sent Events and cancellation, /health, /metrics; 400 with
 * the field and the allowed values, 404, 413, 503 on out-of-memory (the server keeps serving; also the
 * memory guard's real up-front refusal), 400 past --max-pixels naming the size field,
 * 503 while draining; a disconnecting client cancels its job. Generations are 32×32, 2–3 steps.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { createServer } from '../lib/server/app.js';
import { LocalBackend } from '../lib/server/local_backend.js';
import { PipelineExecutor, librarySupportsPreviews } from '../lib/server/executor.js';
import type { ExecutorJob, JobExecutor, JobEvent } from '../lib/server/backend.js';
import { readPngText } from '../lib/index.js';
import { fixture } from './helpers/fixtures.js';

const model = fixture('models', 'tiny-sd15');
const small = { width: 32, height: 32 };

let executor: PipelineExecutor;
let app: FastifyInstance;
let base: string;
/** Runs the real executor, except that a job whose prompt is 'oom' fails as the library does when the device runs out of memory. */
let oomRuns = 0;
const wrapped: JobExecutor = {
  async run(jobs: ExecutorJob[]) {
    if (jobs.some((j) => j.request.params.prompt === 'oom')) {
      oomRuns++;
      return jobs.map(() => ({ error: { code: 'E_OUT_OF_MEMORY', message: 'CUDA out of memory (simulated by the test executor)' } }));
    }
    return executor.run(jobs);
  },
  models: () => executor.models(),
  dispose: () => executor.dispose(),
};

async function post(path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const res = await fetch(base + path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: await res.json() as any };
}
async function get(path: string) {
  const res = await fetch(base + path);
  return { status: res.status, body: await res.json() as any, headers: res.headers };
}
/** Asserts the error envelope and returns the error. */
function expectError(r: { status: number; body: any }, status: number, code: string): { code: string; message: string; param?: string } {
  expect(r.status).toBe(status);
  expect(Object.keys(r.body)).toEqual(['error']);
  expect(r.body.error.code).toBe(code);
  expect(typeof r.body.error.message).toBe('string');
  expect(r.body.error.message.length).toBeGreaterThan(10);
  return r.body.error;
}
async function pngInfo(b64: string) {
  const buf = Buffer.from(b64, 'base64');
  const meta = await sharp(buf).metadata();
  return { width: meta.width, height: meta.height, format: meta.format, text: readPngText(buf) };
}

/** Reads an SSE stream until the job's last event. */
async function readEvents(id: string, onEvent?: (e: JobEvent) => void): Promise<JobEvent[]> {
  const res = await fetch(`${base}/v1/jobs/${id}/events`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: JobEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      const type = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!type || !data) continue;
      const ev = JSON.parse(data) as JobEvent;
      expect(ev.type).toBe(type);
      events.push(ev);
      onEvent?.(ev);
    }
  }
  return events;
}

beforeAll(async () => {
  executor = await PipelineExecutor.load([model], { threads: 1 });
  app = await createServer({ backend: new LocalBackend(wrapped), models: executor.descriptors(), maxBodyMb: 0.25 });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await app?.close();
  executor?.dispose();
});

describe('OpenAI images API', () => {
  it('POST /v1/images/generations answers b64_json PNGs with the A1111 parameters chunk, and urls that serve them', async () => {
    const r = await post('/v1/images/generations', { prompt: 'a red cube', size: '32x32', steps: 2, seed: 7, response_format: 'b64_json' });
    expect(r.status).toBe(200);
    expect(typeof r.body.created).toBe('number');
    expect(r.body.data).toHaveLength(1);
    const info = await pngInfo(r.body.data[0].b64_json);
    expect(info).toMatchObject({ width: 32, height: 32, format: 'png' });
    expect(info.text.parameters).toMatch(/^a red cube\nSteps: 2, .*Seed: 7, Size: 32x32/);

    const u = await post('/v1/images/generations', { prompt: 'a red cube', size: '32x32', steps: 2, seed: 7 });
    expect(u.status).toBe(200);
    const url: string = u.body.data[0].url;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/jobs\/[0-9a-f-]+\/images\/0\.png$/);
    const png = await fetch(url);
    expect(png.headers.get('content-type')).toBe('image/png');
    const same = Buffer.from(await png.arrayBuffer());
    // the same request and seed: the same pixels
    const a = await sharp(Buffer.from(r.body.data[0].b64_json, 'base64')).raw().toBuffer();
    expect((await sharp(same).raw().toBuffer()).equals(a)).toBe(true);
  });

  it('400 names the field and the allowed values; 404 for an unknown model; bad JSON 400', async () => {
    let e = expectError(await post('/v1/images/generations', { prompt: 'x', response_format: 'png' }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toContain("response_format must be one of 'b64_json', 'url'; received \"png\"");
    expect(e.param).toBe('response_format');
    e = expectError(await post('/v1/images/generations', { prompt: 'x', n: 11 }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toContain('n must be an integer in [1, 10]; received 11');
    e = expectError(await post('/v1/images/generations', { prompt: 'x', size: 'big' }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toContain("size must be 'WIDTHxHEIGHT'");
    // the library's own rules, from its zod schema
    e = expectError(await post('/v1/images/generations', { prompt: 'x', steps: 0 }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toBe('steps must be an integer in [1, 1000]; received 0'); // the route's field name
    expect(e.param).toBe('steps');
    e = expectError(await post('/v1/images/generations', { prompt: 'x', size: '30x30' }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toContain('must be a positive multiple of 8');
    e = expectError(await post('/v1/images/generations', { prompt: 'x', scheduler: 'Nope' }), 400, 'E_UNSUPPORTED_MODEL');
    expect(e.message).toContain('Euler a');
    e = expectError(await post('/v1/images/generations', { prompt: '' }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toContain('prompt must be a non-empty string');
    e = expectError(await post('/v1/images/generations', { prompt: 'x', model: 'dall-e-3' }), 404, 'E_MODEL_NOT_FOUND');
    expect(e.message).toContain('tiny-sd15');
    expectError(await post('/v1/images/generations', '{"prompt": '), 400, 'E_INVALID_ARGUMENT');
  });

  it('413 for a body over --max-body-mb (JSON and multipart)', async () => {
    const big = 'x'.repeat(300 * 1024);
    expectError(await post('/v1/images/generations', { prompt: big }), 413, 'E_TOO_LARGE');
    const form = new FormData();
    form.append('prompt', 'x');
    form.append('image', new Blob([Buffer.alloc(300 * 1024)], { type: 'image/png' }), 'big.png');
    const res = await fetch(base + '/v1/images/edits', { method: 'POST', body: form });
    expectError({ status: res.status, body: await res.json() }, 413, 'E_TOO_LARGE');
  });

  it('POST /v1/images/edits: multipart image → image2image; image + transparent-area mask → inpainting', async () => {
    const image = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toBuffer();
    // OpenAI's mask: the transparent half is the area to edit
    const alpha = Buffer.alloc(32 * 32 * 4, 255);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 16; x++) alpha[(y * 32 + x) * 4 + 3] = 0;
    const mask = await sharp(alpha, { raw: { width: 32, height: 32, channels: 4 } }).png().toBuffer();

    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(image)], { type: 'image/png' }), 'in.png');
    form.append('prompt', 'a blue cube');
    form.append('steps', '3');
    form.append('strength', '0.7');
    form.append('seed', '3');
    form.append('response_format', 'b64_json');
    let res = await fetch(base + '/v1/images/edits', { method: 'POST', body: form });
    let body = await res.json() as any;
    expect(res.status).toBe(200);
    const i2iB64: string = body.data[0].b64_json;
    const i2i = await pngInfo(i2iB64);
    expect(i2i).toMatchObject({ width: 32, height: 32 });
    expect(i2i.text.parameters).toContain('Denoising strength: 0.7');

    form.append('mask', new Blob([new Uint8Array(mask)], { type: 'image/png' }), 'mask.png');
    res = await fetch(base + '/v1/images/edits', { method: 'POST', body: form });
    body = await res.json() as any;
    expect(res.status).toBe(200);
    const inpainted = await sharp(Buffer.from(body.data[0].b64_json, 'base64')).raw().toBuffer();
    expect(inpainted.length).toBe(32 * 32 * 3);
    expect(inpainted.equals(await sharp(Buffer.from(i2iB64, 'base64')).raw().toBuffer())).toBe(false);

    const noImage = new FormData();
    noImage.append('prompt', 'x');
    res = await fetch(base + '/v1/images/edits', { method: 'POST', body: noImage });
    expect(expectError({ status: res.status, body: await res.json() }, 400, 'E_INVALID_ARGUMENT').param).toBe('image');
    expectError(await post('/v1/images/edits', { prompt: 'x' }), 400, 'E_INVALID_ARGUMENT');
    const badImage = new FormData();
    badImage.append('prompt', 'x');
    badImage.append('steps', '2');
    badImage.append('image', new Blob([Buffer.from('not an image')]), 'x.png');
    res = await fetch(base + '/v1/images/edits', { method: 'POST', body: badImage });
    expect(expectError({ status: res.status, body: await res.json() }, 400, 'E_INVALID_ARGUMENT').message).toMatch(/image/);
  });
});

describe('AUTOMATIC1111 API', () => {
  it('txt2img answers images, parameters and the info JSON (all_seeds, infotexts)', async () => {
    const r = await post('/sdapi/v1/txt2img', { prompt: 'a lighthouse', negative_prompt: 'fog', steps: 2, cfg_scale: 5, seed: 42, ...small, sampler_name: 'Euler', batch_size: 2 });
    expect(r.status).toBe(200);
    expect(r.body.images).toHaveLength(2);
    expect(r.body.parameters).toMatchObject({ prompt: 'a lighthouse', seed: 42, steps: 2, cfg_scale: 5, batch_size: 2, n_iter: 1 });
    const info = JSON.parse(r.body.info);
    expect(info).toMatchObject({ prompt: 'a lighthouse', negative_prompt: 'fog', seed: 42, width: 32, height: 32, sampler_name: 'Euler', cfg_scale: 5, steps: 2 });
    expect(info.all_seeds).toHaveLength(2);
    expect(info.all_seeds[0]).toBe(42);
    expect(info.infotexts[0]).toMatch(/^a lighthouse\nNegative prompt: fog\nSteps: 2, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 32x32/);
    expect((await pngInfo(r.body.images[1])).text.parameters).toBe(info.infotexts[1]);
  });

  it('txt2img: 400 with the field for bad values, unknown sampler names the allowed ones', async () => {
    let e = expectError(await post('/sdapi/v1/txt2img', { prompt: 'x', seed: -5 }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toContain('seed must be an integer (-1 = random); received -5');
    e = expectError(await post('/sdapi/v1/txt2img', { prompt: 'x', batch_size: 0 }), 400, 'E_INVALID_ARGUMENT');
    expect(e.param).toBe('batch_size');
    e = expectError(await post('/sdapi/v1/txt2img', { prompt: 'x', sampler_name: 'Foo' }), 400, 'E_UNSUPPORTED_MODEL');
    expect(e.message).toContain('DPM++ 2M Karras');
    e = expectError(await post('/sdapi/v1/txt2img', { prompt: 'x', override_settings: { sd_model_checkpoint: 'v1-5-pruned.safetensors [6ce0161689]' } }), 404, 'E_MODEL_NOT_FOUND');
  });

  it('img2img with init_images and an inpainting mask; the answer drops the input images', async () => {
    const image = (await sharp({ create: { width: 32, height: 32, channels: 3, background: '#3366cc' } }).png().toBuffer()).toString('base64');
    const mask = (await sharp({ create: { width: 32, height: 32, channels: 3, background: '#ffffff' } }).png().toBuffer()).toString('base64');
    const r = await post('/sdapi/v1/img2img', { prompt: 'a boat', init_images: [`data:image/png;base64,${image}`], mask, denoising_strength: 0.5, steps: 4, seed: 1 });
    expect(r.status).toBe(200);
    expect(r.body.images).toHaveLength(1);
    expect(r.body.parameters.init_images).toBeNull();
    expect(r.body.parameters.mask).toBeNull();
    const info = JSON.parse(r.body.info);
    expect(info.denoising_strength).toBe(0.5);
    expect(info.infotexts[0]).toContain('Denoising strength: 0.5');
    expectError(await post('/sdapi/v1/img2img', { prompt: 'x', init_images: [] }), 400, 'E_INVALID_ARGUMENT');
    const e = expectError(await post('/sdapi/v1/img2img', { prompt: 'x', init_images: ['@@@'] }), 400, 'E_INVALID_ARGUMENT');
    expect(e.message).toMatch(/^init_images\[0\] must be base64/);
  });

  it('sd-models, samplers and progress answer in A1111 shapes; progress shows the running job', async () => {
    const models = await get('/sdapi/v1/sd-models');
    expect(models.body).toEqual([{ title: 'tiny-sd15', model_name: 'tiny-sd15', hash: null, sha256: null, filename: model, config: null }]);
    const samplers = await get('/sdapi/v1/samplers');
    expect(samplers.body.map((s: any) => s.name)).toEqual(expect.arrayContaining(['Euler a', 'DPM++ 2M Karras', 'DDIM']));
    expect(samplers.body.find((s: any) => s.name === 'DPM++ 2M Karras')).toEqual({ name: 'DPM++ 2M Karras', aliases: ['DPMSolverMultistepScheduler'], options: { use_karras_sigmas: 'true' } });

    const idle = await get('/sdapi/v1/progress');
    expect(idle.body).toMatchObject({ progress: 0, eta_relative: 0, current_image: null, state: { job_count: 0, sampling_step: 0 } });
    const running = post('/sdapi/v1/txt2img', { prompt: 'slow', steps: 12, ...small });
    let seen: any;
    for (let i = 0; i < 400 && !seen; i++) {
      const p = await get('/sdapi/v1/progress?skip_current_image=true');
      if (p.body.progress > 0) seen = p.body;
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(seen).toBeDefined();
    expect(seen.progress).toBeGreaterThan(0);
    expect(seen.progress).toBeLessThanOrEqual(1);
    expect(seen.state.sampling_steps).toBeGreaterThanOrEqual(12);
    expect(seen.state.job).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.state.job_count).toBe(1);
    expect((await running).status).toBe(200);
  });
});

describe('jobs API', () => {
  it('POST /v1/jobs → 202 {id}; SSE streams queued position, started, every step, the result; GET reports it', async () => {
    // a first job keeps the worker busy so the second is queued behind it
    // (positions count waiting jobs: the running one is not in the queue)
    const first = await post('/v1/jobs', { params: { prompt: 'first', numInferenceSteps: 20, ...small } });
    const middle = await post('/v1/jobs', { params: { prompt: 'middle', numInferenceSteps: 2, ...small } });
    const second = await post('/v1/jobs', { params: { prompt: 'second', numInferenceSteps: 2, seed: 9, ...small } });
    expect(middle.status).toBe(202);
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(Object.keys(second.body)).toEqual(['id']);
    const events = await readEvents(second.body.id);
    expect(events[0]).toEqual({ type: 'queued', position: 1 });
    const types = events.map((e) => e.type);
    expect(types).toContain('started');
    expect(types.at(-1)).toBe('result');
    const steps = events.filter((e) => e.type === 'step') as Array<{ step: number; numSteps: number }>;
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: steps[0].numSteps }, (_, i) => i + 1));
    const queuedPositions = events.filter((e) => e.type === 'queued').map((e) => (e as { position: number }).position);
    expect(queuedPositions.at(-1)).toBe(0);

    const info = await get(`/v1/jobs/${second.body.id}`);
    expect(info.body).toMatchObject({ id: second.body.id, status: 'succeeded', request: { model: 'tiny-sd15', task: 'text2image' } });
    expect(info.body.result.seeds).toEqual([9]);
    expect(info.body.finishedAt).toBeGreaterThanOrEqual(info.body.startedAt);
    // a late subscriber gets the final state at once
    expect((await readEvents(second.body.id)).map((e) => e.type)).toEqual(['result']);
    expectError(await get('/v1/jobs/nope'), 404, 'E_NOT_FOUND');
    const badJob = await post('/v1/jobs', { params: { prompt: 'x', numInferenceSteps: 1.5 } });
    expect(expectError(badJob, 400, 'E_INVALID_ARGUMENT').message).toContain('numInferenceSteps must be an integer in [1, 1000]; received 1.5');
    expect(expectError(await post('/v1/jobs', { params: { prompt: 'x', steps: 2 } }), 400, 'E_INVALID_ARGUMENT').message).toContain("no field 'steps'");
    expectError(await post('/v1/jobs', { prompt: 'x' }), 400, 'E_INVALID_ARGUMENT');
  });

  it.runIf(librarySupportsPreviews())('previews: step events of a job that asks carry preview PNGs; /sdapi/v1/progress shows the current one', async () => {
    const job = await post('/v1/jobs', { previews: true, params: { prompt: 'preview me', numInferenceSteps: 12, width: 64, height: 64 } });
    let progressImage: string | null = null;
    const poll = (async () => {
      for (let i = 0; i < 400 && !progressImage; i++) {
        progressImage = (await get('/sdapi/v1/progress')).body.current_image;
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
    const events = await readEvents(job.body.id);
    await poll;
    const steps = events.filter((e) => e.type === 'step') as Array<{ preview?: string }>;
    expect(steps.length).toBeGreaterThanOrEqual(12);
    expect(steps.every((e) => typeof e.preview === 'string')).toBe(true);
    const meta = await sharp(Buffer.from(steps[0].preview!, 'base64')).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(0);
    expect(progressImage).not.toBeNull();
    expect((await sharp(Buffer.from(progressImage!, 'base64')).metadata()).format).toBe('png');
    // a job that did not ask gets none
    const plain = await post('/v1/jobs', { params: { prompt: 'no preview', numInferenceSteps: 2, ...small } });
    expect((await readEvents(plain.body.id)).some((e) => e.type === 'step' && e.preview !== undefined)).toBe(false);
  });

  it('DELETE cancels a running job within a step and a queued one at once; 409 once finished', async () => {
    const running = await post('/v1/jobs', { params: { prompt: 'long', numInferenceSteps: 40, ...small } });
    const queued = await post('/v1/jobs', { params: { prompt: 'waiting', numInferenceSteps: 2, ...small } });
    let cancelledAtStep = 0;
    let lastStep = 0;
    const done = readEvents(running.body.id, (e) => {
      if (e.type === 'step') {
        lastStep = e.step;
        if (e.step === 2 && !cancelledAtStep) { cancelledAtStep = 2; void fetch(`${base}/v1/jobs/${running.body.id}`, { method: 'DELETE' }); }
      }
    });
    const cq = await fetch(`${base}/v1/jobs/${queued.body.id}`, { method: 'DELETE' });
    expect(await cq.json()).toEqual({ id: queued.body.id, status: 'cancelled' });
    expect((await get(`/v1/jobs/${queued.body.id}`)).body.status).toBe('cancelled');
    const events = await done;
    expect(events.at(-1)).toEqual({ type: 'cancelled' });
    expect(lastStep).toBeLessThanOrEqual(3);
    const info = await get(`/v1/jobs/${running.body.id}`);
    expect(info.body.status).toBe('cancelled');
    const again = await fetch(`${base}/v1/jobs/${running.body.id}`, { method: 'DELETE' });
    expectError({ status: again.status, body: await again.json() }, 409, 'E_ALREADY_FINISHED');
    // the worker is free again: a new job runs
    const after = await post('/v1/images/generations', { prompt: 'after', steps: 2, size: '32x32', response_format: 'b64_json' });
    expect(after.status).toBe(200);
  });

  it('a client that disconnects mid-generation cancels its job', async () => {
    const before = await metric('sd_native_jobs_total{outcome="cancelled"}');
    const c = new AbortController();
    const req = fetch(base + '/v1/images/generations', {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: c.signal,
      body: JSON.stringify({ prompt: 'gone', steps: 40, size: '32x32' }),
    }).catch((e: Error) => e);
    for (let i = 0; i < 400; i++) {
      if ((await get('/sdapi/v1/progress')).body.state.sampling_step >= 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    c.abort();
    expect(await req).toBeInstanceOf(Error);
    let after = before;
    for (let i = 0; i < 100 && after === before; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await metric('sd_native_jobs_total{outcome="cancelled"}');
    }
    expect(after).toBe(before + 1);
    expect((await get('/health')).body).toMatchObject({ status: 'ok', queued: 0, running: 0 });
  });
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(base + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.slice(name.length + 1)) : NaN;
}

describe('health, metrics, errors', () => {
  it('503 E_OUT_OF_MEMORY, and the server keeps serving', async () => {
    const r = await post('/v1/images/generations', { prompt: 'oom', size: '32x32', steps: 2 });
    expect(expectError(r, 503, 'E_OUT_OF_MEMORY').message).toContain('out of memory');
    expect(oomRuns).toBe(1);
    const ok = await post('/v1/images/generations', { prompt: 'fine', size: '32x32', steps: 2, response_format: 'b64_json' });
    expect(ok.status).toBe(200);
    expect((await get('/health')).status).toBe(200);
  });

  it('the memory guard\'s up-front refusal (a real one: SD_NATIVE_MEMORY_LIMIT) is 503 E_OUT_OF_MEMORY with the estimate, and the server keeps serving', async () => {
    process.env.SD_NATIVE_MEMORY_LIMIT = '1MiB'; // read by the native guard at every call
    let r;
    try {
      r = await post('/v1/images/generations', { prompt: 'guarded', size: '64x64', steps: 2 });
    } finally {
      delete process.env.SD_NATIVE_MEMORY_LIMIT;
    }
    const e = expectError(r, 503, 'E_OUT_OF_MEMORY');
    expect(e.message).toMatch(/needs an estimated .* but only 1.0 MiB is available \(SD_NATIVE_MEMORY_LIMIT\)/);
    const ok = await post('/v1/images/generations', { prompt: 'fine', size: '32x32', steps: 2, response_format: 'b64_json' });
    expect(ok.status).toBe(200);
  });

  it('--max-pixels (default 4 MP): a larger width × height × images is 400 naming the size field, before it is queued', async () => {
    const before = await metric('sd_native_jobs_total{outcome="failed"}');
    let e = expectError(await post('/v1/images/generations', { prompt: 'x', size: '4096x4096' }), 400, 'E_INVALID_ARGUMENT');
    expect(e.param).toBe('size');
    expect(e.message).toBe('size: 4096x4096 × 1 image(s) = 16777216 pixels is more than this server\'s limit of 4194304 pixels per request (--max-pixels); ask for a smaller size or fewer images');
    e = expectError(await post('/sdapi/v1/txt2img', { prompt: 'x', width: 2048, height: 2048, batch_size: 2 }), 400, 'E_INVALID_ARGUMENT');
    expect(e.param).toBe('width');
    expect(e.message).toContain('2048x2048 × 2 image(s) = 8388608 pixels');
    expect(await metric('sd_native_jobs_total{outcome="failed"}')).toBe(before); // refused before any job
    // a server with its own cap, and 0 = no cap
    const capped = await createServer({ backend: new LocalBackend(wrapped), models: executor.descriptors(), maxPixels: 32 * 32 });
    try {
      const res = await capped.inject({ method: 'POST', url: '/v1/images/generations', payload: { prompt: 'x', size: '32x64' } });
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toMatchObject({ code: 'E_INVALID_ARGUMENT', param: 'size' });
    } finally {
      await capped.close();
    }
    await expect(createServer({ backend: new LocalBackend(wrapped), models: executor.descriptors(), maxPixels: -1 })).rejects.toThrow(/maxPixels must be an integer >= 0/);
  });

  it('GET /metrics: Prometheus text with queue depth, jobs by outcome, steps, generation seconds, memory', async () => {
    const res = await fetch(base + '/metrics');
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    for (const name of ['sd_native_queue_depth 0', 'sd_native_jobs_running 0', 'sd_native_jobs_total{outcome="succeeded"}', 'sd_native_jobs_total{outcome="failed"}',
      'sd_native_steps_total', 'sd_native_generation_seconds_bucket{le="+Inf"}', 'sd_native_process_resident_memory_bytes', 'sd_native_http_errors_total{code="E_INVALID_ARGUMENT"}']) {
      expect(text).toContain(name);
    }
    expect(await metric('sd_native_steps_total')).toBeGreaterThan(10);
    expect(await metric('sd_native_jobs_total{outcome="succeeded"}')).toBeGreaterThan(5);
    expect(await metric('sd_native_jobs_total{outcome="failed"}')).toBeGreaterThanOrEqual(1); // the simulated out-of-memory
    expect(await metric('sd_native_jobs_total{outcome="cancelled"}')).toBeGreaterThanOrEqual(3);
  });

  it('GET /health, /v1/models, unknown routes 404 in the envelope, the web page files', async () => {
    const h = await get('/health');
    expect(h.body).toMatchObject({ status: 'ok', models: ['tiny-sd15'], queued: 0, running: 0 });
    const m = await get('/v1/models');
    expect(m.body.data[0]).toMatchObject({ id: 'tiny-sd15', object: 'model', family: 'sd1' });
    expectError(await get('/nope'), 404, 'E_NOT_FOUND');
    expectError(await post('/sdapi/v1/nope', {}), 404, 'E_NOT_FOUND');
    const page = await fetch(base + '/');
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await page.text()).toContain('<script type="module" src="app.js">');
    const js = await fetch(base + '/app.js');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).toContain('new EventSource(');
    expect((await fetch(base + '/style.css')).status).toBe(200);
  });

  it('drain: running jobs finish and are answered, new jobs get 503, then the server closes', async () => {
    const ex2 = await PipelineExecutor.load([model], { threads: 1 });
    const backend2 = new LocalBackend(ex2);
    const app2 = await createServer({ backend: backend2, executor: ex2 });
    const base2 = await app2.listen({ host: '127.0.0.1', port: 0 });
    try {
      const running = fetch(base2 + '/v1/images/generations', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'last', steps: 400, size: '32x32', response_format: 'b64_json' }),
      });
      const queued = await (await fetch(base2 + '/v1/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ params: { prompt: 'queued', numInferenceSteps: 2, ...small } }) })).json() as { id: string };
      // drain while the long job runs (400 steps: seconds even on a quiet machine, so the requests
      // below reach a server that is still draining, not one that has already closed)
      for (let i = 0; i < 200; i++) {
        const p = await (await fetch(base2 + '/sdapi/v1/progress')).json() as { state?: { sampling_step?: number } };
        if ((p.state?.sampling_step ?? 0) > 0) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const drained = app2.drain();
      const refused = await fetch(base2 + '/v1/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ params: { prompt: 'late' } }) });
      expectError({ status: refused.status, body: await refused.json() }, 503, 'E_UNAVAILABLE');
      expect(refused.headers.get('retry-after')).toBe('5');
      const health = await fetch(base2 + '/health');
      expect(health.status).toBe(503);
      expect(((await health.json()) as any).status).toBe('draining');
      const r = await running;
      expect(r.status).toBe(200);
      expect(((await r.json()) as any).data[0].b64_json.length).toBeGreaterThan(100);
      await drained;
      // the queued job ran too before the server closed
      expect(app2.server.listening).toBe(false);
      expect((await backend2.get(queued.id))?.status).toBe('succeeded');
    } finally {
      await app2.close();
      ex2.dispose();
    }
  });
});

describe('embedding (examples/http-server.ts)', () => {
  it('sdNativeRoutes mounts every route under a prefix of another fastify app; the page redirects to prefix/', async () => {
    const { default: Fastify } = await import('fastify');
    const { sdNativeRoutes } = await import('../lib/server/index.js');
    const host = Fastify();
    host.get('/', async () => ({ mine: true }));
    const sd = sdNativeRoutes({ backend: new LocalBackend(executor), executor, maxBodyMb: 1 });
    await host.register(sd.plugin, { prefix: '/sd' });
    const hostBase = await host.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect(await (await fetch(hostBase + '/')).json()).toEqual({ mine: true });
      const redirect = await fetch(hostBase + '/sd', { redirect: 'manual' });
      expect(redirect.status).toBe(302);
      expect(redirect.headers.get('location')).toBe('/sd/');
      expect(await (await fetch(hostBase + '/sd/')).text()).toContain('src="app.js"');
      const r = await fetch(hostBase + '/sd/v1/images/generations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'mounted', size: '32x32', steps: 2 }) });
      const url = ((await r.json()) as any).data[0].url as string;
      expect(url).toMatch(/\/sd\/v1\/jobs\/[0-9a-f-]+\/images\/0\.png$/);
      expect((await fetch(url)).headers.get('content-type')).toBe('image/png');
      const missing = await fetch(hostBase + '/sd/v1/nope');
      expectError({ status: missing.status, body: await missing.json() }, 404, 'E_NOT_FOUND');
      await sd.drain();
      const refused = await fetch(hostBase + '/sd/v1/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ params: { prompt: 'x' } }) });
      expectError({ status: refused.status, body: await refused.json() }, 503, 'E_UNAVAILABLE');
    } finally {
      await host.close();
    }
  });
});
