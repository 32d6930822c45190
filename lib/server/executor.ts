/**
 * The {@link JobExecutor} of `sd-native serve`: a registry of loaded pipelines by name, and the
 * code that turns a {@link JobRequest} (JSON: base64 images, library option names) into one
 * `generate` call on the library's public API — or one batched call for several compatible
 * text-to-image jobs. Used by the in-process backend (lib/server/local_backend.ts) and by the
 * Redis workers, so a job gives the same image whichever backend serves it.
 *
 * Seeds: the server gives every image its own seed. `seed: s` with `numImagesPerPrompt: n` means
 * seeds `s, s+1, …, s+n−1` (AUTOMATIC1111's batch semantics), `seed: [s0, …]` one seed per image,
 * no seed a random `s`. When the library takes a list of seeds (diffusers' list of generators:
 * one CPU generator per image), every call passes one; a batch of jobs concatenates the lists, so
 * a batched image is the image the job gives alone.
 */
import { SdError, InvalidArgumentError, ModelNotFoundError, UnsupportedModelError, describeValue } from '../errors.js';
import { AutoPipelineForText2Image } from '../pipelines/auto_pipeline.js';
import { StableDiffusionPipeline } from '../pipelines/stable_diffusion.js';
import { StableDiffusionImg2ImgPipeline } from '../pipelines/stable_diffusion_img2img.js';
import { StableDiffusionInpaintPipeline } from '../pipelines/stable_diffusion_inpaint.js';
import { StableDiffusionXLPipeline } from '../pipelines/stable_diffusion_xl.js';
import { StableDiffusionXLImg2ImgPipeline } from '../pipelines/stable_diffusion_xl_img2img.js';
import type { DiffusionPipeline, PipelineInfo } from '../pipelines/pipeline_utils.js';
import type { GenerateResult } from '../pipelines/pipeline_output.js';
import { GeneratedImage } from '../image.js';
import {
  generateOptionsSchema, parseGenerateOptions, randomSeed,
  type GenerateMode, type LoadOptions, type StepProgress,
} from '../options.js';
import { resolveSchedulerName } from '../schedulers.js';
import sharp from 'sharp';
import type { ExecutorJob, JobError, JobExecutor, JobParams, JobRequest, JobResult, JobTask } from './backend.js';

/** One loaded model: its name, where it came from, and a pipeline per task sharing one native model. */
export interface LoadedModel {
  /** The name requests use (`model`), as `GET /sdapi/v1/sd-models` lists it. */
  name: string;
  /** The location it was loaded from (folder, file or Hub id). */
  location: string;
  info: PipelineInfo;
  text2image: StableDiffusionPipeline | StableDiffusionXLPipeline;
  image2image: StableDiffusionImg2ImgPipeline | StableDiffusionXLImg2ImgPipeline;
  /** undefined for SDXL (SDXL inpainting is not implemented). */
  inpainting?: StableDiffusionInpaintPipeline;
}

/** What a model is called when loaded from `location`: a folder or file name without extension, or a Hub id as given. */
export function modelNameOf(location: string): string {
  const trimmed = location.replace(/[\\/]+$/, '');
  const base = trimmed.split(/[\\/]/).pop() ?? trimmed;
  // a Hub id "org/name" that is no local path keeps its full name
  return /^[\w.-]+\/[\w.-]+(@[\w.-]+)?$/.test(location) && !location.startsWith('.') ? location : base.replace(/\.(safetensors|ckpt)$/i, '');
}

/** Whether the library hands live previews to `onStep` (`previews: 'taesd' | 'latent2rgb'`, `StepProgress.previewImages`). */
export function librarySupportsPreviews(): boolean {
  return 'previews' in generateOptionsSchema.shape;
}

/** A raw RGB preview → base64 PNG. */
async function previewPng(img: { data: Uint8Array; width: number; height: number }): Promise<string> {
  return (await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer()).toString('base64');
}

