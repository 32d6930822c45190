/**
 * Option schemas of the public API (zod), with defaults and error messages that name the field,
 * the value received and the values allowed — e.g.
 * `numInferenceSteps must be an integer in [1, 1000]; received 0`.
 *
 * Follows the argument checks of diffusers' `StableDiffusionPipeline.check_inputs` /
 * `StableDiffusionImg2ImgPipeline.check_inputs` (pipeline_stable_diffusion.py, v0.30.3).
 */
import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { InvalidArgumentError } from './errors.js';
import type { ModelFamily, PipelineDtype } from '../types/native.js';
import { SCHEDULER_NAMES, type SchedulerName } from './schedulers.js';

// =============================================================================================
// Public types
// =============================================================================================

/** One prompt, or one prompt per batch entry. */
export type PromptInput = string | string[];

/** Raw pixels: row-major `[height, width, channels]` uint8 (channels 3 = RGB, 4 = RGBA; alpha is dropped). */
export interface RawImageInput {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

/** An input image: a file path, an encoded PNG/JPEG/WebP buffer, or raw pixels. */
export type ImageInput = string | Buffer | RawImageInput;

/** Latents given by the caller: float32, shape `[batch, 4, height/f, width/f]` (f = the model's vaeScaleFactor, 8 for real models). */
export interface LatentsInput {
  data: Float32Array;
  shape: number[];
}

/** What `onStep` receives once per denoising step. */
export interface StepProgress {
  /** 1-based index of the step that just finished. */
  step: number;
  /** Number of denoising steps of this call (for img2img: `int(numInferenceSteps × strength)`, or more for 2nd-order schedulers). */
  numSteps: number;
  /** Scheduler timestep of that step (e.g. 999 … 1). */
  timestep: number;
  /** Milliseconds since this call started running (after any wait in the pipeline's queue), measured in JS. */
  elapsedMs: number;
}

/**
 * Options of {@link StableDiffusionPipeline.generate} (diffusers' `__call__` arguments, camelCased).
 */
export interface GenerateOptions {
  /** Prompt, or one prompt per batch entry (non-empty array). */
  prompt: PromptInput;
  /** What to steer away from (default `""`, diffusers' `negative_prompt`); a string applies to every prompt, an array must have one entry per prompt. Unused when `guidanceScale <= 1`. */
  negativePrompt?: PromptInput;
  /** SDXL only: the prompt for the second text encoder (`prompt_2`, default: `prompt`). */
  prompt2?: PromptInput;
  /** SDXL only: the negative prompt for the second text encoder (`negative_prompt_2`, default: `negativePrompt`). */
  negativePrompt2?: PromptInput;
  /** Denoising steps, integer in [1, 1000] (default 50). */
  numInferenceSteps?: number;
  /** Classifier-free guidance scale, finite and ≥ 0 (default 7.5); ≤ 1 disables guidance (no negative prompt is encoded). */
  guidanceScale?: number;
  /** Image height in pixels: positive multiple of 8, ≤ 8192 (default: the model's `sampleSize × vaeScaleFactor`, e.g. 512 for SD 1.5). */
  height?: number;
  /** Image width in pixels: positive multiple of 8, ≤ 8192 (default as `height`). */
  width?: number;
  /** Images per prompt, integer in [1, 64] (default 1). */
  numImagesPerPrompt?: number;
  /** Seed of the CPU generator (`torch.Generator('cpu').manual_seed(seed)`): a non-negative safe integer (default: a random 32-bit integer, returned in the result). */
  seed?: number;
  /** Initial latents `[numPrompts × numImagesPerPrompt, 4, height/f, width/f]` float32 (f = vaeScaleFactor) instead of drawing them from the seed. */
  latents?: LatentsInput;
  /** Number of final CLIP layers to skip, integer ≥ 1 (diffusers' `clip_skip`; default: none). */
  clipSkip?: number;
  /** DDIM's η, finite and ≥ 0 (default 0; other schedulers ignore it). */
  eta?: number;
  /** Scale of the loaded LoRA adapters for this call, UNet and text encoder (diffusers' `cross_attention_kwargs={"scale": s}`; default 1). */
  loraScale?: number;
  /**
   * Folder of LoRA files for AUTOMATIC1111 prompt tags: `<lora:name:weight>` in the prompt loads
   * `<loraDir>/<name>.safetensors` (once, as adapter `name`) and applies it with `weight` for this
   * call only; the tags are removed before tokenization. Without `loraDir` tags stay plain text.
   */
  loraDir?: string;
  /**
   * 'none' (default, diffusers-exact) or 'a1111': AUTOMATIC1111 emphasis — `(word)` ×1.1,
   * `((word))` ×1.21, `(word:1.3)`, `[word]` ÷1.1, `\\(` literal, `BREAK` — with prompts longer
   * than 75 tokens encoded as 77-token chunks and concatenated instead of truncated; weights
   * multiply the text encoder's hidden states and the original mean is restored.
   */
  promptWeighting?: 'none' | 'a1111';
  /** 'image' (default) decodes to pixels; 'latent' returns the final latents only. */
  outputType?: 'image' | 'latent';
  /** Called on the JS thread after every denoising step. */
  onStep?: (progress: StepProgress) => void;
  /** Cancels the call; it then rejects with `AbortError` (`E_ABORTED`). Checked at least once per step. */
  signal?: AbortSignal;
}

/** Options of {@link StableDiffusionImg2ImgPipeline.generate}: {@link GenerateOptions} (without `latents`) plus the input image. */
export interface Img2ImgOptions extends Omit<GenerateOptions, 'latents'> {
  /** The image to start from; resized (lanczos) to `width × height` when given, else its size rounded down to a multiple of 8. */
  image: ImageInput;
  /** How much to transform the image, in [0, 1] (default 0.8): `int(numInferenceSteps × strength)` steps are run. */
  strength?: number;
}

/** Options of `fromPretrained` / `fromSingleFile`. */
export interface LoadOptions {
  /** 'cpu' (default) | 'cuda' | 'cuda:N'. */
  device?: string;
  /** Compute dtype: 'float32' (default) | 'float16' | 'bfloat16'. */
  dtype?: PipelineDtype;
  /** Weight-file variant of a diffusers folder, e.g. 'fp16' (`diffusion_pytorch_model.fp16.safetensors`). */
  variant?: string;
  /** CPU intra-op threads, integer in [1, 1024] (default: libtorch's, the physical cores). */
  threads?: number;
  /** Single files only: a diffusers folder with the config.json files and tokenizers of the model's family. */
  configDir?: string;
}

// =============================================================================================
// Error formatting
// =============================================================================================

/** Short, readable rendering of a received value for error messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'boolean' || typeof v === 'symbol') return String(v);
  if (Buffer.isBuffer(v)) return `a Buffer of ${v.length} bytes`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of length ${(v as unknown as ArrayLike<unknown>).length}`;
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    const s = JSON.stringify(v, (_k, x) => (typeof x === 'number' && Number.isNaN(x) ? 'NaN' : x));
    return s !== undefined && s.length <= 60 ? s : `an array of length ${v.length}`;
  }
  if (typeof AbortSignal !== 'undefined' && v instanceof AbortSignal) return 'an AbortSignal';
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return `a ${proto?.constructor?.name ?? 'object'}`;
  const keys = Object.keys(v as object);
  return keys.length ? `an object with keys {${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', ...' : ''}}` : '{}';
}

function valueAt(input: unknown, path: (string | number)[]): unknown {
  let v: unknown = input;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[key];
  }
  return v;
}

function fieldName(path: (string | number)[], what: string): string {
  if (path.length === 0) return what;
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** Turns one zod issue into "<field> <rule>; received <value>". */
function issueMessage(issue: z.ZodIssue, input: unknown, what: string, known: string[]): string {
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `'${k}'`).join(', ');
    return `${what} has no option ${keys}; known options: ${known.join(', ')}`;
  }
  const field = fieldName(issue.path, what);
  return `${field} ${issue.message}; received ${describeValue(valueAt(input, issue.path))}`;
}

