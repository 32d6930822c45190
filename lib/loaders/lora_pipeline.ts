/**
 * The loader methods of the Stable Diffusion pipelines, diffusers' `StableDiffusionLoraLoaderMixin`
 * / `StableDiffusionXLLoraLoaderMixin` (loaders/lora_pipeline.py) and `TextualInversionLoaderMixin`
 * (loaders/textual_inversion.py), as a base class between {@link DiffusionPipeline} and the
 * concrete pipelines. Each method is queued behind earlier calls and acts on the shared native model.
 */
import path from 'node:path';
import { addon } from '../native.js';
import { InvalidArgumentError, describeValue, native } from '../errors.js';
import { DiffusionPipeline } from '../pipelines/pipeline_utils.js';
import type { CLIPTokenizer } from '../tokenizer.js';
import { adapterState, checkLoraArgs, loadLora, recordSetAdapters, type LoadLoraOptions, type LoraLoadResult } from './lora.js';
import { loadTextualInversion, type LoadTextualInversionOptions, type TextEncoderName } from './textual_inversion.js';
import { resolveFileLocation } from './hub.js';

/** {@link DiffusionPipeline} with LoRA and textual inversion. Not constructed directly. */
export abstract class LoaderPipeline extends DiffusionPipeline {
  /**
   * Loads a LoRA (`.safetensors`, kohya-ss / AUTOMATIC1111 `lora_unet_…`/`lora_te_…` keys — SDXL:
   * `lora_te1_…` for text_encoder and `lora_te2_…` for text_encoder_2 — or diffusers / PEFT
   * `unet.…lora.down.weight`, `text_encoder_2.…`, `lora_A`/`lora_B`, `lora_linear_layer` keys; Linear,
   * 1×1 and k×k conv LoRA) into the UNet and text encoder(s), unfused: each targeted layer computes
   * `base(x) + weight·loraScale·(alpha/rank)·up(down(x))` (alpha missing ⇒ alpha = rank), so the base
   * weights are untouched and `generate({ loraScale })` changes the strength per call. diffusers:
   * `pipe.load_lora_weights(path, adapter_name=…)`. Queued behind earlier calls; shared by
   * pipelines made with `fromPipeline`.
   * @param file - the LoRA `.safetensors` file, or a Hub file `org/name[@revision]/path.safetensors` (or its
   *   huggingface.co URL), downloaded into the huggingface_hub cache while earlier calls run
   * @param options - `adapterName` (default `default_<n>`), `weight` (set_adapters weight, default 1)
   * @returns the adapter name and the number of modules it targets per model
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) listing keys that match no module of this model
   *   (e.g. `lora_te2_` keys on an SD 1.x model), or naming a key and both shapes when a LoRA does not
   *   fit (made for another model family); nothing is loaded then.
   * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) when the file does not exist.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a taken adapter name or while a LoRA is fused.
   * @example await pipe.loadLoraWeights('./loras/pixel-art.safetensors', { adapterName: 'pixel', weight: 0.8 });
   */
  loadLoraWeights(file: string, options?: LoadLoraOptions): Promise<LoraLoadResult> {
    this.checkAlive('loadLoraWeights');
    const a = checkLoraArgs(file, options);
    // a Hub file (org/name/file.safetensors) downloads while earlier calls run
    const local = resolveFileLocation(a.file).then((f) => path.resolve(f));
    local.catch(() => undefined); // observed in the job
    return this.model.enqueue(async () => {
      const r = await loadLora(this.model.handle, await local, a.adapterName, a.weight);
      adapterState(this.model).set(r.adapter, { weight: a.weight, active: true });
      return r;
    });
  }

  /**
   * diffusers `set_adapters(names, weights)`: only the named adapters stay active, each with its weight.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for an unknown name, mismatched lengths or while fused.
   */
  setAdapters(names: string | string[], weights?: number | number[]): Promise<void> {
    this.checkAlive('setAdapters');
    const n = typeof names === 'string' ? [names] : names;
    const w = weights === undefined ? n.map(() => 1) : typeof weights === 'number' ? n.map(() => weights) : weights;
    if (!Array.isArray(n) || !n.every((x) => typeof x === 'string') || !Array.isArray(w) || !w.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new InvalidArgumentError('setAdapters(names, weights): names must be strings and weights finite numbers');
    }
    if (n.length !== w.length) throw new InvalidArgumentError(`setAdapters: ${n.length} names but ${w.length} weights`);
    return this.model.enqueue(async () => {
      await native(() => addon().setLoraAdapters(this.model.handle, n, w));
      recordSetAdapters(this.model, n, w);
    });
  }

