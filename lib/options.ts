/**
 * The one validation layer of the public API (sharp's model): a zod schema per call —
 * txt2img, img2img, inpaint, SDXL and SDXL img2img, each an `.extend()` of the one before — that
 * checks every option once, fills every default ({@link DEFAULTS}) and yields the complete
 * request the addon reads without defaults. Messages name the field, the value received and the
 * values allowed — e.g. `numInferenceSteps must be an integer in [1, 1000]; received 0`.
 *
 * Follows the argument checks of diffusers' `StableDiffusionPipeline.check_inputs` /
 * `StableDiffusionImg2ImgPipeline.check_inputs` (pipeline_stable_diffusion.py, v0.30.3).
 */
import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { InvalidArgumentError, describeValue } from './errors.js';

export { describeValue };
export type * from './option_types.js';
import type {
  GenerateOptions, HubDownloadProgress, Img2ImgOptions, ImageInput, InpaintOptions, LatentsInput, LoadOptions, PromptInput, RawImageInput, RawMaskInput,
  StepProgress, XLGenerateOptions, XLImg2ImgOptions,
} from './option_types.js';
import type { ModelFamily, PipelineDtype } from '../types/native.js';
import type { AutoencoderKL } from './autoencoder_kl.js';
import type { AutoencoderTiny } from './autoencoder_tiny.js';

/** A loaded AutoencoderKL or AutoencoderTiny (duck-typed: options.ts does not import the classes). */
function isVaeObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && typeof (v as { nativeHandle?: unknown }).nativeHandle === 'function'
    && typeof (v as { decode?: unknown }).decode === 'function';
}
function isTinyObject(v: unknown): boolean {
  return isVaeObject(v) && typeof (v as { scaleLatents?: unknown }).scaleLatents === 'function';
}
import { SCHEDULER_NAMES, type SchedulerName } from './schedulers.js';

// =============================================================================================
// Error formatting
// =============================================================================================

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
function issueMessage(issue: z.ZodIssue, input: unknown, what: string, known: string[], hints: Record<string, string>): string {
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `'${k}'`).join(', ');
    const hint = issue.keys.map((k) => hints[k]).filter(Boolean);
    return `${what} has no option ${keys}${hint.length ? ` (${[...new Set(hint)].join('; ')})` : ''}; known options: ${known.join(', ')}`;
  }
  const field = fieldName(issue.path, what);
  return `${field} ${issue.message}; received ${describeValue(valueAt(input, issue.path))}`;
}

/**
 * Parses `input` with `schema`, throwing an {@link InvalidArgumentError} whose message names the
 * field, the value received and the values allowed (further problems are appended).
 */
function parseWith<T extends z.ZodTypeAny>(
  schema: T, input: unknown, what: string, known: string[], hints: Record<string, string> = {},
): z.output<T> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidArgumentError(`${what} must be an object; received ${describeValue(input)}`);
  }
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const messages = r.error.issues.map((i) => issueMessage(i, input, what, known, hints));
  const [first, ...rest] = messages;
  throw new InvalidArgumentError(rest.length ? `${first} (also: ${rest.join('; ')})` : first);
}

// =============================================================================================
// Schema building blocks (each message is the "rule" part: "must be ...")
// =============================================================================================

/**
 * diffusers' defaults, the one place they are written (the schemas below apply them; the CLI's
 * help quotes them): `__call__`'s num_inference_steps, guidance_scale, num_images_per_prompt,
 * eta; img2img / inpainting / SDXL img2img strength, SDXL aesthetic scores; the load device and dtype.
 */
export const DEFAULTS = Object.freeze({
  numInferenceSteps: 50, guidanceScale: 7.5, numImagesPerPrompt: 1, eta: 0,
  img2imgStrength: 0.8, inpaintStrength: 1, xlImg2ImgStrength: 0.3,
  /** StableDiffusionXLImg2ImgPipeline's aesthetic_score / negative_aesthetic_score (refiners with requires_aesthetics_score). */
  aestheticScore: 6, negativeAestheticScore: 2.5,
  device: 'cpu', dtype: 'float32',
  /** controlnet_conditioning_scale of the ControlNet pipelines (0.30.3): 1.0 (txt2img, SDXL), 0.8 (img2img), 0.5 (inpaint). */
  controlnetConditioningScale: Object.freeze({ txt2img: 1.0, img2img: 0.8, inpaint: 0.5, xl: 1.0 }),
  /** control_guidance_start / control_guidance_end: the ControlNet acts on the whole schedule. */
  controlGuidanceStart: 0, controlGuidanceEnd: 1,
} as const);