/**
 * Parses `input` with `schema`, throwing an {@link InvalidArgumentError} whose message names the
 * field, the value received and the values allowed (further problems are appended).
 */
function parseWith<T extends z.ZodTypeAny>(schema: T, input: unknown, what: string, known: string[]): z.output<T> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidArgumentError(`${what} must be an object; received ${describeValue(input)}`);
  }
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const messages = r.error.issues.map((i) => issueMessage(i, input, what, known));
  const [first, ...rest] = messages;
  throw new InvalidArgumentError(rest.length ? `${first} (also: ${rest.join('; ')})` : first);
}

// =============================================================================================
// Schema building blocks (each message is the "rule" part: "must be ...")
// =============================================================================================

const msg = (rule: string) => ({ invalid_type_error: rule, required_error: rule });

function intIn(min: number, max: number, rule = `must be an integer in [${min}, ${max}]`) {
  return z.number(msg(rule)).int(rule).min(min, rule).max(max, rule);
}
function finiteAtLeast(min: number, rule = `must be a finite number ≥ ${min}`) {
  return z.number(msg(rule)).finite(rule).min(min, rule);
}
const PIXEL_RULE = 'must be a positive multiple of 8 not above 8192';
const pixels = () => z.number(msg(PIXEL_RULE)).int(PIXEL_RULE).positive(PIXEL_RULE).multipleOf(8, PIXEL_RULE).max(8192, PIXEL_RULE);

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
const promptSchema = z.custom<PromptInput>(
  (v) => typeof v === 'string' || (isStringArray(v) && v.length > 0),
  { message: 'must be a string or a non-empty array of strings' },
);
const optionalPromptSchema = (what: string) => z.custom<PromptInput>(
  (v) => typeof v === 'string' || (isStringArray(v) && v.length > 0),
  { message: `must be a string or a non-empty array of strings (one ${what} per prompt)` },
).optional();

