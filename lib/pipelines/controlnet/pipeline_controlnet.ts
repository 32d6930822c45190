/**
 * diffusers' `StableDiffusionControlNetPipeline` (pipelines/controlnet/pipeline_controlnet.py, v0.30.3)
 * and what the four ControlNet pipelines share ({@link ControlNetPipelineBase}): loading with
 * `{ controlnet }`, check_inputs for the control arguments, and the control images handed to the
 * native denoising loop (native/core/pipelines/controlnet.cc: prepare_image, controlnet_keep,
 * guess mode, MultiControlNetModel).
 */
import { InvalidArgumentError, describeValue } from '../../errors.js';
import { loadInputImage } from '../../image.js';
import { ControlNetModel } from '../../controlnet_model.js';
import { LoaderPipeline } from '../../loaders/lora_pipeline.js';
import {
  parseControlNetOptions, type ControlMode, type ControlNetOptions, type GenerateMode, type LoadOptions,
  type ResolvedControlOptions, type ResolvedGenerateOptions,
} from '../../options.js';
import { loadModel } from '../native_model.js';
import { DiffusionPipeline, type PipelineClass } from '../pipeline_utils.js';
import type { GenerateResult } from '../pipeline_output.js';
import type { CallInputs } from '../native_call.js';

/** Load options of the ControlNet pipelines: the pipeline's, plus the ControlNet(s) (required). */
export interface ControlNetPipelineOptions extends LoadOptions {
  /** One ControlNet, or several (diffusers' MultiControlNetModel: residuals summed in this order). */
  controlnet: ControlNetModel | ControlNetModel[];
}

function controlnetList(v: unknown, what: string): ControlNetModel[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0 || !list.every((c) => c instanceof ControlNetModel)) {
    throw new InvalidArgumentError(`${what}: controlnet must be a ControlNetModel or a non-empty array of them; received ${describeValue(v)}`);
  }
  return list as ControlNetModel[];
}

/** `fromPretrained` / `fromSingleFile` of a ControlNet pipeline: the plain load, then `options.controlnet` attached (the model freed if that fails). */
async function loadWithControlNets<T>(
  cls: PipelineClass<T>, source: string, options: ControlNetPipelineOptions | undefined, singleFile: boolean, method: string,
): Promise<T> {
  const { controlnet, ...load } = (options ?? {}) as Partial<ControlNetPipelineOptions>;
  const nets = controlnetList(controlnet, `${cls.name}.${method}`);
  const pipe = new cls(await loadModel(source, load, singleFile, cls.xl)) as unknown as ControlNetPipelineBase;
  try {
    pipe.setControlNets(nets);
  } catch (e) {
    pipe.dispose();
    throw e;
  }
  return pipe as unknown as T;
}

/** What the ControlNet pipeline classes share. Not constructed directly. */
export abstract class ControlNetPipelineBase extends LoaderPipeline {
  /** The ControlNets, in order (a list of one for a single ControlNet). */
  controlnet: ControlNetModel[] = [];
  /** @internal The option schema of this class and the plain pipeline call it extends. */
  protected abstract readonly controlMode: ControlMode;
  protected abstract readonly baseMode: GenerateMode;

  /**
   * Loads the pipeline's diffusers folder (as `fromPretrained` of the plain pipeline) and attaches `options.controlnet`.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when controlnet is missing, or an SDXL ControlNet meets an SD 1.x/2.x model (or the reverse).
   * @throws the errors of DiffusionPipeline.fromPretrained.
   */
  static override async fromPretrained<T>(this: PipelineClass<T>, dir: string, options?: ControlNetPipelineOptions): Promise<T> {
    return loadWithControlNets(this, dir, options, false, 'fromPretrained');
  }

  /**
   * Loads an original single-file checkpoint (as `fromSingleFile` of the plain pipeline) and attaches `options.controlnet`.
   * @throws the errors of {@link fromPretrained} and DiffusionPipeline.fromSingleFile.
   */
  static override async fromSingleFile<T>(this: PipelineClass<T>, file: string, options?: ControlNetPipelineOptions): Promise<T> {
    return loadWithControlNets(this, file, options, true, 'fromSingleFile');
  }

  /**
   * A ControlNet pipeline sharing the native model of `pipe` (diffusers: `Cls(**pipe.components, controlnet=…)`).
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) as DiffusionPipeline.fromPipeline, or for a bad `controlnet`.
   */
  static override fromPipeline<T>(this: PipelineClass<T>, pipe: DiffusionPipeline, options?: { controlnet: ControlNetModel | ControlNetModel[] }): T {
    const nets = controlnetList(options?.controlnet, `${this.name}.fromPipeline`);
    const out = (DiffusionPipeline.fromPipeline as (this: PipelineClass<T>, p: DiffusionPipeline) => T).call(this, pipe);
    (out as unknown as ControlNetPipelineBase).setControlNets(nets);
    return out;
  }

