/**
 * diffusers' noise schedulers (v0.30.3) on the native core, and `torch.Generator('cpu')`-exact
 * random numbers. Calls are synchronous: scheduler arithmetic on latents is small.
 *
 * @example
 * ```ts
 * const s = createScheduler('EulerDiscreteScheduler', schedulerConfig, { use_karras_sigmas: true });
 * s.setTimesteps(25);
 * const gen = new Generator(42);
 * let x = scale(gen.randn([1, 4, 64, 64]), s.initNoiseSigma);
 * for (const t of s.timesteps) {
 *   const eps = await unet(s.scaleModelInput(x, t), t);
 *   x = s.step(eps, t, x, { generator: gen }).prevSample;
 * }
 * ```
 */
import { addon } from './native.js';
import { InvalidArgumentError, UnsupportedModelError, nativeSync } from './errors.js';
import type { AnyTensorData, GeneratorHandle, NativeSchedulerState, SchedulerHandle, TensorData } from '../types/native.js';

/** The diffusers scheduler classes sd-native implements. */
export const SCHEDULER_NAMES = [
  'DDIMScheduler',
  'PNDMScheduler',
  'LMSDiscreteScheduler',
  'EulerDiscreteScheduler',
  'EulerAncestralDiscreteScheduler',
  'DPMSolverMultistepScheduler',
  'HeunDiscreteScheduler',
  'UniPCMultistepScheduler',
  'LCMScheduler',
] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/**
 * AUTOMATIC1111 sampler names → the diffusers scheduler and config overrides, as diffusers'
 * documentation tables them (docs/source/en/api/schedulers/overview.md, "Schedulers" table):
 * e.g. "DPM++ 2M Karras" = DPMSolverMultistepScheduler with use_karras_sigmas=True. Only the
 * schedulers sd-native implements; the inverse is lib/image.ts `samplerName`.
 */
export const A1111_SAMPLERS: Readonly<Record<string, { scheduler: SchedulerName; config: Record<string, unknown> }>> = Object.freeze({
  'DPM++ 2M': { scheduler: 'DPMSolverMultistepScheduler', config: {} },
  'DPM++ 2M Karras': { scheduler: 'DPMSolverMultistepScheduler', config: { use_karras_sigmas: true } },
  'DPM++ 2M SDE': { scheduler: 'DPMSolverMultistepScheduler', config: { algorithm_type: 'sde-dpmsolver++' } },
  'DPM++ 2M SDE Karras': { scheduler: 'DPMSolverMultistepScheduler', config: { algorithm_type: 'sde-dpmsolver++', use_karras_sigmas: true } },
  'Euler': { scheduler: 'EulerDiscreteScheduler', config: {} },
  'Euler Karras': { scheduler: 'EulerDiscreteScheduler', config: { use_karras_sigmas: true } },
  'Euler a': { scheduler: 'EulerAncestralDiscreteScheduler', config: {} },
  'Heun': { scheduler: 'HeunDiscreteScheduler', config: {} },
  'LMS': { scheduler: 'LMSDiscreteScheduler', config: {} },
  'LMS Karras': { scheduler: 'LMSDiscreteScheduler', config: { use_karras_sigmas: true } },
  'DDIM': { scheduler: 'DDIMScheduler', config: {} },
  'PLMS': { scheduler: 'PNDMScheduler', config: {} },
  'UniPC': { scheduler: 'UniPCMultistepScheduler', config: {} },
  'LCM': { scheduler: 'LCMScheduler', config: {} },
});

/**
 * A diffusers scheduler class name, or an AUTOMATIC1111 sampler name ({@link A1111_SAMPLERS},
 * case-insensitive), as the scheduler and the config overrides it stands for.
 * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) naming the value and listing both kinds of names.
 * @example resolveSchedulerName('DPM++ 2M Karras') // { scheduler: 'DPMSolverMultistepScheduler', config: { use_karras_sigmas: true } }
 */
export function resolveSchedulerName(name: string): { scheduler: SchedulerName; config: Record<string, unknown> } {
  if ((SCHEDULER_NAMES as readonly string[]).includes(name)) return { scheduler: name as SchedulerName, config: {} };
  const key = Object.keys(A1111_SAMPLERS).find((k) => k.toLowerCase() === String(name).trim().toLowerCase());
  if (key !== undefined) return { scheduler: A1111_SAMPLERS[key].scheduler, config: { ...A1111_SAMPLERS[key].config } };
  throw new UnsupportedModelError(`scheduler ${JSON.stringify(name)} is not supported; diffusers class names: ${SCHEDULER_NAMES.join(', ')}; ` +
    `AUTOMATIC1111 sampler names: ${Object.keys(A1111_SAMPLERS).join(', ')}`);
}