const msg = (rule: string) => ({ invalid_type_error: rule, required_error: rule });

function intIn(min: number, max: number, rule = `must be an integer in [${min}, ${max}]`) {
  return z.number(msg(rule)).int(rule).min(min, rule).max(max, rule);
}

/** A CPU generator seed: `torch.Generator('cpu').manual_seed(seed)` takes any non-negative safe integer. */
const seedSchema = intIn(0, Number.MAX_SAFE_INTEGER, 'must be a non-negative safe integer (0 … 2^53 − 1)');
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

/** `{ data: Float32Array, shape: positive integers }`. */
export function isLatentsInput(v: unknown): v is LatentsInput {
  return v !== null && typeof v === 'object' && (v as LatentsInput).data instanceof Float32Array
    && Array.isArray((v as LatentsInput).shape)
    && (v as LatentsInput).shape.every((d) => Number.isInteger(d) && d > 0);
}
const latentsSchema = z.custom<LatentsInput>(isLatentsInput,
  { message: 'must be { data: Float32Array, shape: [batch, 4, height/f, width/f] }' });
const UNIT_RULE = 'must be a number in [0, 1]';
const unitInterval = () => z.number(msg(UNIT_RULE)).finite(UNIT_RULE).min(0, UNIT_RULE).max(1, UNIT_RULE);

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
  numInferenceSteps: intIn(1, 1000).default(DEFAULTS.numInferenceSteps),
  guidanceScale: finiteAtLeast(0).default(DEFAULTS.guidanceScale),
  height: pixels().optional(),
  width: pixels().optional(),
  numImagesPerPrompt: intIn(1, 64).default(DEFAULTS.numImagesPerPrompt),
  seed: z.union([seedSchema, z.array(seedSchema).min(1, 'must hold at least one seed')]).optional(),
  latents: latentsSchema.optional(),
  clipSkip: intIn(1, 1000, 'must be an integer ≥ 1').optional(),
  eta: finiteAtLeast(0).default(DEFAULTS.eta),
  loraScale: z.number(msg('must be a finite number')).finite('must be a finite number').optional(),
  loraDir: z.string({ invalid_type_error: 'must be a folder path' }).min(1, 'must be a folder path').optional(),
  promptWeighting: z.enum(['none', 'a1111'], { errorMap: () => ({ message: "must be 'none' or 'a1111'" }) }).optional(),
  outputType: z.enum(['image', 'latent'], { errorMap: () => ({ message: "must be 'image' or 'latent'" }) }).default('image'),
  onStep: z.custom<(p: StepProgress) => void>((v) => typeof v === 'function', { message: 'must be a function' }).optional(),
  previews: z.enum(['taesd', 'latent2rgb'], { errorMap: () => ({ message: "must be 'taesd' or 'latent2rgb'" }) }).optional(),
  previewEvery: intIn(1, 1000).optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, { message: 'must be an AbortSignal' }).optional(),
};

/** zod schema of {@link GenerateOptions} (strict: unknown keys are errors). */
export const generateOptionsSchema = z.object(generateShape).strict();

const { latents: _latents, ...img2imgBase } = generateShape;
/** zod schema of {@link Img2ImgOptions} (strict). */
export const img2imgOptionsSchema = z.object({
  ...img2imgBase,
  image: imageSchema,
  strength: unitInterval().default(DEFAULTS.img2imgStrength),
}).strict();