  /**
   * Replaces the ControlNets (diffusers `pipe.controlnet = …`).
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for an SD ControlNet on an SDXL model or the reverse.
   */
  setControlNets(controlnet: ControlNetModel | ControlNetModel[]): this {
    const nets = controlnetList(controlnet, `${this.constructor.name}.setControlNets`);
    const xl = this.model.xl;
    nets.forEach((c, k) => {
      const info = c.info;
      if (info.sdxl !== xl) {
        throw new InvalidArgumentError(`controlnet ${k} (${c.path}) is ${info.sdxl ? 'an SDXL' : 'an SD 1.x/2.x'} ControlNet but the model is ` +
          `${xl ? 'SDXL' : 'SD 1.x/2.x'}; its residuals cannot be added to this UNet`);
      }
    });
    this.controlnet = nets;
    return this;
  }

  /** @internal One call: the control options split off and checked, then the plain pipeline's call with the control units. */
  protected generateControlled(options: unknown): Promise<GenerateResult> {
    this.checkAlive('generate');
    const nets = this.controlnet;
    if (nets.length === 0) {
      return Promise.reject(new InvalidArgumentError(`${this.constructor.name} has no ControlNet: load it with { controlnet } or call setControlNets`));
    }
    let parsed: { base: Record<string, unknown>; control: ResolvedControlOptions };
    try {
      parsed = parseControlNetOptions(options, this.controlMode, nets.length);
    } catch (e) {
      return Promise.reject(e);
    }
    const { base, control } = parsed;
    const run = async (): Promise<GenerateResult> => {
      // txt2img: height / width default to the (first) control image's size, rounded down to a multiple of 8
      if ((this.baseMode === 'txt2img' || this.baseMode === 'xl') && (base.height === undefined || base.width === undefined)) {
        const first = await loadInputImage(control.images[0]).catch((e) => {
          throw new InvalidArgumentError(`control image 0: ${(e as Error).message}`, { cause: e });
        });
        base.height ??= first.height;
        base.width ??= first.width;
      }
      const handles = nets.map((c) => c.nativeHandle());
      const prepare = async (o: ResolvedGenerateOptions): Promise<CallInputs['control']> => ({
        guessMode: control.guessMode,
        controlnets: await Promise.all(control.images.map(async (img, k) => {
          const d = await loadInputImage(img, o.width, o.height).catch((e) => {
            throw new InvalidArgumentError(`control image ${k}: ${(e as Error).message}`, { cause: e });
          });
          return {
            controlnet: handles[k],
            image: { data: new Uint8Array(d.data.buffer, d.data.byteOffset, d.data.byteLength), shape: [d.height, d.width, 3] },
            scale: control.scales[k], start: control.starts[k], end: control.ends[k],
          };
        })),
      });
      const result = await this.generateWith(base, this.baseMode, prepare);
      for (const image of result.images) {
        image.parameters.controlnets = nets.map((c, k) => ({
          model: c.path, weight: control.scales[k], guidanceStart: control.starts[k], guidanceEnd: control.ends[k],
          guessMode: control.guessMode,
        }));
      }
      return result;
    };
    return run();
  }
}

/**
 * Text-to-image with ControlNet(s), diffusers' `StableDiffusionControlNetPipeline` (SD 1.x / 2.x).
 * @example
 * const controlnet = await ControlNetModel.fromPretrained('./sd-controlnet-canny');
 * const pipe = await StableDiffusionControlNetPipeline.fromPretrained('./sd-v1-5', { controlnet });
 * const { images } = await pipe.generate({ prompt: 'a house', image: 'edges.png', seed: 1 });
 */
export class StableDiffusionControlNetPipeline extends ControlNetPipelineBase {
  protected readonly controlMode = 'txt2img' as const;
  protected readonly baseMode = 'txt2img' as const;

  /**
   * Generates images steered by the control image(s).
   * @param options - as StableDiffusionPipeline.generate, plus `image` (the control image, or one per
   *   ControlNet; scaled to [0, 1], resized with lanczos to width×height; height/width default to its
   *   size), `controlnetConditioningScale` (number or one per net, default 1.0), `guessMode` (default
   *   false: diffusers' logarithmic per-block scales, cond half only), `controlGuidanceStart` /
   *   `controlGuidanceEnd` (fractions of the steps run, numbers or one per net, default 0 / 1).
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`): a count of images or of list entries that is
   *   not the number of ControlNets, start ≥ end, a ControlNet that does not fit the UNet, bad options.
   * @throws the other errors of StableDiffusionPipeline.generate.
   */
  generate(options: ControlNetOptions): Promise<GenerateResult> {
    return this.generateControlled(options);
  }
}
