/**
 * One generate call on the native side: queued on the model, the complete native request built
 * (prompt encoding inputs, every option resolved), the call's toggles applied, progress and
 * cancellation plumbed through, and the result turned into the public one.
 */
import { addon } from '../native.js';
import { AbortError, native, nativeSync } from '../errors.js';
import { withLoraTags } from '../loaders/lora.js';
import type { DecodedImage } from '../image.js';
import type { ResolvedGenerateOptions, StepProgress } from '../options.js';
import { encodePromptInputs } from './prompt_encoding.js';
import { toResult, type GenerateResult } from './pipeline_output.js';
import type { NativeModel } from './native_model.js';
import type {
  NativeControlNetUnit, NativeGenerateRequest, NativeGenerateResult, NativeStepInfo, NativeXLGenerateRequest, TensorData,
} from '../../types/native.js';

/** What a call needs once its inputs are ready: the resolved options and decoded images. */
export interface CallInputs {
  o: ResolvedGenerateOptions;
  image?: DecodedImage;
  /** Inpainting: the mask `[height, width]` uint8 grayscale. */
  mask?: TensorData<Uint8Array>;
  /** ControlNet pipelines: one unit per net (images already at height×width), and guess_mode. */
  control?: { controlnets: NativeControlNetUnit[]; guessMode: boolean };
}

/** @internal */
export function abortError(signal: AbortSignal): AbortError {
  const r: unknown = signal.reason;
  const why = r instanceof Error ? `: ${r.message}` : typeof r === 'string' ? `: ${r}` : '';
  return new AbortError(`generate was aborted${why}`, r === undefined ? undefined : { cause: r });
}

/** The complete native request of a call (no field left for the addon to default). */
export function nativeRequest(
  model: NativeModel, o: ResolvedGenerateOptions, sched: { name: string; config: Record<string, unknown> }, inputs: CallInputs,
): NativeGenerateRequest | NativeXLGenerateRequest {
  const { image, mask, control } = inputs;
  const req: NativeGenerateRequest = {
    ...encodePromptInputs(model.tokenizers, model.xl, o),
    numImagesPerPrompt: o.numImagesPerPrompt,
    numInferenceSteps: o.numInferenceSteps,
    guidanceScale: o.guidanceScale,
    height: o.height,
    width: o.width,
    seed: o.seed,
    seeds: o.seeds,
    latents: o.latents ? { data: o.latents.data, shape: [...o.latents.shape] } : undefined,
    clipSkip: o.clipSkip ?? 0,
    eta: o.eta,
    outputType: o.outputType,
    schedulerName: sched.name,
    schedulerConfig: structuredClone(sched.config),
    loraScale: o.loraScale ?? 1,
    image: image
      ? { data: new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), shape: [image.height, image.width, 3] }
      : undefined,
    strength: o.strength,
    mask,
    ...(control ? { controlnets: control.controlnets, guessMode: control.guessMode } : {}),
    previews: o.previews,
    previewEvery: o.previewEvery,
  };
  if (!model.xl) return req;
  const { mask: _mask, ...common } = req;
  return {
    ...common,
    // diffusers: zero_out_negative_prompt = negative_prompt is None and force_zeros_for_empty_prompt
    negativePromptIsNone: o.negativePrompts === undefined,
    originalSize: o.originalSize!,
    cropsCoordsTopLeft: o.cropsCoordsTopLeft!,
    targetSize: o.targetSize!,
    aestheticScore: o.aestheticScore!,
    negativeAestheticScore: o.negativeAestheticScore!,
    denoisingStart: o.denoisingStart,
    denoisingEnd: o.denoisingEnd,
    imageLatents: o.imageLatents ? { data: o.imageLatents.data, shape: [...o.imageLatents.shape] } : undefined,
    img2img: o.image !== undefined || o.imageLatents !== undefined,
  } satisfies NativeXLGenerateRequest;
}

/**
 * @internal Queues one call at once (so calls keep their order even while an input image is
 * still being decoded), then tokenizes and runs it when its turn comes.
 * @param sched - the scheduler at call time
 * @param signal - the caller's AbortSignal (already validated)
 * @param prepare - the resolved options and decoded inputs; its failure rejects the call at once,
 *   without waiting for the queue
 */
