/**
 * The HTTP layer of `sd-native serve`, a fastify app: OpenAI-compatible images API, AUTOMATIC1111
 * `/sdapi/v1/*`, an async jobs API with Server-Sent Events, `/health`, Prometheus `/metrics`, and
 * the web page at `/`. It queues jobs on a {@link JobBackend} (in-process or Redis) and never
 * touches pipelines itself, so users can mount it in their own fastify app:
 *
 * ```ts
 * const executor = await PipelineExecutor.load(['./sd-v1-5']);
 * const app = await createServer({ backend: new LocalBackend(executor), executor });
 * await app.listen({ port: 7860 });
 * ```
 *
 * Bodies are validated with zod (schemas.ts for the API fields, then the library's option
 * schemas); every error answers `{ error: { code, message } }` with the status of
 * errors.ts's `statusOfCode`.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import sharp from 'sharp';
import { z } from 'zod';
import client from 'prom-client';
import { packageRoot } from '../native.js';
import { InvalidArgumentError } from '../errors.js';
import { A1111_SAMPLERS } from '../schedulers.js';
import type { JobBackend, JobEvent, JobInfo, JobRequest, JobResult } from './backend.js';
import { checkJobRequest, type ModelDescriptor, type PipelineExecutor } from './executor.js';
import { HttpError, errorBody, toHttpError, statusOfCode } from './errors.js';
import {
  a1111Img2ImgSchema, a1111Model, a1111Params, a1111Txt2ImgSchema, jobRequestOf, jobRequestSchema, openAiEditSchema,
  openAiGenerationSchema, openAiParams, zodMessage, type A1111Img2Img, type A1111Txt2Img, type OpenAiEdit,
} from './schemas.js';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Graceful shutdown: new jobs are refused (503 `E_UNAVAILABLE`), queued and running jobs
     * finish (their requests get their answers), then the HTTP server closes.
     */
    drain(): Promise<void>;
  }
}

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** Where jobs are queued and run. */
  backend: JobBackend;
  /** The executor of an in-process backend: its models are listed and requests checked against them. */
  executor?: PipelineExecutor;
  /** The models requests may name, when there is no executor in this process (Redis API role). */
  models?: ModelDescriptor[];
  /** Largest request body (JSON or multipart files), MiB (default 16). */
  maxBodyMb?: number;
  /** fastify's logger option (default false). */
  logger?: boolean | Record<string, unknown>;
  /**
   * Largest width × height × images of one request (default {@link DEFAULT_MAX_PIXELS}, 0 = no cap):
   * a larger request is refused with 400 `E_INVALID_ARGUMENT` naming the size field before it is
   * queued, so one request cannot take the server's memory. A request without width/height counts
   * the model's default size.
   */
  maxPixels?: number;
}

/** The default {@link ServerOptions.maxPixels}: 4 MP, e.g. one 2048×2048 image or four 1024×1024 images. */
export const DEFAULT_MAX_PIXELS = 4 * 1024 * 1024;

const TERMINAL = new Set(['result', 'error', 'cancelled']);

/** The OpenAI routes' names of the library's options (for error messages). */
const OPENAI_NAMES: Record<string, string> = {
  numInferenceSteps: 'steps', guidanceScale: 'guidance_scale', negativePrompt: 'negative_prompt', numImagesPerPrompt: 'n',
  clipSkip: 'clip_skip', width: 'size (width)', height: 'size (height)', maskImage: 'mask',
};
/** The A1111 routes' names of the library's options. */
const A1111_NAMES: Record<string, string> = {
  numInferenceSteps: 'steps', guidanceScale: 'cfg_scale', negativePrompt: 'negative_prompt', numImagesPerPrompt: 'batch_size × n_iter',
  clipSkip: 'clip_skip', strength: 'denoising_strength', image: 'init_images[0]', maskImage: 'mask', scheduler: 'sampler_name',
};