const rawMaskSchema = z.custom<RawMaskInput>(
  (v) => v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && (v as RawMaskInput).channels === 1,
);
/** zod schema of {@link InpaintOptions} (strict): img2img plus `maskImage`, strength default 1. */
export const inpaintOptionsSchema = img2imgOptionsSchema.extend({
  maskImage: z.union([imageSchema, rawMaskSchema], {
    errorMap: () => ({ message: 'must be a file path, a Buffer holding a PNG/JPEG/WebP image, or { data: Uint8Array, width, height, channels: 1 } (white = repaint)' }),
  }),
  strength: unitInterval().default(DEFAULTS.inpaintStrength),
}).strict();

const PAIR_RULE = 'must be two non-negative finite numbers [a, b]';
const pair = () => z.custom<[number, number]>(
  (v) => Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0),
  { message: PAIR_RULE },
);
const FRACTION_RULE = 'must be a number in (0, 1)';
const fraction = () => z.number(msg(FRACTION_RULE)).gt(0, FRACTION_RULE).lt(1, FRACTION_RULE);
const finite = () => z.number(msg('must be a finite number')).finite('must be a finite number');
const xlConditioning = {
  originalSize: pair().optional(),
  cropsCoordsTopLeft: pair().optional(),
  targetSize: pair().optional(),
};
/** zod schema of {@link XLGenerateOptions} (strict). */
export const xlGenerateOptionsSchema = generateOptionsSchema.extend({ ...xlConditioning, denoisingEnd: fraction().optional() }).strict();

const imageOrLatentsSchema = z.custom<ImageInput | LatentsInput>((v) => isImageInput(v) || isLatentsInput(v), {
  message: 'must be a file path, a Buffer holding a PNG/JPEG/WebP image, { data: Uint8Array, width, height, channels: 3 }, ' +
    'or latents { data: Float32Array, shape: [batch, 4, h, w] }',
});
/** zod schema of {@link XLImg2ImgOptions} (strict): strength default 0.3, aesthetic scores 6 / 2.5. */
export const xlImg2ImgOptionsSchema = img2imgOptionsSchema.extend({
  ...xlConditioning,
  image: imageOrLatentsSchema,
  strength: unitInterval().default(DEFAULTS.xlImg2ImgStrength),
  denoisingStart: fraction().optional(),
  denoisingEnd: fraction().optional(),
  aestheticScore: finite().default(DEFAULTS.aestheticScore),
  negativeAestheticScore: finite().default(DEFAULTS.negativeAestheticScore),
}).strict();

// ---- ControlNet pipelines (diffusers pipelines/controlnet/*: `image` / `control_image`, scales, window) ----
const oneOrList = <T extends z.ZodTypeAny>(t: T) => z.union([t, z.array(t).min(1)]);
const controlImagesSchema = z.custom<ImageInput | ImageInput[]>(
  (v) => isImageInput(v) || (Array.isArray(v) && v.length > 0 && v.every(isImageInput)),
  { message: 'must be an image (file path, PNG/JPEG/WebP Buffer or { data: Uint8Array, width, height, channels: 3 }) or a non-empty list of them, one per ControlNet' },
);
const controlShape = {
  controlnetConditioningScale: oneOrList(finite()).optional(),
  guessMode: z.boolean({ invalid_type_error: 'must be a boolean' }).default(false),
  controlGuidanceStart: oneOrList(unitInterval()).default(DEFAULTS.controlGuidanceStart),
  controlGuidanceEnd: oneOrList(unitInterval()).default(DEFAULTS.controlGuidanceEnd),
};
/** The option keys the ControlNet pipelines add (the control image key is `image` or `controlImage`). */
export const CONTROL_OPTION_KEYS = ['controlnetConditioningScale', 'guessMode', 'controlGuidanceStart', 'controlGuidanceEnd'] as const;
/** zod schema of StableDiffusionControlNetPipeline options: txt2img plus the control `image`. */
export const controlnetOptionsSchema = generateOptionsSchema.extend({ image: controlImagesSchema, ...controlShape }).strict();
/** zod schema of StableDiffusionControlNetImg2ImgPipeline options: img2img plus `controlImage`. */
export const controlnetImg2ImgOptionsSchema = img2imgOptionsSchema.extend({ controlImage: controlImagesSchema, ...controlShape }).strict();
/** zod schema of StableDiffusionControlNetInpaintPipeline options: inpainting plus `controlImage`. */
export const controlnetInpaintOptionsSchema = inpaintOptionsSchema.extend({ controlImage: controlImagesSchema, ...controlShape }).strict();
/** zod schema of StableDiffusionXLControlNetPipeline options: SDXL txt2img plus the control `image`. */
export const xlControlnetOptionsSchema = xlGenerateOptionsSchema.extend({ image: controlImagesSchema, ...controlShape }).strict();
export type ControlNetOptions = z.input<typeof controlnetOptionsSchema>;
export type ControlNetImg2ImgOptions = z.input<typeof controlnetImg2ImgOptionsSchema>;
export type ControlNetInpaintOptions = z.input<typeof controlnetInpaintOptionsSchema>;
export type XLControlNetOptions = z.input<typeof xlControlnetOptionsSchema>;
export type ControlMode = 'txt2img' | 'img2img' | 'inpaint' | 'xl';
const CONTROL_SCHEMAS = {
  txt2img: [controlnetOptionsSchema, 'ControlNet generate options', 'image'],
  img2img: [controlnetImg2ImgOptionsSchema, 'ControlNet img2img options', 'controlImage'],
  inpaint: [controlnetInpaintOptionsSchema, 'ControlNet inpaint options', 'controlImage'],
  xl: [xlControlnetOptionsSchema, 'ControlNet generate options', 'image'],
} as const;