const U64 = 1n << 64n;
const I64_MIN = -(1n << 63n);

/**
 * A CPU random generator bit-compatible with `torch.Generator('cpu').manual_seed(seed)`
 * (libtorch's mt19937-based CPUGeneratorImpl): `randn` gives what `torch.randn(shape, generator=g)`
 * gives, draw after draw.
 */
export class Generator {
  /** The seed as torch stores it (uint64; negative seeds wrap as in torch). */
  readonly seed: bigint;
  /** @internal */
  readonly handle: GeneratorHandle;

  /**
   * @param seed - an integer in [-2^63, 2^64): a safe-integer number or a bigint.
   * @throws InvalidArgumentError for a non-integer or out-of-range seed.
   */
  constructor(seed: number | bigint) {
    let s: bigint;
    if (typeof seed === 'bigint') s = seed;
    else if (typeof seed === 'number' && Number.isSafeInteger(seed)) s = BigInt(seed);
    else throw new InvalidArgumentError(`Expected an integer seed but received ${String(seed)} of type ${typeof seed}`);
    if (s < I64_MIN || s >= U64) throw new InvalidArgumentError(`seed ${s} is outside [-2^63, 2^64)`);
    this.seed = BigInt.asUintN(64, s);
    this.handle = nativeSync(() => addon().createGenerator(this.seed));
  }

  /**
   * `torch.randn(shape, generator=this)`: standard normal float32 values; advances the generator.
   * @param shape - non-negative integer dimensions, e.g. `[1, 4, 64, 64]`.
   */
  randn(shape: number[]): TensorData<Float32Array> {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new InvalidArgumentError(`Expected shape to be an array of non-negative integers but received ${JSON.stringify(shape)}`);
    return nativeSync(() => addon().generatorRandn(this.handle, shape)) as TensorData<Float32Array>;
  }
}

/** Options of {@link Scheduler.step}. */
export interface SchedulerStepOptions {
  /** CPU generator for the noise of ancestral samplers (EulerAncestral, DDIM with eta > 0, LCM). */
  generator?: Generator;
  /** DDIM's η (0 = deterministic DDIM, 1 = DDPM-like); ignored by the other schedulers. Default 0. */
  eta?: number;
}

export interface SchedulerStepOutput {
  /** The latents for the next step (`prev_sample`), shape and dtype of the sample. */
  prevSample: TensorData;
  /** The x0 prediction of this step (`pred_original_sample`; LCM's `denoised`) where the scheduler forms one. */
  predOriginalSample?: TensorData;
}

/** A diffusers scheduler (see `SchedulerMixin`). Tensors are `{data, shape}` (float32 or float64). */
export interface Scheduler {
  /** The diffusers class name. */
  readonly name: SchedulerName;
  /** `scheduler.order`: 2 for HeunDiscreteScheduler (img2img uses `timesteps.slice(tStart * order)`), else 1. */
  readonly order: number;
  readonly numTrainTimesteps: number;
  /** `alphas_cumprod` [num_train_timesteps]. */
  readonly alphasCumprod: Float32Array;
  /**
   * `set_timesteps(n)`: computes the schedule and resets all per-run state (the scheduler is reusable).
   * @throws InvalidArgumentError unless 1 <= n <= num_train_timesteps (LCM: <= original_inference_steps).
   */
  setTimesteps(numInferenceSteps: number): void;
  /** `scheduler.timesteps` (integers for DDIM/PNDM/DPM/UniPC/LCM; float32 values for Euler/EulerA/LMS/Heun). */
  readonly timesteps: number[];
  /** `scheduler.sigmas` for the sigma-based schedulers (length timesteps + 1), else undefined. */
  readonly sigmas?: number[];
  /** `init_noise_sigma`: initial txt2img latents are `randn * initNoiseSigma`. */
  readonly initNoiseSigma: number;
  /** `scale_model_input(sample, t)`: what the UNet receives at timestep `t`. */
  scaleModelInput(sample: AnyTensorData, timestep: number): TensorData;
  /**
   * `step(model_output, t, sample)`.
   * @throws InvalidArgumentError before setTimesteps, for a timestep outside the schedule, or mismatched shapes.
   */
  step(modelOutput: AnyTensorData, timestep: number, sample: AnyTensorData, options?: SchedulerStepOptions): SchedulerStepOutput;
  /** `add_noise(original, noise, t)` (img2img: noise image latents to the first used timestep). */
  addNoise(original: AnyTensorData, noise: AnyTensorData, timestep: number): TensorData;
  /** `set_begin_index(i)` (img2img: `tStart * order`); call after setTimesteps. */
  setBeginIndex(beginIndex: number): void;
}