/** Resolves with a job's last event (result, error or cancelled). */
function waitFinal(backend: JobBackend, id: string): Promise<JobEvent> {
  return new Promise((resolve) => {
    let done = false;
    let unsubscribe: (() => void) | undefined;
    unsubscribe = backend.subscribe(id, (ev) => {
      if (done || !TERMINAL.has(ev.type)) return;
      done = true;
      resolve(ev);
      unsubscribe?.();
    });
    if (done) unsubscribe();
  });
}

/** Width and height of a PNG (IHDR). */
function pngSize(b64: string): { width: number; height: number } {
  const head = Buffer.from(b64.slice(0, 44), 'base64');
  return { width: head.readUInt32BE(16), height: head.readUInt32BE(20) };
}

/** A job's state for `GET /v1/jobs/:id`: the request's input images are summarised, not echoed. */
function publicInfo(info: JobInfo): JobInfo {
  const params = { ...info.request.params } as Record<string, unknown>;
  for (const k of ['image', 'maskImage']) {
    if (typeof params[k] === 'string') params[k] = `<base64, ${(params[k] as string).length} characters>`;
  }
  return { ...info, request: { ...info.request, params: params as unknown as JobInfo['request']['params'] } };
}

/** The files of the web page: `web/` of the package, app.js built into dist/web (or transpiled from web/app.ts in a checkout). */
async function webFile(name: string): Promise<{ body: Buffer | string; type: string } | undefined> {
  const root = packageRoot();
  const types: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };
  if (name === 'app.js') {
    // the build's dist/web/app.js, unless web/app.ts (a checkout) is newer: then transpiled here
    const built = await stat(path.join(root, 'dist', 'web', 'app.js')).catch(() => undefined);
    const source = path.join(root, 'web', 'app.ts');
    const src = await stat(source).catch(() => undefined);
    if (built?.isFile() && !(src && src.mtimeMs > built.mtimeMs)) return { body: await readFile(path.join(root, 'dist', 'web', 'app.js')), type: types['.js'] };
    if (!src?.isFile()) return undefined;
    const ts = await import('typescript');
    const out = ts.default.transpileModule(await readFile(source, 'utf8'), {
      compilerOptions: { target: ts.default.ScriptTarget.ES2022, module: ts.default.ModuleKind.ESNext },
    });
    return { body: out.outputText, type: types['.js'] };
  }
  const file = path.join(root, 'web', name);
  if (!(await stat(file).then((s) => s.isFile(), () => false))) return undefined;
  return { body: await readFile(file), type: types[path.extname(name)] ?? 'application/octet-stream' };
}

/** sd-native's routes as a fastify plugin, and the drain that goes with them. */
export interface SdNativeRoutes {
  /**
   * Registers every route (with its validator, error handler and multipart parser, encapsulated)
   * on the fastify instance it is registered on: `await app.register(routes.plugin, { prefix: '/sd' })`.
   */
  plugin: FastifyPluginAsync;
  /** Refuses new jobs (503 `E_UNAVAILABLE`) and waits for queued and running jobs to finish (the HTTP server stays open). */
  drain(): Promise<void>;
}

/**
 * sd-native's routes for mounting in your own fastify app (see {@link createServer} for a
 * standalone server). Requests are checked against the models of `options.executor` (or
 * `options.models`) before they are queued on `options.backend`.
 * @throws InvalidArgumentError when neither `executor` nor `models` names a model.
 * @example
 * const routes = sdNativeRoutes({ backend: new LocalBackend(executor), executor });
 * await app.register(routes.plugin, { prefix: '/sd' }); // web page at /sd/, OpenAI API at /sd/v1/images/generations …
 */
