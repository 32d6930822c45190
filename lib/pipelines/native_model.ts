/**
 * The native side of a pipeline: one native handle (StableDiffusionPipeline or
 * StableDiffusionXLPipeline), its tokenizers, its call queue and its speed/memory toggles,
 * reference-counted so that pipelines made with `fromPipeline` share the weights (diffusers:
 * `Cls(**pipe.components)`).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { addon } from '../native.js';
import {
  BadCheckpointError, BadConfigError, InvalidArgumentError, ModelNotFoundError, native, nativeSync, toSdError,
} from '../errors.js';
import { describeValue, parseLoadOptions, type LoadOptions } from '../options.js';
import { CLIPTokenizer } from '../tokenizer.js';
import { hubOptionsOf, parseHubId, resolveConfigDir, resolveFileLocation, resolvePipelineLocation } from '../loaders/hub.js';
import { AutoencoderKL } from '../autoencoder_kl.js';
import { AutoencoderTiny } from '../autoencoder_tiny.js';
import { resolveVae, resolvePreviewDecoder, swapVae, swapPreviewDecoder } from './pipeline_vae.js';
import type { NativeOptimizations, NativePipelineInfo, PipelineHandle } from '../../types/native.js';

/** What a loaded pipeline is made of (from the native loader). */
export interface PipelineInfo extends NativePipelineInfo {
  /** Default image width in pixels: `sampleSize × vaeScaleFactor` (512 for SD 1.5, 768 for SD 2.1-v, 1024 for SDXL). */
  defaultWidth: number;
  /** Default image height in pixels (as `defaultWidth`). */
  defaultHeight: number;
}

/** The toggles of a freshly loaded pipeline (diffusers' defaults; attention 'auto'). */
export const DEFAULT_OPTIMIZATIONS: Readonly<NativeOptimizations> = Object.freeze({
  sliceSize: 0, sdpa: 'auto', vaeSlicing: false, vaeTiling: false, channelsLast: false, fp8: '', offload: '', cudaGraphs: false,
});

/** @internal One native pipeline handle (SD or SDXL), its call queue and references. */
export class NativeModel {
  private refs = 1;
  private tail: Promise<unknown> = Promise.resolve();
  private released = false;
  /** Calls accepted and not finished. */
  pending = 0;
  /** The speed/memory toggles (shared by pipelines sharing this model); snapshotted per call. */
  optimizations: NativeOptimizations = { ...DEFAULT_OPTIMIZATIONS };
  /** The VAE set with `pipe.vae = …` (undefined: the model's own), as the native side will have it once queued work ran. */
  vae: AutoencoderKL | AutoencoderTiny | undefined;
  /** The model's own AutoencoderKL, wrapped on first use of `pipe.vae`. */
  ownVae: AutoencoderKL | undefined;
  /** The AutoencoderTiny 'taesd' previews decode with. */
  previewDecoder: AutoencoderTiny | undefined;

  constructor(
    readonly handle: PipelineHandle,
    readonly info: PipelineInfo,
    readonly tokenizers: CLIPTokenizer[],
    /** A StableDiffusionXLPipeline handle (two text encoders, add_time_ids). */
    readonly xl: boolean,
  ) {}

  /** Runs `job` after every call queued before it; a failed call does not break the queue. */
  enqueue<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    const run = this.tail.then(job).finally(() => { this.pending--; });
    this.tail = run.catch(() => undefined);
    return run;
  }

  acquire(): this {
    this.refs++;
    return this;
  }

  /** Drops one reference; the last one frees the native pipeline once queued calls finished. */
  release(): Promise<void> {
    if (--this.refs > 0 || this.released) return Promise.resolve();
    this.released = true;
    const done = this.tail.then(() => nativeSync(() => addon().disposePipeline(this.handle)));
    this.tail = done.catch(() => undefined);
    return done;
  }
}

const PICKLE_EXTENSIONS = new Set(['.ckpt', '.bin', '.pt', '.pth', '.pkl']);