/** Whether the library's `seed` option takes one seed per image (diffusers' list of generators). */
export function librarySupportsSeedLists(): boolean {
  return generateOptionsSchema.shape.seed.safeParse([1, 2]).success;
}

/** The library option mode of a task on a model. */
function modeOf(task: JobTask, xl: boolean): GenerateMode {
  if (task === 'text2image') return xl ? 'xl' : 'txt2img';
  if (task === 'image2image') return xl ? 'xl-img2img' : 'img2img';
  return 'inpaint';
}

/** base64 (optionally a `data:image/...;base64,` URL, as A1111 clients send) → Buffer. */
export function decodeBase64Image(field: string, value: unknown): Buffer {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(`${field} must be a base64 PNG/JPEG/WebP image; received ${describeValue(value)}`);
  }
  const b64 = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
  if (!/^[A-Za-z0-9+/=\s_-]+$/.test(b64)) {
    throw new InvalidArgumentError(`${field} must be base64 (a PNG/JPEG/WebP image); received ${describeValue(value)}`);
  }
  const buf = Buffer.from(b64, 'base64');
  if (buf.length === 0) throw new InvalidArgumentError(`${field} must be a base64 PNG/JPEG/WebP image; it decodes to 0 bytes`);
  return buf;
}

const PARAM_KEYS: ReadonlyArray<keyof JobParams> = [
  'prompt', 'negativePrompt', 'width', 'height', 'numInferenceSteps', 'guidanceScale', 'seed', 'numImagesPerPrompt',
  'scheduler', 'strength', 'clipSkip', 'image', 'maskImage',
];

/**
 * The per-image seeds of a job (see the module comment): `seed` number → `s, s+1, …`; array →
 * itself (its length must be numImagesPerPrompt); absent → a random start.
 * @throws InvalidArgumentError when a list has the wrong length or a value is not a non-negative safe integer.
 */
export function jobSeeds(params: JobParams): number[] {
  const n = params.numImagesPerPrompt ?? 1;
  const check = (s: unknown, field: string): number => {
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
      throw new InvalidArgumentError(`${field} must be a non-negative safe integer (0 … 2^53 − 1); received ${describeValue(s)}`);
    }
    return s;
  };
  if (Array.isArray(params.seed)) {
    if (params.seed.length !== n) {
      throw new InvalidArgumentError(`seed must be one seed per image: ${n} (numImagesPerPrompt) values; received ${params.seed.length}`);
    }
    return params.seed.map((s, i) => check(s, `seed[${i}]`));
  }
  const start = params.seed === undefined ? randomSeed() : check(params.seed, 'seed');
  if (start + n - 1 > Number.MAX_SAFE_INTEGER) throw new InvalidArgumentError(`seed + numImagesPerPrompt − 1 must stay a safe integer; received seed ${start}`);
  return Array.from({ length: n }, (_, i) => start + i);
}

/** What one generate call of a job needs, checked. */
interface PreparedJob {
  job: ExecutorJob;
  model: LoadedModel;
  pipe: DiffusionPipeline & { generate(o: unknown): Promise<GenerateResult> };
  /** Library options without seed, onStep and signal. */
  options: Record<string, unknown>;
  seeds: number[];
  scheduler?: { scheduler: string; config: Record<string, unknown> };
}

/**
 * The compatibility key of a request for dynamic batching: requests with equal keys may run as
 * one batched call (same model, task, size, steps, scheduler, guidance, images per prompt and
 * the other toggles); undefined for a request that never batches (image-to-image and inpainting:
 * each job has its own input image; or when the library has no per-image seeds).
 */
export function batchKey(request: JobRequest): string | undefined {
  if (request.task !== 'text2image' || !librarySupportsSeedLists()) return undefined;
  const p = request.params;
  if (typeof p.prompt !== 'string') return undefined;
  return JSON.stringify([
    request.model, request.task, p.width ?? null, p.height ?? null, p.numInferenceSteps ?? null, p.guidanceScale ?? null,
    p.scheduler ?? null, p.numImagesPerPrompt ?? 1, p.clipSkip ?? null, p.strength ?? null,
  ]);
}

