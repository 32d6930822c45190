/**
 * The request bodies of `sd-native serve`'s APIs as zod schemas (fastify validates with them: see
 * app.ts's validator compiler), and their mapping onto a {@link JobRequest} in the library's
 * option names. These schemas check the API's own fields (OpenAI's `n`, `size`,
 * `response_format`; A1111's `batch_size`, `seed: -1`…); the generation parameters are then
 * checked by the library's zod schemas (lib/options.ts, through `checkJobRequest`), so the rules
 * and messages are the library's.
 *
 * Field names follow the APIs they copy: OpenAI's images API (`POST /v1/images/generations`,
 * `/v1/images/edits`) and AUTOMATIC1111's `modules/api/models.py` (StableDiffusionProcessingTxt2Img
 * / Img2Img: `prompt`, `negative_prompt`, `seed` −1 = random, `sampler_name`, `steps`,
 * `cfg_scale`, `width`, `height`, `batch_size`, `n_iter`, `init_images`, `mask`,
 * `denoising_strength`, `inpainting_mask_invert`, `override_settings`).
 */
import { z } from 'zod';
import { describeValue } from '../errors.js';
import type { JobParams, JobRequest, JobTask } from './backend.js';

/** Turns the first zod issue into "field rule; received value" (further ones appended). */
export function zodMessage(error: z.ZodError, input: unknown): { message: string; param?: string } {
  const parts = error.issues.map((issue) => {
    const field = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('') || 'body';
    let v: unknown = input;
    for (const k of issue.path) v = v !== null && typeof v === 'object' ? (v as Record<string | number, unknown>)[k] : undefined;
    if (issue.code === 'unrecognized_keys') return `${field} has unknown field(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    return `${field} ${issue.message}; received ${describeValue(v)}`;
  });
  const first = error.issues[0];
  return {
    message: parts.length > 1 ? `${parts[0]} (also: ${parts.slice(1).join('; ')})` : parts[0],
    param: first && first.path.length ? String(first.path[0]) : undefined,
  };
}

const m = (rule: string) => ({ invalid_type_error: rule, required_error: rule });
const int = (min: number, max: number) => z.number(m(`must be an integer in [${min}, ${max}]`)).int(`must be an integer in [${min}, ${max}]`)
  .min(min, `must be an integer in [${min}, ${max}]`).max(max, `must be an integer in [${min}, ${max}]`);
const num = () => z.number(m('must be a finite number')).finite('must be a finite number');
const str = (rule = 'must be a string') => z.string(m(rule));
const enumOf = <const T extends [string, ...string[]]>(values: T) => z.enum(values, {
  errorMap: () => ({ message: `must be one of ${values.map((v) => `'${v}'`).join(', ')}` }),
});

/** sd-native's generation fields, accepted by the OpenAI and jobs routes in snake_case. */
const sdFields = {
  negative_prompt: str().optional(),
  steps: z.number(m('must be a number')).optional(),
  num_inference_steps: z.number(m('must be a number')).optional(),
  guidance_scale: z.number(m('must be a number')).optional(),
  seed: z.union([z.number(), z.array(z.number())], { errorMap: () => ({ message: 'must be a non-negative integer or a list of them (one per image)' }) }).optional(),
  scheduler: str('must be a scheduler class name or an A1111 sampler name (GET /sdapi/v1/samplers)').optional(),
  clip_skip: z.number(m('must be a number')).optional(),
  strength: z.number(m('must be a number')).optional(),
};

/** `WIDTHxHEIGHT`, e.g. `512x512`. */
const SIZE_RULE = "must be 'WIDTHxHEIGHT' (e.g. '512x512'; multiples of 8)";
const size = () => z.string(m(SIZE_RULE)).regex(/^\d{1,5}x\d{1,5}$/, SIZE_RULE);

/** OpenAI `POST /v1/images/generations` (OpenAI's own fields quality, style, user… are accepted and ignored). */
export const openAiGenerationSchema = z.object({
  prompt: str('must be a non-empty string').min(1, 'must be a non-empty string'),
  model: str().optional(),
  n: int(1, 10).optional(),
  size: size().optional(),
  response_format: enumOf(['b64_json', 'url']).optional(),
  ...sdFields,
}).passthrough();
export type OpenAiGeneration = z.infer<typeof openAiGenerationSchema>;

/** Multipart text fields come as strings: numbers are converted before the same checks. */
const formNumber = () => z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)) ? Number(v) : v),
  z.number(m('must be a number')));
/** OpenAI `POST /v1/images/edits` text fields (the files `image` and `mask` are read separately). */
export const openAiEditSchema = z.object({
  prompt: str('must be a non-empty string').min(1, 'must be a non-empty string'),
  model: str().optional(),
  n: z.preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v), int(1, 10)).optional(),
  size: size().optional(),
  response_format: enumOf(['b64_json', 'url']).optional(),
  negative_prompt: str().optional(),
  steps: formNumber().optional(),
  num_inference_steps: formNumber().optional(),
  guidance_scale: formNumber().optional(),
  seed: formNumber().optional(),
  scheduler: str().optional(),
  strength: formNumber().optional(),
  clip_skip: formNumber().optional(),
}).passthrough();
export type OpenAiEdit = z.infer<typeof openAiEditSchema>;

/** OpenAI fields → job parameters. */
export function openAiParams(b: OpenAiGeneration | OpenAiEdit): JobParams {
  const [w, h] = b.size ? b.size.split('x').map(Number) : [undefined, undefined];
  return prune({
    prompt: b.prompt,
    negativePrompt: b.negative_prompt,
    width: w,
    height: h,
    numInferenceSteps: b.num_inference_steps ?? b.steps,
    guidanceScale: b.guidance_scale,
    seed: b.seed as JobParams['seed'],
    numImagesPerPrompt: b.n,
    scheduler: b.scheduler,
    strength: b.strength,
    clipSkip: b.clip_skip,
  });
}

/** AUTOMATIC1111 `POST /sdapi/v1/txt2img` (StableDiffusionProcessingTxt2Img; unused A1111 fields are accepted and ignored). */
export const a1111Txt2ImgSchema = z.object({
  prompt: str().default(''),
  negative_prompt: str().default(''),
  seed: z.number(m('must be an integer (-1 = random)')).int('must be an integer (-1 = random)').min(-1, 'must be an integer (-1 = random)').default(-1),
  sampler_name: str().nullish(),
  sampler_index: str().nullish(),
  scheduler: str().nullish(),
  steps: z.number(m('must be a number')).default(50),
  cfg_scale: z.number(m('must be a number')).default(7),
  width: z.number(m('must be a number')).nullish(),
  height: z.number(m('must be a number')).nullish(),
  batch_size: int(1, 64).default(1),
  n_iter: int(1, 64).default(1),
  clip_skip: z.number(m('must be a number')).nullish(),
  override_settings: z.record(z.unknown()).nullish(),
  send_images: z.boolean(m('must be a boolean')).default(true),
}).passthrough();
export type A1111Txt2Img = z.infer<typeof a1111Txt2ImgSchema>;

/** AUTOMATIC1111 `POST /sdapi/v1/img2img` (StableDiffusionProcessingImg2Img). */
export const a1111Img2ImgSchema = a1111Txt2ImgSchema.extend({
  init_images: z.array(str('must be a base64 image'), m('must be a list of base64 images')).min(1, 'must hold one base64 image'),
  mask: str('must be a base64 image').nullish(),
  denoising_strength: num().default(0.75),
  inpainting_mask_invert: z.number(m('must be 0 or 1')).int().min(0).max(1).default(0),
}).passthrough();
export type A1111Img2Img = z.infer<typeof a1111Img2ImgSchema>;

/** The A1111 sampler of a request: `sampler_name` (or the older `sampler_index`), with `scheduler: 'Karras'` appended as A1111 ≥ 1.9 splits it. */
function a1111Sampler(b: A1111Txt2Img): string | undefined {
  const name = b.sampler_name ?? b.sampler_index ?? undefined;
  if (!name) return undefined;
  const sched = b.scheduler?.toLowerCase();
  return sched === 'karras' && !/karras/i.test(name) ? `${name} Karras` : name;
}

/** A1111 fields → job parameters (seed −1 → random; batch_size × n_iter images). */
export function a1111Params(b: A1111Txt2Img): JobParams {
  const clip = b.clip_skip ?? (b.override_settings?.CLIP_stop_at_last_layers as number | undefined);
  return prune({
    prompt: b.prompt,
    negativePrompt: b.negative_prompt,
    width: b.width ?? undefined,
    height: b.height ?? undefined,
    numInferenceSteps: b.steps,
    guidanceScale: b.cfg_scale,
    seed: b.seed === -1 ? undefined : b.seed,
    numImagesPerPrompt: b.batch_size * b.n_iter,
    scheduler: a1111Sampler(b),
    // A1111's "Clip skip" 1 = no skip; diffusers' clip_skip 1 = skip one layer
    clipSkip: typeof clip === 'number' && clip > 1 ? clip - 1 : undefined,
  });
}

/** The model A1111's `override_settings.sd_model_checkpoint` names (its title or name), if any. */
export function a1111Model(b: A1111Txt2Img): string | undefined {
  const v = b.override_settings?.sd_model_checkpoint;
  return typeof v === 'string' ? v.replace(/\s*\[[0-9a-f]+\]$/, '').replace(/\.(safetensors|ckpt)$/i, '') : undefined;
}

/** `POST /v1/jobs`: a job request in the library's option names; `model` defaults to the first model, `task` to what the images imply. */
export const jobRequestSchema = z.object({
  model: str().optional(),
  task: enumOf(['text2image', 'image2image', 'inpainting']).optional(),
  previews: z.boolean(m('must be a boolean')).optional(),
  params: z.object({}, m('must be an object of generation parameters (prompt, negativePrompt, width, height, …)')).passthrough(),
}).strict();

/** A job body → a {@link JobRequest} (task inferred from image/maskImage when absent). */
export function jobRequestOf(b: z.infer<typeof jobRequestSchema>, defaultModel: string): JobRequest {
  const params = b.params as unknown as JobParams;
  const task: JobTask = b.task ?? (params.maskImage !== undefined ? 'inpainting' : params.image !== undefined ? 'image2image' : 'text2image');
  return { model: b.model ?? defaultModel, task, params, ...(b.previews ? { previews: true } : {}) };
}

function prune<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