const latentsSchema = z.custom<LatentsInput>(
  (v) => v !== null && typeof v === 'object' && (v as LatentsInput).data instanceof Float32Array
    && Array.isArray((v as LatentsInput).shape)
    && (v as LatentsInput).shape.every((d) => Number.isInteger(d) && d > 0),
  { message: 'must be { data: Float32Array, shape: [batch, 4, height/f, width/f] }' },
);

/** Checks raw pixel objects and encoded inputs (paths and buffers are decoded later by loadInputImage). */
export function isImageInput(v: unknown): v is ImageInput {
  if (typeof v === 'string') return v.length > 0;
  if (Buffer.isBuffer(v)) return true;
  if (v === null || typeof v !== 'object') return false;
  const r = v as RawImageInput;
  return r.data instanceof Uint8Array && Number.isInteger(r.width) && Number.isInteger(r.height)
    && (r.channels === 3 || r.channels === 4);
}
const imageSchema = z.custom<ImageInput>(isImageInput, {
  message: 'must be a file path, a Buffer holding a PNG/JPEG/WebP image, or { data: Uint8Array, width, height, channels: 3 }',
});

const generateShape = {
  prompt: promptSchema,
  negativePrompt: optionalPromptSchema('negative prompt'),
  prompt2: optionalPromptSchema('prompt'),
  negativePrompt2: optionalPromptSchema('negative prompt'),
  numInferenceSteps: intIn(1, 1000).default(50),
  guidanceScale: finiteAtLeast(0).default(7.5),
  height: pixels().optional(),
  width: pixels().optional(),
  numImagesPerPrompt: intIn(1, 64).default(1),
  seed: intIn(0, Number.MAX_SAFE_INTEGER, 'must be a non-negative safe integer (0 … 2^53 − 1)').optional(),
  latents: latentsSchema.optional(),
  clipSkip: intIn(1, 1000, 'must be an integer ≥ 1').optional(),
  eta: finiteAtLeast(0).default(0),
  loraScale: z.number(msg('must be a finite number')).finite('must be a finite number').optional(),
  loraDir: z.string({ invalid_type_error: 'must be a folder path' }).min(1, 'must be a folder path').optional(),
  promptWeighting: z.enum(['none', 'a1111'], { errorMap: () => ({ message: "must be 'none' or 'a1111'" }) }).optional(),
  outputType: z.enum(['image', 'latent'], { errorMap: () => ({ message: "must be 'image' or 'latent'" }) }).default('image'),
  onStep: z.custom<(p: StepProgress) => void>((v) => typeof v === 'function', { message: 'must be a function' }).optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, { message: 'must be an AbortSignal' }).optional(),
};

/** zod schema of {@link GenerateOptions} (strict: unknown keys are errors). */
export const generateOptionsSchema = z.object(generateShape).strict();

const { latents: _latents, ...img2imgBase } = generateShape;
/** zod schema of {@link Img2ImgOptions} (strict). */
export const img2imgOptionsSchema = z.object({
  ...img2imgBase,
  image: imageSchema,
  strength: z.number(msg('must be a number in [0, 1]')).finite('must be a number in [0, 1]')
    .min(0, 'must be a number in [0, 1]').max(1, 'must be a number in [0, 1]').default(0.8),
}).strict();

const DEVICE_RULE = "must be 'cpu', 'cuda' or 'cuda:N'";
/** zod schema of {@link LoadOptions} (strict). */
export const loadOptionsSchema = z.object({
  device: z.string(msg(DEVICE_RULE)).regex(/^(cpu|cuda(:\d{1,3})?)$/, DEVICE_RULE).default('cpu'),
  dtype: z.enum(['float32', 'float16', 'bfloat16'], { errorMap: () => ({ message: "must be 'float32', 'float16' or 'bfloat16'" }) })
    .default('float32'),
  variant: z.string(msg('must be a non-empty string such as "fp16"')).regex(/^[A-Za-z0-9_-]+$/, 'must be a non-empty string such as "fp16"').optional(),
  threads: intIn(1, 1024).optional(),
  configDir: z.string(msg('must be a non-empty path')).min(1, 'must be a non-empty path').optional(),
}).strict();