function toJobError(e: unknown): JobError {
  if (e instanceof SdError) return { code: e.code, message: e.message };
  const code = (e as { code?: unknown })?.code;
  return { code: typeof code === 'string' && code.startsWith('E_') ? code : 'E_INTERNAL', message: e instanceof Error ? e.message : String(e) };
}

/** What the HTTP layer needs to know of a model (no pipeline needed: an API-only process has none). */
export interface ModelDescriptor {
  name: string;
  location: string;
  /** 'sd1' | 'sd2' | 'sdxl'. */
  family: string;
  /** diffusers pipeline class, e.g. 'StableDiffusionPipeline'. */
  className: string;
  defaultWidth: number;
  defaultHeight: number;
  /** diffusers class name of the model's own scheduler. */
  schedulerName: string;
}

function describeModel(m: LoadedModel): ModelDescriptor {
  return {
    name: m.name, location: m.location, family: m.info.family, className: m.info.className,
    defaultWidth: m.info.defaultWidth, defaultHeight: m.info.defaultHeight, schedulerName: m.info.schedulerName,
  };
}

/**
 * Checks a job request against a model without running it: the model is known, the task runs on
 * it, every parameter passes the library's zod schema of that task (images are decoded from
 * base64, not yet as images: an undecodable image fails the job when it runs).
 * @param model - the requested model's descriptor, undefined when no model of that name is loaded
 * @param known - the loaded model names (for the message)
 * @returns the library options (images as Buffers; without seed, scheduler, onStep, signal), the per-image seeds, the scheduler
 * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) for an unknown model; InvalidArgumentError (`E_INVALID_ARGUMENT`) /
 *   UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for bad parameters (the message names the field and the values allowed).
 */
export function checkJobRequest(request: JobRequest, model: Pick<ModelDescriptor, 'name' | 'family'> | undefined, known: string[]): {
  options: Record<string, unknown>; seeds: number[]; scheduler?: { scheduler: string; config: Record<string, unknown> };
} {
  if (request === null || typeof request !== 'object') throw new InvalidArgumentError(`a job request must be an object; received ${describeValue(request)}`);
  if (!model) {
    throw new ModelNotFoundError(`model ${describeValue(request.model)} is not loaded; loaded models: ${known.join(', ')}`);
  }
  const xl = model.family === 'sdxl';
  if (request.task !== 'text2image' && request.task !== 'image2image' && request.task !== 'inpainting') {
    throw new InvalidArgumentError(`task must be 'text2image', 'image2image' or 'inpainting'; received ${describeValue(request.task)}`);
  }
  if (request.task === 'inpainting' && xl) throw new UnsupportedModelError(`${model.name} is an SDXL model; SDXL inpainting is not implemented`);
  const params = request.params;
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new InvalidArgumentError(`params must be an object; received ${describeValue(params)}`);
  }
  const options: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) {
    if (!(PARAM_KEYS as readonly string[]).includes(k)) {
      throw new InvalidArgumentError(`params has no field '${k}'; known fields: ${PARAM_KEYS.join(', ')}`);
    }
    if (v === undefined || v === null || k === 'seed' || k === 'scheduler') continue;
    options[k] = k === 'image' || k === 'maskImage' ? decodeBase64Image(k, v) : v;
  }
  if (request.task !== 'text2image' && options.image === undefined) throw new InvalidArgumentError(`image is required for ${request.task}`);
  if (request.task === 'inpainting' && options.maskImage === undefined) throw new InvalidArgumentError('maskImage is required for inpainting');
  if (request.task !== 'inpainting' && options.maskImage !== undefined) {
    throw new InvalidArgumentError(`maskImage is only used for inpainting; received it for ${request.task}`);
  }
  if (request.task === 'text2image' && options.strength !== undefined) throw new InvalidArgumentError('strength is only used for image2image and inpainting');
  const seeds = jobSeeds(params);
  if (seeds.length > 1 && Array.isArray(params.seed) && !librarySupportsSeedLists()) {
    throw new InvalidArgumentError('seed as a list (one seed per image) needs a library with per-image generators; give one seed');
  }
  // the library's schema of this task checks every other field (seed as the first image's seed)
  parseGenerateOptions({ ...options, seed: seeds[0] } as never, modeOf(request.task, xl));
  let scheduler: { scheduler: string; config: Record<string, unknown> } | undefined;
  if (params.scheduler !== undefined && params.scheduler !== null) {
    if (typeof params.scheduler !== 'string') throw new InvalidArgumentError(`scheduler must be a string; received ${describeValue(params.scheduler)}`);
    scheduler = resolveSchedulerName(params.scheduler);
  }
  return { options, seeds, scheduler };
}