export function sdNativeRoutes(options: ServerOptions): SdNativeRoutes {
  const { backend, executor } = options;
  const models: ModelDescriptor[] = executor ? executor.descriptors() : (options.models ?? []);
  if (models.length === 0) throw new InvalidArgumentError('sd-native server: needs an executor or a list of models');
  const byName = new Map(models.map((m) => [m.name, m]));
  const defaultModel = models[0].name;
  const bodyLimit = Math.round((options.maxBodyMb ?? 16) * 1024 * 1024);
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(Number.isInteger(maxPixels) && maxPixels >= 0)) throw new InvalidArgumentError(`maxPixels must be an integer >= 0; received ${maxPixels}`);
  /** 400 naming the size field when width × height × images passes maxPixels (issue 19: one request must not take the server down). */
  const checkPixels = (request: JobRequest, names: Record<string, string>) => {
    if (maxPixels === 0) return;
    const p = request.params as { width?: unknown; height?: unknown; numImagesPerPrompt?: unknown };
    const model = byName.get(request.model);
    const width = typeof p.width === 'number' ? p.width : model?.defaultWidth ?? 0;
    const height = typeof p.height === 'number' ? p.height : model?.defaultHeight ?? 0;
    const images = typeof p.numImagesPerPrompt === 'number' ? p.numImagesPerPrompt : 1;
    const pixels = width * height * images;
    if (pixels > maxPixels) {
      const field = (names.width ?? 'width').split(' ')[0];
      throw new HttpError(400, 'E_INVALID_ARGUMENT', `${field}: ${width}x${height} × ${images} image(s) = ${pixels} pixels is more than this `
        + `server's limit of ${maxPixels} pixels per request (--max-pixels); ask for a smaller size or fewer images`, field);
    }
  };
  let draining = false;
  const drain = async () => {
    draining = true;
    await backend.close({ drain: true });
  };

  const plugin: FastifyPluginAsync = async (app) => {
    // ---- validation: zod schemas, messages naming the field, the value and the values allowed
    app.setValidatorCompiler(({ schema }) => (data: unknown) => {
      const r = (schema as unknown as z.ZodTypeAny).safeParse(data);
      if (r.success) return { value: r.data };
      const { message, param } = zodMessage(r.error, data);
      return { error: new HttpError(400, 'E_INVALID_ARGUMENT', message, param) };
    });
    app.setErrorHandler((err, req, reply) => {
      const h = toHttpError(err);
      if (h.statusCode >= 500 && h.code === 'E_INTERNAL') req.log.error(err);
      if (h.code === 'E_UNAVAILABLE' || h.code === 'E_QUEUE_FULL') void reply.header('retry-after', '5');
      void reply.status(h.statusCode).send(errorBody(h.code, h.message, h.param));
    });
    app.setNotFoundHandler((req, reply) => {
      void reply.status(404).send(errorBody('E_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));
    });
    if (!app.hasContentTypeParser('multipart/form-data')) await app.register(multipart, { limits: { fileSize: bodyLimit, files: 4, fields: 64, fieldSize: 1024 * 1024 } });

    // ---- metrics (a registry per server: several servers may live in one process)
    const registry = new client.Registry();
    client.collectDefaultMetrics({ register: registry, prefix: 'sd_native_' });
    new client.Gauge({
      name: 'sd_native_queue_depth', help: 'Jobs waiting in the queue', registers: [registry],
      async collect() { this.set((await backend.stats()).queued); },
    });
    new client.Gauge({
      name: 'sd_native_jobs_running', help: 'Jobs running now', registers: [registry],
      async collect() { this.set((await backend.stats()).running); },
    });
    const jobsTotal = new client.Counter({ name: 'sd_native_jobs_total', help: 'Jobs finished, by outcome', labelNames: ['outcome'] as const, registers: [registry] });
    for (const outcome of ['succeeded', 'failed', 'cancelled']) jobsTotal.inc({ outcome }, 0);
    const stepsTotal = new client.Counter({ name: 'sd_native_steps_total', help: 'Denoising steps run (rate() of it is the step rate)', registers: [registry] });
    const generationSeconds = new client.Histogram({
      name: 'sd_native_generation_seconds', help: 'Seconds generating a job (not waiting)', registers: [registry],
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300],
    });
    const httpErrors = new client.Counter({ name: 'sd_native_http_errors_total', help: 'Error answers, by code', labelNames: ['code'] as const, registers: [registry] });
    app.addHook('onSend', async (req, reply, payload) => {
      if (reply.statusCode >= 400 && typeof payload === 'string') {
        try { httpErrors.inc({ code: (JSON.parse(payload) as { error?: { code?: string } }).error?.code ?? String(reply.statusCode) }); } catch { /* not JSON */ }
      }
      return payload;
    });

    // ---- progress of the job running now (A1111 /progress), from the jobs this server submitted
    let current: { id: string; step: number; numSteps: number; preview?: string; startedAt: number } | undefined;
    const track = (id: string) => {
      let unsubscribe: (() => void) | undefined;
      let done = false;
      unsubscribe = backend.subscribe(id, (ev) => {
        if (done) return;
        if (ev.type === 'started') { if (!current || current.id !== id) current = { id, step: 0, numSteps: 0, startedAt: Date.now() }; }
        else if (ev.type === 'step') {
          stepsTotal.inc();
          if (!current || current.id !== id) current = { id, step: 0, numSteps: 0, startedAt: Date.now() };
          current.step = ev.step; current.numSteps = ev.numSteps;
          if (ev.preview) current.preview = ev.preview;
        } else if (TERMINAL.has(ev.type)) {
          done = true;
          if (ev.type === 'result') { jobsTotal.inc({ outcome: 'succeeded' }); generationSeconds.observe(ev.result.seconds); }
          else jobsTotal.inc({ outcome: ev.type === 'error' ? 'failed' : 'cancelled' });
          if (current?.id === id) current = undefined;
          unsubscribe?.();
        }
      });
      if (done) unsubscribe();
    };

    /**
     * Checks, queues and tracks a job; resolves its id. `names` maps the library's option names to
     * the route's field names, so a 400 names the field the client sent (`steps`, not `numInferenceSteps`).
     */
    const submit = async (request: JobRequest, names: Record<string, string> = {}): Promise<string> => {
      if (draining) throw new HttpError(503, 'E_UNAVAILABLE', 'the server is shutting down and takes no new jobs');
      try {
        checkJobRequest(request, byName.get(request.model), models.map((m) => m.name));
      } catch (e) {
        const field = /^(\w+)/.exec((e as Error).message)?.[1];
        const code = (e as { code?: string }).code ?? 'E_INVALID_ARGUMENT';
        if (field && names[field] && code !== 'E_MODEL_NOT_FOUND') {
          throw new HttpError(statusOfCode(code), code, names[field] + (e as Error).message.slice(field.length), names[field]);
        }
        throw e;
      }
      checkPixels(request, names);
      const id = await backend.submit(request);
      track(id);
      return id;
    };

    /** Queues a job and waits for its result; a client that disconnects first cancels it. */
    const runToEnd = async (request: JobRequest, reply: FastifyReply, names: Record<string, string>): Promise<{ id: string; result: JobResult }> => {
      const id = await submit(request, names);
      const onClose = () => { if (!reply.raw.writableFinished) void backend.cancel(id); };
      reply.raw.on('close', onClose);
      const final = await waitFinal(backend, id);
      reply.raw.off('close', onClose);
      if (final.type === 'result') return { id, result: final.result };
      if (final.type === 'error') throw new HttpError(statusOfCode(final.error.code), final.error.code, final.error.message);
      throw new HttpError(409, 'E_ABORTED', `job ${id} was cancelled`);
    };

    const imageUrl = (req: FastifyRequest, id: string, i: number) => `${req.protocol}://${req.host}${app.prefix}/v1/jobs/${id}/images/${i}.png`;
    const openAiAnswer = (req: FastifyRequest, id: string, r: JobResult, format: string | undefined) => ({
      created: Math.floor(Date.now() / 1000),
      data: r.images.map((b64, i) => (format === 'b64_json' ? { b64_json: b64 } : { url: imageUrl(req, id, i) })),
    });

    // ---- draining: POSTs refused while shutting down
    app.addHook('onRequest', async (req) => {
      if (draining && req.method === 'POST') throw new HttpError(503, 'E_UNAVAILABLE', 'the server is shutting down and takes no new jobs');
    });

    // ================================ OpenAI images API ================================
    app.post('/v1/images/generations', { bodyLimit, schema: { body: openAiGenerationSchema } }, async (req, reply) => {
      const b = req.body as z.infer<typeof openAiGenerationSchema>;
      const { id, result } = await runToEnd({ model: b.model ?? defaultModel, task: 'text2image', params: openAiParams(b) }, reply, OPENAI_NAMES);
      return openAiAnswer(req, id, result, b.response_format ?? 'url');
    });

    app.post('/v1/images/edits', { bodyLimit }, async (req, reply) => {
      if (!req.isMultipart()) throw new HttpError(400, 'E_INVALID_ARGUMENT', "the body must be multipart/form-data with the files 'image' (and optionally 'mask') and the field 'prompt'");
      const fields: Record<string, string> = {};
      const files: Record<string, Buffer> = {};
      for await (const part of req.parts()) {
        const name = part.fieldname.replace(/\[\]$/, '');
        if (part.type === 'file') {
          if (name !== 'image' && name !== 'mask') throw new HttpError(400, 'E_INVALID_ARGUMENT', `unknown file field '${part.fieldname}'; files: image, mask`, part.fieldname);
          if (files[name]) throw new HttpError(400, 'E_INVALID_ARGUMENT', `${name}: one file only`, name);
          files[name] = await part.toBuffer();
        } else {
          fields[part.fieldname] = String(part.value);
        }
      }
      if (!files.image) throw new HttpError(400, 'E_INVALID_ARGUMENT', "image is required: a PNG/JPEG/WebP file in the multipart field 'image'", 'image');
      const parsed = openAiEditSchema.safeParse(fields);
      if (!parsed.success) {
        const { message, param } = zodMessage(parsed.error, fields);
        throw new HttpError(400, 'E_INVALID_ARGUMENT', message, param);
      }
      const b: OpenAiEdit = parsed.data;
      const params = openAiParams(b);
      params.image = files.image.toString('base64');
      if (files.mask) params.maskImage = (await openAiMask(files.mask)).toString('base64');
      const task = files.mask ? 'inpainting' : 'image2image';
      const { id, result } = await runToEnd({ model: b.model ?? defaultModel, task, params }, reply, OPENAI_NAMES);
      return openAiAnswer(req, id, result, b.response_format ?? 'url');
    });

    // ================================ AUTOMATIC1111 API ================================
    const a1111Answer = (body: A1111Txt2Img, params: JobRequest['params'], model: string, r: JobResult, extra: Record<string, unknown>) => {
      const { width, height } = pngSize(r.images[0]);
      const n = r.images.length;
      const info = {
        prompt: params.prompt, all_prompts: Array(n).fill(params.prompt),
        negative_prompt: params.negativePrompt ?? '', all_negative_prompts: Array(n).fill(params.negativePrompt ?? ''),
        seed: r.seeds[0], all_seeds: r.seeds, subseed: -1, all_subseeds: Array(n).fill(-1), subseed_strength: 0,
        width, height, sampler_name: params.scheduler ?? null, cfg_scale: body.cfg_scale, steps: body.steps,
        batch_size: body.batch_size, restore_faces: false, sd_model_name: model, sd_model_hash: null,
        seed_resize_from_w: -1, seed_resize_from_h: -1, styles: [], clip_skip: params.clipSkip !== undefined ? params.clipSkip + 1 : 1,
        infotexts: r.parameters, job_timestamp: new Date().toISOString().replace(/\D/g, '').slice(0, 14), version: 'sd-native',
        ...extra,
      };
      return { images: body.send_images ? r.images : [], parameters: { ...body }, info: JSON.stringify(info) };
    };

    app.post('/sdapi/v1/txt2img', { bodyLimit, schema: { body: a1111Txt2ImgSchema } }, async (req, reply) => {
      const b = req.body as A1111Txt2Img;
      const model = a1111Model(b) ?? defaultModel;
      const params = a1111Params(b);
      const { result } = await runToEnd({ model, task: 'text2image', params }, reply, A1111_NAMES);
      return a1111Answer(b, params, model, result, {});
    });

    app.post('/sdapi/v1/img2img', { bodyLimit, schema: { body: a1111Img2ImgSchema } }, async (req, reply) => {
      const b = req.body as A1111Img2Img;
      const model = a1111Model(b) ?? defaultModel;
      const params = a1111Params(b);
      params.image = b.init_images[0];
      params.strength = b.denoising_strength;
      let task: JobRequest['task'] = 'image2image';
      if (b.mask) {
        task = 'inpainting';
        params.maskImage = b.inpainting_mask_invert ? (await invertMask(b.mask)).toString('base64') : b.mask;
      }
      const { result } = await runToEnd({ model, task, params }, reply, A1111_NAMES);
      const answer = a1111Answer(b, params, model, result, { denoising_strength: b.denoising_strength });
      // A1111 returns the request without its images
      return { ...answer, parameters: { ...answer.parameters, init_images: null, mask: null } };
    });

    app.get('/sdapi/v1/progress', { schema: { querystring: z.object({ skip_current_image: z.enum(['true', 'false']).optional() }).passthrough() } }, async (req) => {
      const stats = await backend.stats();
      const skip = (req.query as { skip_current_image?: string }).skip_current_image === 'true';
      const c = current;
      const progress = c && c.numSteps > 0 ? c.step / c.numSteps : 0;
      const elapsed = c ? (Date.now() - c.startedAt) / 1000 : 0;
      return {
        progress,
        eta_relative: progress > 0 ? (elapsed / progress) - elapsed : 0,
        state: {
          skipped: false, interrupted: false, job: c ? c.id : '', job_count: stats.queued + stats.running,
          job_timestamp: c ? new Date(c.startedAt).toISOString().replace(/\D/g, '').slice(0, 14) : '0',
          job_no: 0, sampling_step: c?.step ?? 0, sampling_steps: c?.numSteps ?? 0,
        },
        current_image: !skip && c?.preview ? c.preview : null,
        textinfo: null,
      };
    });

    app.get('/sdapi/v1/sd-models', async () => models.map((m) => ({
      title: m.name, model_name: m.name, hash: null, sha256: null, filename: m.location, config: null,
    })));

    app.get('/sdapi/v1/samplers', async () => Object.entries(A1111_SAMPLERS).map(([name, s]) => ({
      name, aliases: [s.scheduler], options: Object.fromEntries(Object.entries(s.config).map(([k, v]) => [k, String(v)])),
    })));

    // ================================ jobs API ================================
    app.post('/v1/jobs', { bodyLimit, schema: { body: jobRequestSchema } }, async (req, reply) => {
      const id = await submit(jobRequestOf(req.body as z.infer<typeof jobRequestSchema>, defaultModel));
      return reply.status(202).send({ id });
    });

    const jobOr404 = async (id: string): Promise<JobInfo> => {
      const info = await backend.get(id);
      if (!info) throw new HttpError(404, 'E_NOT_FOUND', `no job ${JSON.stringify(id)} (unknown, or finished long ago)`);
      return info;
    };

    app.get('/v1/jobs/:id', async (req) => publicInfo(await jobOr404((req.params as { id: string }).id)));

    app.get('/v1/jobs/:id/images/:file', async (req, reply) => {
      const { id, file } = req.params as { id: string; file: string };
      const info = await jobOr404(id);
      const m = /^(\d+)(\.png)?$/.exec(file);
      const b64 = m && info.result ? info.result.images[Number(m[1])] : undefined;
      if (!b64) throw new HttpError(404, 'E_NOT_FOUND', `job ${id} has no image ${JSON.stringify(file)} (status ${info.status})`);
      return reply.type('image/png').header('content-disposition', `inline; filename="${id}-${m![1]}.png"`).send(Buffer.from(b64, 'base64'));
    });

    app.get('/v1/jobs/:id/events', async (req, reply) => {
      const { id } = req.params as { id: string };
      await jobOr404(id);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.write(': sd-native job events\n\n');
      let ended = false;
      let unsubscribe: (() => void) | undefined;
      const heartbeat = setInterval(() => res.write(': ping\n\n'), 15_000);
      const end = () => {
        if (ended) return;
        ended = true;
        clearInterval(heartbeat);
        unsubscribe?.();
        res.end();
      };
      unsubscribe = backend.subscribe(id, (ev) => {
        if (ended) return;
        res.write(`event: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`);
        if (TERMINAL.has(ev.type)) end();
      });
      if (ended) unsubscribe();
      res.on('close', end);
    });

    app.delete('/v1/jobs/:id', async (req) => {
      const { id } = req.params as { id: string };
      const info = await jobOr404(id);
      if (!(await backend.cancel(id))) {
        throw new HttpError(409, 'E_ALREADY_FINISHED', `job ${id} already finished (${info.status}); nothing to cancel`);
      }
      return { id, status: 'cancelled' };
    });

    // ================================ health, metrics, web page ================================
    app.get('/health', async (req, reply) => {
      const stats = await backend.stats();
      return reply.status(draining ? 503 : 200).send({
        status: draining ? 'draining' : 'ok', models: models.map((m) => m.name), queued: stats.queued, running: stats.running,
        uptimeSeconds: Math.round(process.uptime()),
      });
    });

    app.get('/metrics', async (req, reply) => reply.type(registry.contentType).send(await registry.metrics()));

    const page = (name: string) => async (req: FastifyRequest, reply: FastifyReply) => {
      const f = await webFile(name);
      if (!f) throw new HttpError(404, 'E_NOT_FOUND', `the web page file ${name} is missing from this installation`);
      return reply.type(f.type).send(f.body);
    };
    app.get('/', async (req, reply) => {
      // the page uses relative URLs: under a prefix it must be served as /prefix/
      const p = req.url.split('?')[0];
      if (!p.endsWith('/')) return reply.redirect(p + '/');
      return page('index.html')(req, reply);
    });
    app.get('/app.js', page('app.js'));
    app.get('/style.css', page('style.css'));
    app.get('/v1/models', async () => ({
      object: 'list',
      data: models.map((m) => ({ id: m.name, object: 'model', created: 0, owned_by: 'sd-native', family: m.family, default_width: m.defaultWidth, default_height: m.defaultHeight, scheduler: m.schedulerName })),
    }));

  };
  return { plugin, drain };
}