  /** Names of the loaded LoRA adapters, in load order. */
  getAdapters(): Promise<string[]> {
    this.checkAlive('getAdapters');
    return this.model.enqueue(() => native(() => addon().loraAdapters(this.model.handle)));
  }

  /**
   * diffusers `fuse_lora(lora_scale)`: merges the active adapters into the weights,
   * `W += loraScale·weight·(alpha/rank)·(up @ down)` (the base weights are kept for {@link unfuseLora}).
   * @returns the number of layers fused
   */
  fuseLora(options: { loraScale?: number } = {}): Promise<number> {
    this.checkAlive('fuseLora');
    const s = options.loraScale ?? 1;
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new InvalidArgumentError(`fuseLora: loraScale must be a finite number; received ${describeValue(s)}`);
    return this.model.enqueue(() => native(() => addon().fuseLora(this.model.handle, s)));
  }

  /** diffusers `unfuse_lora()`: restores the exact base weights of fused layers. @returns layers restored */
  unfuseLora(): Promise<number> {
    this.checkAlive('unfuseLora');
    return this.model.enqueue(() => native(() => addon().unfuseLora(this.model.handle)));
  }

  /**
   * diffusers `unload_lora_weights()` (every adapter) or `delete_adapters(name)`: removes adapters
   * (unfusing first); the pipeline then computes exactly as before loading.
   */
  unloadLoraWeights(adapterName?: string): Promise<void> {
    this.checkAlive('unloadLoraWeights');
    if (adapterName !== undefined && typeof adapterName !== 'string') {
      throw new InvalidArgumentError(`unloadLoraWeights: adapterName must be a string; received ${describeValue(adapterName)}`);
    }
    return this.model.enqueue(async () => {
      await native(() => addon().unloadLora(this.model.handle, adapterName));
      if (adapterName === undefined) adapterState(this.model).clear(); else adapterState(this.model).delete(adapterName);
    });
  }

  /**
   * diffusers `load_textual_inversion(path, token=…)`: an embedding file of n vectors adds the
   * tokens `token`, `token_1` … `token_{n−1}` to the tokenizer and their vectors to the text
   * encoder; prompts are rewritten so `token` stands for all n (maybe_convert_prompt).
   * The file is a local `.safetensors` or a Hub file `org/name[@revision]/path.safetensors` (or its URL).
   * Files: AUTOMATIC1111 (`emb_params`; token defaults to the file name), diffusers
   * (`{"<token>": [n, D]}`; token defaults to the key) and, for SDXL, AUTOMATIC1111 / kohya files with
   * `clip_l` [n, D1] and `clip_g` [n, D2] (both text encoders and both tokenizers get the tokens; the
   * token defaults to the file name). On SDXL a one-set file goes to `options.textEncoder`
   * (default 'text_encoder', as diffusers' default).
   * @returns the tokens added
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) when the vectors' width is not the text encoder's hidden size, the file is no
   *   embedding, or an SDXL (`clip_l`/`clip_g`) file meets a one-encoder pipeline.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when the token is already known.
   * @example await pipe.loadTextualInversion('./embeddings/my-style.safetensors', { token: '<my-style>' });
   */
  loadTextualInversion(file: string, options?: LoadTextualInversionOptions): Promise<string[]> {
    this.checkAlive('loadTextualInversion');
    return this.model.enqueue(() => loadTextualInversion(this.model.handle, this.textEncoders(), file, options));
  }

  /** @internal The text encoders (diffusers component names) with their tokenizers. */
  private textEncoders(): Array<{ tok: CLIPTokenizer; component: TextEncoderName }> {
    const { info, tokenizers } = this.model;
    if (info.family !== 'sdxl') return [{ tok: tokenizers[0], component: 'text_encoder' }];
    // SDXL: tokenizer → text_encoder, tokenizer_2 → text_encoder_2; a refiner has only the second pair
    return tokenizers.length > 1
      ? [{ tok: tokenizers[0], component: 'text_encoder' }, { tok: tokenizers[1], component: 'text_encoder_2' }]
      : [{ tok: tokenizers[0], component: 'text_encoder_2' }];
  }

}