type Outcome = { result: JobResult } | { error: JobError } | { cancelled: true };

/**
 * A {@link JobExecutor} over pipelines loaded in this process.
 * @example
 * const executor = await PipelineExecutor.load(['./sd-v1-5'], { device: 'cuda' });
 * const [outcome] = await executor.run([{ id: '1', request: { model: 'sd-v1-5', task: 'text2image', params: { prompt: 'a cat' } },
 *   signal: new AbortController().signal, onEvent: console.log }]);
 */
export class PipelineExecutor implements JobExecutor {
  private readonly registry = new Map<string, LoadedModel>();
  private disposed = false;
  /** Which previews jobs that ask for them get: 'taesd' when the models were loaded with a preview decoder. */
  private readonly previewMode: 'taesd' | 'latent2rgb';
  /** A preview every this many steps (default 1). */
  private readonly previewEvery: number;

  /**
   * @param models - loaded models (names must be unique)
   * @param options - `previews`: 'latent2rgb' (default; A1111's weightless approximation, latent size)
   *   or 'taesd' (the models' preview decoder); `previewEvery`: a preview every N steps (default 1)
   */
  constructor(models: LoadedModel[], options: { previews?: 'taesd' | 'latent2rgb'; previewEvery?: number } = {}) {
    this.previewMode = options.previews ?? 'latent2rgb';
    this.previewEvery = options.previewEvery ?? 1;
    for (const m of models) {
      if (this.registry.has(m.name)) throw new InvalidArgumentError(`two models are named ${JSON.stringify(m.name)}; model names must be unique`);
      this.registry.set(m.name, m);
    }
  }

  /**
   * Loads each location (a diffusers folder, a single `.safetensors` file or a Hub id
   * `org/name[@revision]`) with `AutoPipelineForText2Image`, and the image-to-image and
   * inpainting pipelines sharing its weights (`fromPipeline`).
   * @param locations - one or more model locations; each is named by {@link modelNameOf}
   * @param options - the library's load options (device, dtype, …), for every model
   * @param executorOptions - as the constructor's (previews default: 'taesd' when `options.previewDecoder` is given)
   * @throws the loaders' errors (`E_MODEL_NOT_FOUND`, `E_BAD_CHECKPOINT`, …); InvalidArgumentError for duplicate names.
   */
  static async load(locations: string[], options?: LoadOptions, executorOptions?: { previews?: 'taesd' | 'latent2rgb'; previewEvery?: number }): Promise<PipelineExecutor> {
    if (locations.length === 0) throw new InvalidArgumentError('at least one model is needed (--model <dir|file|org/name>)');
    const models: LoadedModel[] = [];
    try {
      for (const location of locations) models.push(await PipelineExecutor.loadOne(location, options));
      // with a preview decoder loaded (load option previewDecoder), previews are TAESD decodes
      const withDecoder = (options as { previewDecoder?: unknown } | undefined)?.previewDecoder !== undefined;
      return new PipelineExecutor(models, { previews: withDecoder ? 'taesd' : 'latent2rgb', ...executorOptions });
    } catch (e) {
      for (const m of models) disposeModel(m);
      throw e;
    }
  }

