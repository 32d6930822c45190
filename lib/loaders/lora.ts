/**
 * LoRA adapters for the Stable Diffusion pipelines, after diffusers v0.30.3
 * `StableDiffusionLoraLoaderMixin` / `StableDiffusionXLLoraLoaderMixin` (loaders/lora_pipeline.py):
 * load_lora_weights, set_adapters, fuse_lora, unfuse_lora, unload_lora_weights, plus
 * AUTOMATIC1111's `<lora:name:weight>` prompt tags. The native side (native/core/loaders/lora.cc,
 * native/core/nn/lora.cc) maps keys, checks shapes and applies the adapters.
 */
import path from 'node:path';
import { addon } from '../native.js';
import { BadCheckpointError, InvalidArgumentError, ModelNotFoundError, native, statRefusingSpecial } from '../errors.js';
import { describeValue as describe } from '../options.js';
import type { PipelineHandle } from '../../types/native.js';

/** Options of `loadLoraWeights`. */
export interface LoadLoraOptions {
  /** Adapter name (default `default_<n>`, as diffusers). */
  adapterName?: string;
  /** set_adapters weight of this adapter (default 1). */
  weight?: number;
}

/** What `loadLoraWeights` did. */
export interface LoraLoadResult {
  adapter: string;
  /** UNet Linear/Conv2d modules that received the adapter. */
  unetModules: number;
  /** Text-encoder Linear modules that received the adapter (`text_encoder`; kohya `lora_te_` / `lora_te1_`). */
  textEncoderModules: number;
  /** SDXL `text_encoder_2` Linear modules that received the adapter (kohya `lora_te2_`); 0 for SD 1.x/2.x. */
  textEncoder2Modules: number;
}

/** Validates `loadLoraWeights` arguments (`file` as given: a path, or a Hub file resolved later). */
export function checkLoraArgs(file: unknown, options: unknown): { file: string; adapterName?: string; weight: number } {
  if (typeof file !== 'string' || file.length === 0) {
    throw new InvalidArgumentError(`loadLoraWeights: path must be a non-empty string; received ${describe(file)}`);
  }
  const o = (options ?? {}) as Record<string, unknown>;
  if (typeof o !== 'object' || Array.isArray(o)) throw new InvalidArgumentError('loadLoraWeights: options must be an object');
  for (const k of Object.keys(o)) {
    if (k !== 'adapterName' && k !== 'weight') throw new InvalidArgumentError(`loadLoraWeights: unknown option ${describe(k)}`);
  }
  if (o.adapterName !== undefined && (typeof o.adapterName !== 'string' || o.adapterName.length === 0)) {
    throw new InvalidArgumentError(`loadLoraWeights: adapterName must be a non-empty string; received ${describe(o.adapterName)}`);
  }
  if (o.weight !== undefined && (typeof o.weight !== 'number' || !Number.isFinite(o.weight))) {
    throw new InvalidArgumentError(`loadLoraWeights: weight must be a finite number; received ${describe(o.weight)}`);
  }
  return { file, adapterName: o.adapterName as string | undefined, weight: (o.weight as number | undefined) ?? 1 };
}

/** Loads a LoRA into a native pipeline (errors as SdError). */
export async function loadLora(handle: PipelineHandle, file: string, adapterName: string | undefined, weight: number): Promise<LoraLoadResult> {
  const st = await statRefusingSpecial(file, (kind) => new BadCheckpointError(`LoRA file ${file} is ${kind}, not a regular file; refusing to open it`));
  if (!st || !st.isFile()) throw new ModelNotFoundError(`LoRA file not found: ${file}`);
  return native(() => addon().loadLora(handle, file, { adapterName, weight }));
}


/** A `<lora:name:weight>` tag found in a prompt. */
export interface LoraTag { name: string; weight: number }

const LORA_TAG = /<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>/g;

/**
 * Removes AUTOMATIC1111 `<lora:name:weight>` tags (weight default 1) from a prompt.
 * @returns the prompt without tags, and the tags in order (a name given twice keeps its last weight).
 */
export function extractLoraTags(prompt: string): { prompt: string; tags: LoraTag[] } {
  const tags = new Map<string, number>();
  const out = prompt.replace(LORA_TAG, (_m, name: string, w: string | undefined) => {
    const weight = w === undefined || w.trim() === '' ? 1 : Number(w);
    if (!Number.isFinite(weight)) throw new InvalidArgumentError(`prompt tag <lora:${name}:${w}> has a weight that is not a number`);
    tags.set(name.trim(), weight);
    return '';
  });
  return { prompt: out, tags: [...tags].map(([name, weight]) => ({ name, weight })) };
}

// ---------------------------------------------------------------------------------------------
// Adapter bookkeeping (mirrors the native state so a call's <lora:…> tags can be undone)
// ---------------------------------------------------------------------------------------------

type AdapterMap = Map<string, { weight: number; active: boolean }>;
const adapterStates = new WeakMap<object, AdapterMap>();

/** The adapters of one native model (keyed by the shared model object). */
export function adapterState(model: object): AdapterMap {
  let s = adapterStates.get(model);
  if (!s) { s = new Map(); adapterStates.set(model, s); }
  return s;
}

/** Records `setAdapters(names, weights)`. */
export function recordSetAdapters(model: object, names: string[], weights: number[]): void {
  const s = adapterState(model);
  for (const [k, v] of s) {
    const i = names.indexOf(k);
    s.set(k, i >= 0 ? { weight: weights[i], active: true } : { ...v, active: false });
  }
}

/**
 * Runs `job` with the `<lora:name:weight>` tags of `prompts` applied: each tag's adapter (the file
 * `<loraDir>/<name>.safetensors`, loaded once and kept under the adapter name `name`) is active
 * with its weight and no other adapter is, for this call only; the tags are removed from the
 * prompts `job` receives. Without tags, `job` runs on the prompts unchanged.
 */
export async function withLoraTags<T>(
  handle: PipelineHandle, model: object, loraDir: string, prompts: string[], job: (prompts: string[]) => Promise<T>,
): Promise<T> {
  const all = new Map<string, number>();
  const stripped = prompts.map((p) => {
    const r = extractLoraTags(p);
    for (const t of r.tags) all.set(t.name, t.weight);
    return r.prompt;
  });
  if (all.size === 0) return job(prompts);
  const state = adapterState(model);
  for (const name of all.keys()) {
    if (state.has(name)) continue;
    if (/[\\/]|^\.\.?$/.test(name)) throw new InvalidArgumentError(`<lora:${name}>: a LoRA name must be a file name in loraDir, not a path`);
    const file = path.resolve(loraDir, `${name}.safetensors`);
    await loadLora(handle, file, name, 1);
    state.set(name, { weight: 1, active: false });
  }
  const previous = [...state].filter(([, v]) => v.active);
  await native(() => addon().setLoraAdapters(handle, [...all.keys()], [...all.values()]));
  try {
    return await job(stripped);
  } finally {
    await native(() => addon().setLoraAdapters(handle, previous.map(([k]) => k), previous.map(([, v]) => v.weight)));
  }
}