/** {@link LoadOptions} with defaults applied. */
export type ResolvedLoadOptions = z.output<typeof loadOptionsSchema>;

/**
 * Validates load options and applies defaults (`device: 'cpu'`, `dtype: 'float32'`).
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field, the value and the values allowed.
 */
export function parseLoadOptions(options: LoadOptions | undefined): ResolvedLoadOptions {
  return parseWith(loadOptionsSchema, options ?? {}, 'load options', Object.keys(loadOptionsSchema.shape));
}

// =============================================================================================
// Generate options: schema + checks that need the model
// =============================================================================================

/** What option checks need to know about the loaded model. */
export interface ModelDefaults {
  family: ModelFamily;
  /** `2 ** (len(vae.block_out_channels) - 1)` */
  vaeScaleFactor: number;
  /** unet sample size (latent pixels); the default image size is `sampleSize × vaeScaleFactor`. */
  sampleSize: number;
  /** unet `in_channels` of the latents (4 for SD 1/2/XL). */
  latentChannels?: number;
}

/** Generate options after validation, with every default filled in. */
export interface ResolvedGenerateOptions {
  prompts: string[];
  /** One per prompt (default `""` each); `undefined` when the caller gave none (diffusers' `negative_prompt=None`). */
  negativePrompts: string[] | undefined;
  /** SDXL: one per prompt. */
  prompts2: string[] | undefined;
  negativePrompts2: string[] | undefined;
  numInferenceSteps: number;
  guidanceScale: number;
  height: number;
  width: number;
  numImagesPerPrompt: number;
  seed: number;
  latents?: LatentsInput;
  clipSkip?: number;
  eta: number;
  /** LoRA scale of the call (diffusers' cross_attention_kwargs scale); undefined = 1. */
  loraScale?: number;
  /** Folder of `<name>.safetensors` LoRAs for `<lora:name:weight>` prompt tags. */
  loraDir?: string;
  promptWeighting?: 'none' | 'a1111';
  outputType: 'image' | 'latent';
  onStep?: (p: StepProgress) => void;
  signal?: AbortSignal;
  /** img2img only */
  image?: ImageInput;
  /** img2img only */
  strength?: number;
}

function perPrompt(field: string, value: PromptInput | undefined, n: number): string[] | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return new Array<string>(n).fill(value);
  if (value.length !== n) {
    throw new InvalidArgumentError(
      `${field} must be a string or an array with one entry per prompt (${n}); received an array of length ${value.length}`);
  }
  return [...value];
}

/** A random seed in [0, 2^32 − 1] (what A1111 and most UIs draw). */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32);
}

/**
 * Validates {@link GenerateOptions} (or {@link Img2ImgOptions} with `mode: 'img2img'`) against a
 * model and fills in every default. Runs before any native call.
 * @param model - family, vaeScaleFactor and sampleSize of the loaded model (default size).
 * @param mode - 'txt2img' (default) or 'img2img'.
 * @param imageSize - img2img: the decoded input image size, used when width/height are not given
 *   (rounded down to a multiple of 8 as diffusers' VaeImageProcessor does).
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field, the value received and the values allowed.
 * @example
 * resolveGenerateOptions({ prompt: 'a cat', numInferenceSteps: 0 }, { family: 'sd1', vaeScaleFactor: 8, sampleSize: 64 });
 * // throws InvalidArgumentError: numInferenceSteps must be an integer in [1, 1000]; received 0
 */
export function resolveGenerateOptions(
  options: GenerateOptions | Img2ImgOptions,
  model: ModelDefaults,
  mode: 'txt2img' | 'img2img' = 'txt2img',
  imageSize?: { width: number; height: number },
): ResolvedGenerateOptions {
  return finishGenerateOptions(parseGenerateOptions(options, mode), model, mode, imageSize);
}

/** Generate options after the schema (defaults applied), before the checks that need the model. */
export type ParsedGenerateOptions = z.output<typeof generateOptionsSchema> & { image?: ImageInput; strength?: number };

/**
 * First half of {@link resolveGenerateOptions}: the schema alone (types, ranges, defaults).
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field, the value received and the values allowed.
 */