  private static async loadOne(location: string, options?: LoadOptions): Promise<LoadedModel> {
    const text2image = await AutoPipelineForText2Image.fromPretrained(location, options);
    const xl = text2image instanceof StableDiffusionXLPipeline;
    const image2image = xl ? StableDiffusionXLImg2ImgPipeline.fromPipeline(text2image) : StableDiffusionImg2ImgPipeline.fromPipeline(text2image);
    const inpainting = xl ? undefined : StableDiffusionInpaintPipeline.fromPipeline(text2image);
    return { name: modelNameOf(location), location, info: text2image.info, text2image, image2image, inpainting };
  }

  /** The names of the loaded models, in load order. */
  models(): string[] {
    return [...this.registry.keys()];
  }

  /** A loaded model by name, or undefined. */
  model(name: string): LoadedModel | undefined {
    return this.registry.get(name);
  }

  /**
   * Checks a request before it is queued: the model exists, the task runs on it, every
   * parameter passes the library's zod schema of that task (the images are decoded from base64
   * but not yet as images: an undecodable image fails the job later).
   * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) for an unknown model; InvalidArgumentError /
   *   UnsupportedModelError for bad parameters (the message names the field and the values allowed).
   */
  validate(request: JobRequest): void {
    this.prepare({ id: 'validate', request, signal: new AbortController().signal, onEvent: () => undefined });
  }

  private prepare(job: ExecutorJob): PreparedJob {
    const { request } = job;
    const model = this.registry.get(request?.model);
    const checked = checkJobRequest(request, model ? describeModel(model) : undefined, this.models());
    const m = model!;
    const pipe = request.task === 'text2image' ? m.text2image : request.task === 'image2image' ? m.image2image : m.inpainting!;
    return { job, model: m, pipe: pipe as PreparedJob['pipe'], ...checked };
  }

  /** What the HTTP layer shows of each model (`GET /sdapi/v1/sd-models`). */
  descriptors(): ModelDescriptor[] {
    return [...this.registry.values()].map(describeModel);
  }

  /**
   * Runs one job, or several compatible text-to-image jobs (equal {@link batchKey}) as one
   * batched call with a prompt list and a per-image seed list. Each job's outcome is settled on
   * its own: a job whose signal aborted is `cancelled` (a batch stops only when every job in it
   * aborted), a job with bad parameters fails alone.
   */
  async run(jobs: ExecutorJob[]): Promise<Outcome[]> {
    if (this.disposed) return jobs.map(() => ({ error: { code: 'E_DISPOSED', message: 'the executor was disposed' } }));
    const outcomes: Outcome[] = new Array(jobs.length);
    const prepared: Array<{ index: number; p: PreparedJob }> = [];
    jobs.forEach((job, index) => {
      if (job.signal.aborted) { outcomes[index] = { cancelled: true }; return; }
      try { prepared.push({ index, p: this.prepare(job) }); } catch (e) { outcomes[index] = { error: toJobError(e) }; }
    });
    if (prepared.length > 1) {
      const keys = new Set(prepared.map(({ p }) => batchKey(p.job.request)));
      if (keys.size !== 1 || keys.has(undefined)) {
        // not compatible: one call each, in order
        for (const { index, p } of prepared) [outcomes[index]] = await this.runBatch([p]);
        return outcomes;
      }
    }
    if (prepared.length > 0) {
      const results = await this.runBatch(prepared.map(({ p }) => p));
      prepared.forEach(({ index }, i) => { outcomes[index] = results[i]; });
    }
    return outcomes;
  }