/** The control arguments of one call, one entry per ControlNet (diffusers' lists after check_inputs). */
export interface ResolvedControlOptions {
  images: ImageInput[];
  scales: number[];
  starts: number[];
  ends: number[];
  guessMode: boolean;
}

/**
 * Splits ControlNet pipeline options into the plain pipeline's options and the resolved control
 * arguments, checking them as diffusers' check_inputs does: one image per ControlNet, a scale /
 * start / end list of that length (a single number applies to every net), start < end.
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field.
 */
export function parseControlNetOptions(options: unknown, mode: ControlMode, numNets: number): {
  base: Record<string, unknown>; control: ResolvedControlOptions;
} {
  const [schema, what, imageKey] = CONTROL_SCHEMAS[mode];
  const o = parseWith(schema, options, what, Object.keys(schema.shape), OTHER_PIPELINE_KEYS) as Record<string, any>;
  const base: Record<string, unknown> = { ...(options as Record<string, unknown>) };
  for (const k of [...CONTROL_OPTION_KEYS, imageKey]) delete base[k];
  const images: ImageInput[] = Array.isArray(o[imageKey]) ? o[imageKey] : [o[imageKey]];
  if (images.length !== numNets) {
    throw new InvalidArgumentError(`${imageKey}: ${numNets} ControlNet(s) need ${numNets} control image(s), one per net; received ${images.length}`);
  }
  const perNet = (field: string, v: number | number[]): number[] => {
    if (!Array.isArray(v)) return new Array<number>(numNets).fill(v);
    if (v.length !== numNets) {
      throw new InvalidArgumentError(`${field}: a list must have one entry per ControlNet (${numNets}); received ${v.length}`);
    }
    return [...v];
  };
  const scales = perNet('controlnetConditioningScale', o.controlnetConditioningScale ?? DEFAULTS.controlnetConditioningScale[mode]);
  const starts = perNet('controlGuidanceStart', o.controlGuidanceStart);
  const ends = perNet('controlGuidanceEnd', o.controlGuidanceEnd);
  for (let k = 0; k < numNets; k++) {
    if (starts[k] >= ends[k]) {
      throw new InvalidArgumentError(`controlGuidanceStart (${starts[k]}) must be smaller than controlGuidanceEnd (${ends[k]})` +
        (numNets > 1 ? ` for ControlNet ${k}` : ''));
    }
  }
  return { base, control: { images, scales, starts, ends, guessMode: o.guessMode } };
}