export function parseGenerateOptions(
  options: GenerateOptions | Img2ImgOptions, mode: 'txt2img' | 'img2img' = 'txt2img',
): ParsedGenerateOptions {
  const schema = mode === 'img2img' ? img2imgOptionsSchema : generateOptionsSchema;
  const known = Object.keys(schema.shape);
  return parseWith(schema, options, mode === 'img2img' ? 'img2img options' : 'generate options', known) as ParsedGenerateOptions;
}

/**
 * Second half of {@link resolveGenerateOptions}: per-prompt expansion, sizes, latents shape,
 * img2img step count, seed.
 */
export function finishGenerateOptions(
  o: ParsedGenerateOptions,
  model: ModelDefaults,
  mode: 'txt2img' | 'img2img' = 'txt2img',
  imageSize?: { width: number; height: number },
): ResolvedGenerateOptions {

  // 1. prompts (diffusers: a string negative prompt applies to every prompt; a list must match the batch)
  const prompts = typeof o.prompt === 'string' ? [o.prompt] : [...o.prompt];
  const n = prompts.length;
  const negativePrompts = perPrompt('negativePrompt', o.negativePrompt, n);
  if (model.family !== 'sdxl') {
    for (const f of ['prompt2', 'negativePrompt2'] as const) {
      if (o[f] !== undefined) {
        throw new InvalidArgumentError(`${f} is used by SDXL models only (two text encoders); this model is ${model.family}; received ${describeValue(o[f])}`);
      }
    }
  }
  const prompts2 = perPrompt('prompt2', o.prompt2, n);
  const negativePrompts2 = perPrompt('negativePrompt2', o.negativePrompt2, n);

  // 2. size: explicit, else the input image's (img2img), else the model default
  const f = model.vaeScaleFactor;
  const round8 = (x: number) => x - (x % 8);
  const defaultSize = model.sampleSize * f;
  const height = o.height ?? (imageSize ? round8(imageSize.height) : defaultSize);
  const width = o.width ?? (imageSize ? round8(imageSize.width) : defaultSize);
  for (const [name, v] of [['height', height], ['width', width]] as const) {
    if (v < 8) throw new InvalidArgumentError(`image must be at least 8×8 pixels; received ${imageSize?.width}×${imageSize?.height}`);
    if (v % f !== 0) {
      throw new InvalidArgumentError(`${name} must be a multiple of the model's vaeScaleFactor (${f}); received ${v}`);
    }
  }

  // 3. latents: exact shape, checked before any native call
  const batch = n * o.numImagesPerPrompt;
  if (o.latents) {
    const expected = [batch, model.latentChannels ?? 4, height / f, width / f];
    const got = o.latents.shape;
    if (got.length !== 4 || got.some((d, i) => d !== expected[i])) {
      throw new InvalidArgumentError(
        `latents must have shape [${expected.join(', ')}] ([numPrompts·numImagesPerPrompt, ${expected[1]}, height/${f}, width/${f}]); ` +
        `received [${got.join(', ')}]`);
    }
    const numel = expected.reduce((a, b) => a * b, 1);
    if (o.latents.data.length !== numel) {
      throw new InvalidArgumentError(
        `latents.data must hold ${numel} float32 values for shape [${expected.join(', ')}]; received ${o.latents.data.length}`);
    }
  }

  // 4. img2img: at least one denoising step (diffusers: int(steps × strength) steps)
  if (mode === 'img2img' && o.strength !== undefined && Math.floor(o.numInferenceSteps * o.strength) < 1) {
    throw new InvalidArgumentError(
      `strength × numInferenceSteps must give at least one denoising step (int(${o.numInferenceSteps} × ${o.strength}) = 0); ` +
      `received strength ${o.strength}`);
  }

  return {
    prompts, negativePrompts, prompts2, negativePrompts2,
    numInferenceSteps: o.numInferenceSteps,
    guidanceScale: o.guidanceScale,
    height, width,
    numImagesPerPrompt: o.numImagesPerPrompt,
    seed: o.seed ?? randomSeed(),
    latents: o.latents,
    clipSkip: o.clipSkip,
    eta: o.eta,
    loraScale: o.loraScale,
    loraDir: o.loraDir,
    promptWeighting: o.promptWeighting,
    outputType: o.outputType,
    onStep: o.onStep,
    signal: o.signal,
    image: o.image,
    strength: o.strength,
  };
}

// =============================================================================================
// Schedulers
// =============================================================================================

/** The diffusers scheduler class names sd-native implements (one list: lib/schedulers.ts). */
export const SUPPORTED_SCHEDULERS = SCHEDULER_NAMES;
export type { SchedulerName };