  /** One generate call for `batch` (one job, or compatible text-to-image jobs). */
  private async runBatch(batch: PreparedJob[]): Promise<Outcome[]> {
    const first = batch[0];
    const n = (first.options.numImagesPerPrompt as number | undefined) ?? 1;
    // The call stops when every job in it aborted.
    const controller = new AbortController();
    const live = () => batch.filter((p) => !p.job.signal.aborted);
    const onAbort = () => { if (live().length === 0) controller.abort(batch[0].job.signal.reason); };
    for (const p of batch) p.job.signal.addEventListener('abort', onAbort, { once: true });
    onAbort();
    // a pipeline for this call only: the scheduler set on it does not leak into later calls
    const Cls = first.pipe.constructor as unknown as { fromPipeline(p: DiffusionPipeline): PreparedJob['pipe'] };
    const pipe = Cls.fromPipeline(first.pipe);
    const started = performance.now();
    try {
      if (first.scheduler) pipe.setScheduler(first.scheduler.scheduler, first.scheduler.config);
      for (const p of batch) p.job.onEvent({ type: 'started' });
      const options: Record<string, unknown> = { ...first.options };
      if (batch.length > 1) {
        options.prompt = batch.map((p) => p.options.prompt as string);
        options.negativePrompt = batch.map((p) => (p.options.negativePrompt as string | undefined) ?? '');
      }
      const seeds = batch.flatMap((p) => p.seeds);
      options.seed = librarySupportsSeedLists() ? seeds : seeds[0];
      options.signal = controller.signal;
      // live previews for the jobs that asked (JobRequest.previews), when the library makes them:
      // the preview decoder's ('taesd') when the executor has one, else A1111's weightless latent2rgb
      const wantPreviews = librarySupportsPreviews() && batch.some((p) => p.job.request.previews);
      if (wantPreviews) {
        options.previews = this.previewMode;
        options.previewEvery = this.previewEvery;
      }
      // step events keep their order while previews are encoded
      let events = Promise.resolve();
      options.onStep = (s: StepProgress) => {
        const previews = (s as StepProgress & { previewImages?: Array<{ data: Uint8Array; width: number; height: number }> }).previewImages;
        events = events.then(async () => {
          const encoded = await Promise.all(batch.map((p, j) => (p.job.request.previews && previews?.[j * n] ? previewPng(previews[j * n]) : undefined)));
          batch.forEach((p, j) => {
            if (p.job.signal.aborted) return;
            p.job.onEvent(encoded[j] ? { type: 'step', step: s.step, numSteps: s.numSteps, preview: encoded[j] } : { type: 'step', step: s.step, numSteps: s.numSteps });
          });
        }).catch(() => undefined);
      };
      const r = await pipe.generate(options).finally(() => events);
      const seconds = (performance.now() - started) / 1000;
      return await Promise.all(batch.map(async (p, j): Promise<Outcome> => {
        if (p.job.signal.aborted) return { cancelled: true };
        const images = r.images.slice(j * n, (j + 1) * n).map((img, i) => new GeneratedImage(img.width, img.height, img.data, {
          ...img.parameters,
          seed: librarySupportsSeedLists() ? p.seeds[i] : r.seeds[j * n + i],
          batchSize: n, batchIndex: i,
        }));
        const result: JobResult = {
          images: await Promise.all(images.map(async (img) => (await img.toPNG()).toString('base64'))),
          seeds: librarySupportsSeedLists() ? p.seeds : r.seeds.slice(j * n, (j + 1) * n),
          parameters: images.map((img) => img.infotext),
          seconds,
        };
        return { result };
      }));
    } catch (e) {
      const error = toJobError(e);
      return batch.map((p) => (p.job.signal.aborted && (error.code === 'E_ABORTED' || controller.signal.aborted) ? { cancelled: true } : { error }));
    } finally {
      for (const p of batch) p.job.signal.removeEventListener('abort', onAbort);
      pipe.dispose();
    }
  }

  /** Frees every model (running calls are aborted). Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const m of this.registry.values()) disposeModel(m);
  }
}

function disposeModel(m: LoadedModel): void {
  m.inpainting?.dispose();
  m.image2image.dispose();
  m.text2image.dispose();
}