/**
 * @internal Loads a pipeline handle and its tokenizers.
 * @param location - a diffusers folder or a Hub id (`org/name[@revision]`, downloaded unless a local
 *   path of that name exists; see lib/loaders/hub.ts), or with `singleFile` an original-layout `.safetensors` file
 * @param xl - load the StableDiffusionXLPipeline (else StableDiffusionPipeline)
 * @throws the errors of `StableDiffusionPipeline.fromPretrained` / `fromSingleFile`
 */
export async function loadModel(
  location: string, options: LoadOptions | undefined, singleFile: boolean, xl: boolean,
): Promise<NativeModel> {
  // 1. arguments
  const what = singleFile ? 'file' : 'dir';
  if (typeof location !== 'string' || location.length === 0) {
    throw new InvalidArgumentError(`${what} must be a non-empty path; received ${describeValue(location)}`);
  }
  const o = parseLoadOptions(options);
  if (!singleFile && o.configDir !== undefined) {
    throw new InvalidArgumentError(`configDir is for single-file checkpoints (fromSingleFile); received ${describeValue(o.configDir)}`);
  }

  // 2. a Hub id (org/name[@revision]) that is not a local path: download what the pipeline needs
  //    (fromSingleFile: a Hub file, org/name[@revision]/file.safetensors or its URL)
  const hub = hubOptionsOf(o);
  location = singleFile ? await resolveFileLocation(location, { ...hub, variant: undefined }) : await resolvePipelineLocation(location, hub);
  const configDir = o.configDir === undefined ? undefined : await resolveConfigDir(o.configDir, hub); // a Hub id: configs only

  // 3. cheap checks that give clearer errors than the native loader could
  const st = await stat(location).catch(() => undefined);
  if (!st) {
    // a path that is no Hub id either: say what an id looks like (diffusers' from_pretrained takes both)
    const hint = !singleFile && !parseHubId(location)
      ? ' (a Hugging Face Hub model is loaded by its id, org/name[@revision], e.g. stable-diffusion-v1-5/stable-diffusion-v1-5)' : '';
    throw new ModelNotFoundError(`model ${singleFile ? 'file' : 'folder'} not found: ${location}${hint}`);
  }
  if (singleFile) {
    if (st.isDirectory()) {
      throw new InvalidArgumentError(`${location} is a folder; use StableDiffusionPipeline.fromPretrained for diffusers folders`);
    }
    if (PICKLE_EXTENSIONS.has(path.extname(location).toLowerCase())) {
      throw new BadCheckpointError(
        `${location}: pickle checkpoints (.ckpt/.bin/.pt) are refused because loading them can run code; convert it to .safetensors`);
    }
  } else if (!st.isDirectory()) {
    throw new InvalidArgumentError(`${location} is a file; use fromSingleFile for single-file checkpoints`);
  }

  // 4. native load, then tokenizers
  const a = addon();
  const handle = await native(() => a.loadPipeline(path.resolve(location), {
    device: o.device, dtype: o.dtype, variant: o.variant, singleFile,
    configDir: configDir === undefined ? undefined : path.resolve(configDir), threads: o.threads, xl,
  }));
  try {
    const raw = nativeSync(() => a.pipelineInfo(handle));
    const info: PipelineInfo = {
      ...raw,
      defaultWidth: raw.sampleSize * raw.vaeScaleFactor,
      defaultHeight: raw.sampleSize * raw.vaeScaleFactor,
    };
    if (info.tokenizerDirs.length === 0) {
      throw new BadConfigError(`${location}: the model has no tokenizer folder${singleFile ? ' (pass configDir: a diffusers folder of the same family)' : ''}`);
    }
    const tokenizers = await Promise.all(info.tokenizerDirs.map((d) => CLIPTokenizer.fromPretrained(d)));
    const model = new NativeModel(handle, info, tokenizers, xl);
    // 5. components given at load (diffusers' from_pretrained(..., vae=...)): the VAE, the preview decoder
    if (o.vae !== undefined) await swapVae(model, await resolveVae(o.vae, info, 'vae'));
    if (o.previewDecoder !== undefined) await swapPreviewDecoder(model, await resolvePreviewDecoder(o.previewDecoder, info));
    return model;
  } catch (e) {
    try { a.disposePipeline(handle); } catch { /* already failing */ }
    throw toSdError(e);
  }
}