function toNumbers(t: TensorData<any> | undefined): number[] | undefined {
  return t ? Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v)) : undefined;
}

/** JSON with non-finite numbers spelled as in diffusers' cases.json ("-Infinity"), which the core reads back. */
function configJson(config: Record<string, unknown>): string {
  return JSON.stringify(config, (_k, v) =>
    typeof v === 'number' && !Number.isFinite(v) ? (Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity') : v);
}

class NativeScheduler implements Scheduler {
  readonly name: SchedulerName;
  readonly order: number;
  readonly numTrainTimesteps: number;
  readonly alphasCumprod: Float32Array;
  private readonly handle: SchedulerHandle;
  private state: { timesteps: number[]; sigmas?: number[]; initNoiseSigma: number } | undefined;

  constructor(name: SchedulerName, handle: SchedulerHandle) {
    this.handle = handle;
    const st = nativeSync(() => addon().schedulerState(handle));
    this.name = name;
    this.order = st.order;
    this.numTrainTimesteps = st.numTrainTimesteps;
    this.alphasCumprod = st.alphasCumprod.data;
  }

  setTimesteps(numInferenceSteps: number): void {
    if (!Number.isSafeInteger(numInferenceSteps))
      throw new InvalidArgumentError(`Expected an integer for numInferenceSteps but received ${String(numInferenceSteps)}`);
    nativeSync(() => addon().schedulerSetTimesteps(this.handle, numInferenceSteps));
    const st: NativeSchedulerState = nativeSync(() => addon().schedulerState(this.handle));
    this.state = { timesteps: toNumbers(st.timesteps)!, sigmas: toNumbers(st.sigmas), initNoiseSigma: st.initNoiseSigma! };
  }

  private get ready() {
    if (!this.state) throw new InvalidArgumentError(`${this.name}: call setTimesteps(numInferenceSteps) first`);
    return this.state;
  }
  get timesteps(): number[] { return this.ready.timesteps; }
  get sigmas(): number[] | undefined { return this.ready.sigmas; }
  get initNoiseSigma(): number { return this.ready.initNoiseSigma; }

  scaleModelInput(sample: AnyTensorData, timestep: number): TensorData {
    return nativeSync(() => addon().schedulerScaleModelInput(this.handle, sample, timestep));
  }

  step(modelOutput: AnyTensorData, timestep: number, sample: AnyTensorData, options: SchedulerStepOptions = {}): SchedulerStepOutput {
    const { generator, eta = 0 } = options;
    if (generator !== undefined && !(generator instanceof Generator))
      throw new InvalidArgumentError('step: options.generator must be a Generator');
    if (typeof eta !== 'number' || !(eta >= 0)) throw new InvalidArgumentError(`step: Expected eta >= 0 but received ${String(eta)}`);
    return nativeSync(() => addon().schedulerStep(this.handle, modelOutput, timestep, sample, generator?.handle ?? null, eta));
  }

  addNoise(original: AnyTensorData, noise: AnyTensorData, timestep: number): TensorData {
    return nativeSync(() => addon().schedulerAddNoise(this.handle, original, noise, timestep));
  }

  setBeginIndex(beginIndex: number): void {
    nativeSync(() => addon().schedulerSetBeginIndex(this.handle, beginIndex));
  }
}

/**
 * `Cls.from_config({...config, ...overrides})` for a diffusers scheduler class.
 * @param name - a diffusers class name (see {@link SCHEDULER_NAMES}).
 * @param config - the model's `scheduler/scheduler_config.json` (any class's: unknown fields are
 *   ignored, missing ones take this class's diffusers defaults). `-Infinity` may be given as a
 *   number, the string "-Infinity" or null.
 * @param overrides - fields replacing those of `config` (e.g. `{ use_karras_sigmas: true }`).
 * @throws UnsupportedModelError for an unknown name (the message lists the supported ones).
 * @throws BadConfigError for a field of the wrong type or an invalid value (named in the message).
 */
export function createScheduler(name: string, config: Record<string, unknown>, overrides?: Record<string, unknown>): Scheduler {
  if (typeof name !== 'string') throw new InvalidArgumentError(`Expected a scheduler class name but received ${typeof name}`);
  const isObject = (o: unknown) => typeof o === 'object' && o !== null && !Array.isArray(o);
  if (!isObject(config)) throw new InvalidArgumentError('createScheduler: config must be an object (scheduler_config.json)');
  if (overrides !== undefined && !isObject(overrides)) throw new InvalidArgumentError('createScheduler: overrides must be an object');
  const json = configJson({ ...config, ...(overrides ?? {}) });
  const handle = nativeSync(() => addon().createScheduler(name, json));
  return new NativeScheduler(name as SchedulerName, handle);
}
