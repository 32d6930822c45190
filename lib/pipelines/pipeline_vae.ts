/**
 * The VAE a pipeline decodes with and its preview decoder: diffusers' `vae=` component at load and
 * `pipe.vae = …` afterwards (pipeline_utils.py), with an AutoencoderKL or an AutoencoderTiny
 * (TAESD, autoencoder_tiny.py). The swap itself is native (native/core/pipelines/pipeline_vae.cc);
 * here: resolving folders, the checks that give clear errors before any native work, and the
 * ordering with the model's call queue (a swap applies to calls made after it).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { addon } from '../native.js';
import {
  InvalidArgumentError, ModelNotFoundError, describeValue, native, nativeSync,
} from '../errors.js';
import { AutoencoderKL } from '../autoencoder_kl.js';
import { AutoencoderTiny } from '../autoencoder_tiny.js';
import type { NativeModel, PipelineInfo } from './native_model.js';

type AnyVae = AutoencoderKL | AutoencoderTiny;

/** config.json `_class_name` of a VAE folder (undefined when it has none). */
async function vaeClassName(dir: string): Promise<string | undefined> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new ModelNotFoundError(`VAE folder ${dir} has no config.json`);
  }
  try {
    const j = JSON.parse(text) as { _class_name?: unknown };
    return typeof j._class_name === 'string' ? j._class_name : undefined;
  } catch (e) {
    throw new InvalidArgumentError(`${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * @internal A VAE given as an object (returned as is) or as a diffusers folder, loaded on the
 * pipeline's device and dtype (an AutoencoderKL with force_upcast stays float32 under float16, as
 * the pipeline's own VAE does). `_class_name` "AutoencoderTiny" → AutoencoderTiny, else AutoencoderKL.
 */
export async function resolveVae(v: AnyVae | string, info: PipelineInfo, what: string): Promise<AnyVae> {
  if (typeof v !== 'string') return v;
  const st = await stat(v).catch(() => undefined);
  if (!st) throw new ModelNotFoundError(`${what}: VAE folder not found: ${v}`);
  const dtype = info.dtype as 'float32' | 'float16' | 'bfloat16';
  if (!st.isDirectory()) {
    // a standalone original-layout VAE file: the configs are the pipeline's own vae/ folder's
    // (the model's config root holds tokenizer/ and vae/)
    const configDir = path.join(path.dirname(info.tokenizerDirs[0]), 'vae');
    const kl = await AutoencoderKL.fromSingleFile(v, { configDir, device: info.device, dtype });
    if (dtype === 'float16' && kl.forceUpcast) {
      kl.dispose();
      return AutoencoderKL.fromSingleFile(v, { configDir, device: info.device, dtype: 'float32' });
    }
    return kl;
  }
  if (await vaeClassName(v) === 'AutoencoderTiny') return AutoencoderTiny.fromPretrained(v, { device: info.device, dtype });
  const kl = await AutoencoderKL.fromPretrained(v, { device: info.device, dtype });
  if (dtype === 'float16' && kl.forceUpcast) {
    kl.dispose();
    return AutoencoderKL.fromPretrained(v, { device: info.device, dtype: 'float32' });
  }
  return kl;
}

/** @internal The preview decoder given as an AutoencoderTiny or a folder. */
export async function resolvePreviewDecoder(v: AutoencoderTiny | string, info: PipelineInfo): Promise<AutoencoderTiny> {
  const vae = await resolveVae(v, info, 'previewDecoder');
  if (!(vae instanceof AutoencoderTiny)) {
    throw new InvalidArgumentError(`previewDecoder must be an AutoencoderTiny (TAESD); ${describeValue(v)} is an AutoencoderKL folder`);
  }
  return vae;
}

/** @internal The model's own AutoencoderKL (wrapped once). */
export function ownVae(model: NativeModel): AutoencoderKL {
  model.ownVae ??= AutoencoderKL.fromNativeHandle(nativeSync(() => addon().pipelineVae(model.handle)).own);
  return model.ownVae;
}

function vaeFacts(v: AnyVae): { device: string; latentChannels: number; vaeScaleFactor: number } {
  const i = v.info;
  return { device: i.device, latentChannels: i.latentChannels, vaeScaleFactor: i.vaeScaleFactor };
}

function checkFits(model: NativeModel, v: AnyVae, what: string): void {
  const cls = v instanceof AutoencoderTiny ? 'AutoencoderTiny' : 'AutoencoderKL';
  const f = vaeFacts(v);
  if (f.device !== model.info.device) {
    throw new InvalidArgumentError(`${what} (${cls}) is on ${f.device} but the pipeline runs on ${model.info.device}; load it with { device: '${model.info.device}' }`);
  }
  const own = vaeFacts(ownVae(model)).latentChannels;
  if (f.latentChannels !== own) {
    throw new InvalidArgumentError(
      `${what} (${cls}) has ${f.latentChannels} latent channels but this ${model.info.family} pipeline's latents have ${own} ` +
      '(latent-channel mismatch: a VAE for another model family?)');
  }
}

/**
 * @internal diffusers `pipe.vae = vae` (undefined/null: the model's own): checked now (device,
 * latent channels, CPU offload), applied natively in queue order (calls made before it keep the
 * VAE they were made with); the pipeline's VAE scale factor and default size follow the new VAE.
 * @returns the queued swap (rejects only for what the native side alone can see)
 */
export function swapVae(model: NativeModel, v: AnyVae | null | undefined): Promise<void> {
  if (v !== null && v !== undefined && !(v instanceof AutoencoderKL) && !(v instanceof AutoencoderTiny)) {
    throw new InvalidArgumentError(`vae must be an AutoencoderKL, an AutoencoderTiny or null (the model's own); received ${describeValue(v)}`);
  }
  const target = v === ownVae(model) ? undefined : v ?? undefined;
  if (target) checkFits(model, target, 'vae');
  if (target && model.optimizations.offload !== '') {
    throw new InvalidArgumentError('vae cannot be swapped while CPU offload is enabled; call disableCpuOffload() first');
  }
  const handle = target ? target.nativeHandle() : null; // DisposedError for a disposed VAE, now
  model.vae = target;
  const f = vaeFacts(target ?? ownVae(model)).vaeScaleFactor;
  model.info.vaeScaleFactor = f;
  model.info.defaultWidth = model.info.defaultHeight = model.info.sampleSize * f;
  return model.enqueue(() => native(() => addon().pipelineSetVae(model.handle, handle)));
}

/** @internal The AutoencoderTiny 'taesd' previews decode with (null removes it); queued as swapVae. */
export function swapPreviewDecoder(model: NativeModel, v: AutoencoderTiny | null | undefined): Promise<void> {
  if (v !== null && v !== undefined && !(v instanceof AutoencoderTiny)) {
    throw new InvalidArgumentError(`the preview decoder must be an AutoencoderTiny or null; received ${describeValue(v)}`);
  }
  if (v) checkFits(model, v, 'previewDecoder');
  const handle = v ? v.nativeHandle() : null;
  model.previewDecoder = v ?? undefined;
  return model.enqueue(() => native(() => addon().pipelineSetPreviewDecoder(model.handle, handle)));
}