/**
 * A standalone fastify server with sd-native's routes at `/` (not listening yet: call
 * `app.listen`). `app.drain()` refuses new jobs, lets queued and running ones finish, then closes.
 * To use the routes under Express, `await app.ready()` and hand requests to `app.routing(req, res)`.
 * @throws InvalidArgumentError when neither `executor` nor `models` names a model.
 * @example
 * const executor = await PipelineExecutor.load(['./sd-v1-5']);
 * const app = await createServer({ backend: new LocalBackend(executor, { maxBatch: 4, batchWaitMs: 50 }), executor });
 * await app.listen({ port: 7860 });
 */
export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const routes = sdNativeRoutes(options);
  const app = Fastify({ logger: options.logger ?? false, forceCloseConnections: 'idle' });
  await app.register(routes.plugin);
  app.decorate('drain', async () => {
    await routes.drain();
    await app.close();
  });
  return app;
}

/** OpenAI's mask: fully transparent pixels mark the area to edit → the library's mask (white = repaint). A mask without alpha is used as is. */
async function openAiMask(buf: Buffer): Promise<Buffer> {
  const meta = await sharp(buf).metadata().catch((e: Error) => {
    throw new HttpError(400, 'E_INVALID_ARGUMENT', `mask is not a decodable image: ${e.message}`, 'mask');
  });
  if (!meta.hasAlpha) return buf;
  return sharp(buf).extractChannel('alpha').negate().png().toBuffer();
}

/** A1111 `inpainting_mask_invert: 1`: black marks the area to repaint. */
async function invertMask(b64: string): Promise<Buffer> {
  const buf = Buffer.from(b64.replace(/^data:[^,]*,/, ''), 'base64');
  return sharp(buf).greyscale().negate().png().toBuffer().catch((e: Error) => {
    throw new HttpError(400, 'E_INVALID_ARGUMENT', `mask is not a decodable image: ${e.message}`, 'mask');
  });
}