export function runCall(
  model: NativeModel, calledAt: number, sched: { name: string; config: Record<string, unknown> }, signal: AbortSignal | undefined,
  prepare: Promise<CallInputs>,
): Promise<GenerateResult> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const optimizations = { ...model.optimizations }; // toggles at call time, like the scheduler
  let started = false;
  const job = model.enqueue(async () => {
    const reachedAt = performance.now();
    const inputs = await prepare;
    const { o } = inputs;
    if (signal?.aborted) throw abortError(signal);
    const t0 = performance.now();
    const call = async (prompts: string[]) => {
      const req = nativeRequest(model, prompts === o.prompts ? o : { ...o, prompts }, sched, inputs);
      const tokenizeMs = performance.now() - t0;
      started = true;
      nativeSync(() => addon().pipelineSetOptimizations(model.handle, optimizations));
      const startedAt = performance.now();
      const r = await invoke(model, req, o, signal, startedAt);
      return toResult(r, o, sched, model.info.modelPath, { queueMs: reachedAt - calledAt, tokenizeMs, wallMs: performance.now() - calledAt });
    };
    // A1111 <lora:name:weight> prompt tags (with loraDir): applied for this call only
    return o.loraDir === undefined ? call(o.prompts) : withLoraTags(model.handle, model, o.loraDir, o.prompts, call);
  });
  return new Promise<GenerateResult>((resolve, reject) => {
    prepare.catch(reject); // bad options / undecodable image: at once
    const onAbort = () => { if (!started) reject(abortError(signal!)); }; // aborted while queued: at once
    signal?.addEventListener('abort', onAbort, { once: true });
    job.then(resolve, reject).finally(() => signal?.removeEventListener('abort', onAbort));
  });
}

/** uint8 [B, H, W, 3] previews → one DecodedImage per image (copies: the native buffer is not kept). */
function previewImages(t: TensorData<Uint8Array>): DecodedImage[] {
  const [b, height, width] = t.shape;
  const n = height * width * 3;
  const out: DecodedImage[] = [];
  for (let i = 0; i < b; i++) out.push({ data: Buffer.from(t.data.subarray(i * n, (i + 1) * n)), width, height, channels: 3 });
  return out;
}

/** One native generate call with progress and cancellation plumbing. */
async function invoke(
  model: NativeModel, req: NativeGenerateRequest | NativeXLGenerateRequest, o: ResolvedGenerateOptions,
  signal: AbortSignal | undefined, startedAt: number,
): Promise<NativeGenerateResult> {
  const a = addon();
  // A token is needed to stop the loop on abort, and also when a user callback throws.
  const token = signal || o.onStep ? nativeSync(() => a.createAbortToken()) : undefined;
  const onAbort = () => { a.abortToken(token!); };
  signal?.addEventListener('abort', onAbort, { once: true });
  let callbackError: { e: unknown } | undefined;
  const userOnStep = o.onStep;
  const onStep = userOnStep
    ? (s: NativeStepInfo) => {
      if (callbackError) return;
      try {
        const progress: StepProgress = { step: s.step, numSteps: s.numSteps, timestep: s.timestep, elapsedMs: performance.now() - startedAt };
        if (s.preview) progress.previewImages = previewImages(s.preview);
        userOnStep(progress);
      } catch (e) {
        // A throwing callback stops the call; its error is what the caller gets.
        callbackError = { e };
        a.abortToken(token!);
      }
    }
    : undefined;
  try {
    const r = await native(() => a.generate(model.handle, req, onStep, token));
    if (callbackError) throw callbackError.e; // thrown on the last step, after the loop ended
    if (r.vaeUpcast) {
      // once per pipeline: the native VAE stays in float32 after the first upcast
      process.emitWarning('the float16/bfloat16 VAE decode gave NaN/inf; decoded again in float32 and the VAE stays in '
        + 'float32 for this pipeline (diffusers force_upcast)', { code: 'SD_VAE_UPCAST' });
    }
    if (r.vaeAutoTiling && !model.warnedAutoTiling) {
      model.warnedAutoTiling = true; // once per pipeline
      process.emitWarning('the VAE decode at this size would not fit in the memory available, so it was decoded with VAE '
        + 'tiling (slightly different pixels than an untiled decode); call enableVaeTiling() to make this explicit or '
        + 'raise the memory limit', { code: 'SD_VAE_AUTO_TILING' });
    }
    return r;
  } catch (e) {
    if (callbackError) throw callbackError.e;
    if (signal?.aborted && (e as { code?: string }).code === 'E_ABORTED') throw abortError(signal);
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