/** Keys that belong to another pipeline: named in the "has no option" message. */
const OTHER_PIPELINE_KEYS: Record<string, string> = {
  denoisingStart: 'denoisingStart, aestheticScore and negativeAestheticScore are StableDiffusionXLImg2ImgPipeline options',
  aestheticScore: 'denoisingStart, aestheticScore and negativeAestheticScore are StableDiffusionXLImg2ImgPipeline options',
  negativeAestheticScore: 'denoisingStart, aestheticScore and negativeAestheticScore are StableDiffusionXLImg2ImgPipeline options',
  maskImage: 'maskImage is a StableDiffusionInpaintPipeline option',
};

const DEVICE_RULE = "must be 'cpu', 'cuda' or 'cuda:N'";
/** zod schema of {@link LoadOptions} (strict). */
export const loadOptionsSchema = z.object({
  device: z.string(msg(DEVICE_RULE)).regex(/^(cpu|cuda(:\d{1,3})?)$/, DEVICE_RULE).default(DEFAULTS.device),
  dtype: z.enum(['float32', 'float16', 'bfloat16'], { errorMap: () => ({ message: "must be 'float32', 'float16' or 'bfloat16'" }) })
    .default(DEFAULTS.dtype),
  variant: z.string(msg('must be a non-empty string such as "fp16"')).regex(/^[A-Za-z0-9_-]+$/, 'must be a non-empty string such as "fp16"').optional(),
  threads: intIn(1, 1024).optional(),
  configDir: z.string(msg('must be a non-empty path')).min(1, 'must be a non-empty path').optional(),
  vae: z.custom<AutoencoderKL | AutoencoderTiny | string>(
    (v) => (typeof v === 'string' && v.length > 0) || isVaeObject(v),
    { message: 'must be an AutoencoderKL, an AutoencoderTiny or a VAE folder path' }).optional(),
  previewDecoder: z.custom<AutoencoderTiny | string>(
    (v) => (typeof v === 'string' && v.length > 0) || isTinyObject(v),
    { message: 'must be an AutoencoderTiny or a folder path' }).optional(),
  revision: z.string(msg('must be a branch, tag or commit hash')).regex(/^[^\s]+$/, 'must be a branch, tag or commit hash').optional(),
  token: z.string(msg('must be a Hub access token ("hf_...")')).regex(/^hf_\S+$/, 'must be a Hub access token ("hf_...")').optional(),
  localFilesOnly: z.boolean(msg('must be true or false')).optional(),
  cacheDir: z.string(msg('must be a non-empty path')).min(1, 'must be a non-empty path').optional(),
  onProgress: z.custom<(p: HubDownloadProgress) => void>((v) => typeof v === 'function', { message: 'must be a function' }).optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, { message: 'must be an AbortSignal' }).optional(),
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

/** zod schema of the Hub fields of {@link VaeHubOptions} (other keys are the native loader's). */
export const vaeHubOptionsSchema = loadOptionsSchema.pick({
  revision: true, token: true, localFilesOnly: true, cacheDir: true, onProgress: true, signal: true, variant: true,
}).extend({
  subfolder: z.string(msg('must be a folder inside the model, e.g. "vae"')).regex(/^(?!\/)(?!.*(^|\/)\.\.?(\/|$)).*$/, 'must be a folder inside the model, e.g. "vae"').optional(),
}).passthrough();

/** The Hub / subfolder options of `AutoencoderKL.fromPretrained`, validated. */
export type VaeHubOptions = z.output<typeof vaeHubOptionsSchema>;

/**
 * Validates the Hub and `subfolder` options of `AutoencoderKL.fromPretrained` (the device/dtype
 * fields are checked by the native loader, as before).
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field.
 */
export function parseVaeHubOptions(options: object | undefined): VaeHubOptions {
  return parseWith(vaeHubOptionsSchema, options ?? {}, 'AutoencoderKL load options', Object.keys(vaeHubOptionsSchema.shape));
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
  /** The call's seed: the one generator's, or the first image's when `seeds` is given. */
  seed: number;
  /** One seed per image (diffusers' list of generators), `numPrompts × numImagesPerPrompt` of them. */
  seeds?: number[];
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
  /** Previews handed to onStep (with onStep only). */
  previews?: 'taesd' | 'latent2rgb';
  /** With previews: every previewEvery-th step (default 1). */
  previewEvery?: number;
  signal?: AbortSignal;
  /** img2img / inpainting: the input image (SDXL img2img: maybe latents, then in `imageLatents`). */
  image?: ImageInput;
  /** img2img: the strength in effect (undefined for txt2img and with SDXL's `denoisingStart`). */
  strength?: number;
  /** Inpainting: the mask as given. */
  maskImage?: ImageInput | RawMaskInput;
  /** SDXL: add_time_ids parts, filled (output size / [0, 0] by default). */
  originalSize?: [number, number];
  cropsCoordsTopLeft?: [number, number];
  targetSize?: [number, number];
  /** SDXL refiner conditioning (img2img; defaults 6 / 2.5). */
  aestheticScore?: number;
  negativeAestheticScore?: number;
  denoisingStart?: number;
  denoisingEnd?: number;
  /** SDXL img2img: latents given as `image` (`[batch|1, 4, h, w]`). */
  imageLatents?: LatentsInput;
}

/** Which call the options are for: each has its schema (txt2img, img2img, inpaint, and SDXL's two). */
export type GenerateMode = 'txt2img' | 'img2img' | 'inpaint' | 'xl' | 'xl-img2img';

const SCHEMAS = {
  txt2img: [generateOptionsSchema, 'generate options'],
  img2img: [img2imgOptionsSchema, 'img2img options'],
  inpaint: [inpaintOptionsSchema, 'inpaint options'],
  xl: [xlGenerateOptionsSchema, 'generate options'],
  'xl-img2img': [xlImg2ImgOptionsSchema, 'img2img options'],
} as const;

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
export type ParsedGenerateOptions = z.output<typeof generateOptionsSchema> & Partial<Omit<z.output<typeof xlImg2ImgOptionsSchema>, keyof z.output<typeof generateOptionsSchema>>> & {
  maskImage?: ImageInput | RawMaskInput;
};

/**
 * First half of {@link resolveGenerateOptions}: the schema alone (types, ranges, defaults).
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field, the value received and the values allowed.
 */
export function parseGenerateOptions(
  options: GenerateOptions | Img2ImgOptions | InpaintOptions | XLGenerateOptions | XLImg2ImgOptions, mode: GenerateMode = 'txt2img',
): ParsedGenerateOptions {
  const [schema, what] = SCHEMAS[mode];
  const o = parseWith(schema, options, what, Object.keys(schema.shape), OTHER_PIPELINE_KEYS) as ParsedGenerateOptions;
  if (o.denoisingStart !== undefined && o.denoisingEnd !== undefined && o.denoisingStart >= o.denoisingEnd) {
    throw new InvalidArgumentError(`denoisingStart (${o.denoisingStart}) must be smaller than denoisingEnd (${o.denoisingEnd})`);
  }
  return o;
}

/**
 * Second half of {@link resolveGenerateOptions}: per-prompt expansion, sizes, latents shape,
 * img2img step count, SDXL conditioning defaults, seed.
 */
export function finishGenerateOptions(
  o: ParsedGenerateOptions,
  model: ModelDefaults,
  mode: GenerateMode = 'txt2img',
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

  // 2. size: explicit, else the input image's (img2img) or image latents' (SDXL), else the model default
  const f = model.vaeScaleFactor;
  const round8 = (x: number) => x - (x % 8);
  const defaultSize = model.sampleSize * f;
  const imageLatents = mode === 'xl-img2img' && isLatentsInput(o.image) ? o.image : undefined;
  if (imageLatents) {
    // a 4-channel "image": the latents are used as they are (diffusers' prepare_latents)
    const numel = imageLatents.shape.reduce((a, b) => a * b, 1);
    if (imageLatents.shape.length !== 4 || imageLatents.shape[1] !== 4 || imageLatents.data.length !== numel) {
      throw new InvalidArgumentError(`image latents must be { data: Float32Array, shape: [batch, 4, h, w] }; received shape [${imageLatents.shape.join(', ')}]`);
    }
    if (o.height !== undefined || o.width !== undefined) {
      throw new InvalidArgumentError('height and width come from the image latents; do not pass them');
    }
  }
  const height = imageLatents ? imageLatents.shape[2] * f : o.height ?? (imageSize ? round8(imageSize.height) : defaultSize);
  const width = imageLatents ? imageLatents.shape[3] * f : o.width ?? (imageSize ? round8(imageSize.width) : defaultSize);
  for (const [name, v] of [['height', height], ['width', width]] as const) {
    if (v < 8) throw new InvalidArgumentError(`image must be at least 8×8 pixels; received ${imageSize?.width}×${imageSize?.height}`);
    if (v % f !== 0) {
      throw new InvalidArgumentError(`${name} must be a multiple of the model's vaeScaleFactor (${f}); received ${v}`);
    }
  }

  // 3. latents: exact shape, checked before any native call
  const batch = n * o.numImagesPerPrompt;
  // a list of seeds: one per image (diffusers: "You have passed a list of generators of length …")
  const seeds = Array.isArray(o.seed) ? o.seed : undefined;
  if (seeds && seeds.length !== batch) {
    throw new InvalidArgumentError(
      `seed: a list of ${seeds.length} seeds was given for ${batch} images (${n} prompt(s) × numImagesPerPrompt ${o.numImagesPerPrompt}); ` +
      'give one seed per image, or one number for the whole batch');
  }
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

  // 4. img2img: at least one denoising step (diffusers: int(steps × strength) steps); SDXL's
  //    denoisingStart replaces strength
  const strength = o.denoisingStart === undefined ? o.strength : undefined;
  if (mode !== 'txt2img' && mode !== 'xl' && strength !== undefined && Math.floor(o.numInferenceSteps * strength) < 1) {
    throw new InvalidArgumentError(
      `strength × numInferenceSteps must give at least one denoising step (int(${o.numInferenceSteps} × ${strength}) = 0); ` +
      `received strength ${strength}`);
  }

  // 5. previews are handed to onStep: they need it, and previewEvery needs previews
  if (o.previews !== undefined && o.onStep === undefined) {
    throw new InvalidArgumentError(`previews ${describeValue(o.previews)} are handed to onStep; pass onStep too`);
  }
  if (o.previewEvery !== undefined && o.previews === undefined) {
    throw new InvalidArgumentError(`previewEvery needs previews ('taesd' or 'latent2rgb'); received previewEvery ${o.previewEvery}`);
  }

  const xl = mode === 'xl' || mode === 'xl-img2img';
  return {
    prompts, negativePrompts, prompts2, negativePrompts2,
    numInferenceSteps: o.numInferenceSteps,
    guidanceScale: o.guidanceScale,
    height, width,
    numImagesPerPrompt: o.numImagesPerPrompt,
    seed: seeds ? seeds[0] : typeof o.seed === 'number' ? o.seed : randomSeed(),
    seeds: seeds ? [...seeds] : undefined,
    latents: o.latents,
    clipSkip: o.clipSkip,
    eta: o.eta,
    loraScale: o.loraScale,
    loraDir: o.loraDir,
    promptWeighting: o.promptWeighting,
    outputType: o.outputType,
    onStep: o.onStep,
    previews: o.previews,
    previewEvery: o.previews ? o.previewEvery ?? 1 : undefined,
    signal: o.signal,
    image: imageLatents ? undefined : o.image as ImageInput | undefined,
    strength,
    maskImage: o.maskImage,
    imageLatents,
    // diffusers SDXL: original_size and target_size default to the output size
    ...(xl ? {
      originalSize: o.originalSize ?? [height, width],
      cropsCoordsTopLeft: o.cropsCoordsTopLeft ?? [0, 0],
      targetSize: o.targetSize ?? [height, width],
      aestheticScore: o.aestheticScore ?? DEFAULTS.aestheticScore,
      negativeAestheticScore: o.negativeAestheticScore ?? DEFAULTS.negativeAestheticScore,
      denoisingStart: o.denoisingStart,
      denoisingEnd: o.denoisingEnd,
    } : {}),
  };
}

// =============================================================================================
// Schedulers
// =============================================================================================

/** The diffusers scheduler class names sd-native implements (one list: lib/schedulers.ts). */
export const SUPPORTED_SCHEDULERS = SCHEDULER_NAMES;
export type { SchedulerName };
