/**
 * Textual inversion for the Stable Diffusion pipelines, after diffusers v0.30.3
 * `TextualInversionLoaderMixin` (loaders/textual_inversion.py: load_textual_inversion,
 * maybe_convert_prompt): reads embedding files (AUTOMATIC1111, diffusers, SDXL clip_l/clip_g),
 * extends the tokenizer(s) and hands the vectors to the native text encoder(s).
 */
import path from 'node:path';
import { addon } from '../native.js';
import { BadCheckpointError, InvalidArgumentError, ModelNotFoundError, native, statRefusingSpecial } from '../errors.js';
import { describeValue as describe } from '../options.js';
import { readSafetensors } from '../safetensors.js';
import { resolveFileLocation } from './hub.js';
import type { CLIPTokenizer } from '../tokenizer.js';
import type { PipelineHandle, TensorData } from '../../types/native.js';

/** The text encoders of a pipeline, by diffusers' component name. */
export type TextEncoderName = 'text_encoder' | 'text_encoder_2';

/** Options of `loadTextualInversion`. */
export interface LoadTextualInversionOptions {
  /**
   * The token the embedding is called by in prompts. Default: the file's key for diffusers files
   * (`{"<token>": tensor}`), the file name without extension for A1111 files (`emb_params`,
   * `string_to_param.*`), as AUTOMATIC1111 does.
   */
  token?: string;
  /**
   * SDXL, for files with one set of vectors: the text encoder (and its tokenizer) that receives them,
   * as diffusers' `load_textual_inversion(..., text_encoder=…, tokenizer=…)`. Default 'text_encoder'
   * (the pipeline's first encoder, as diffusers). SDXL files with `clip_l` and `clip_g` (AUTOMATIC1111 /
   * kohya) fill both encoders and need no option.
   */
  textEncoder?: TextEncoderName;
}


/** Tokenizers that have textual-inversion tokens (prompts are rewritten only for those). */
const tiTokenizers = new WeakSet<CLIPTokenizer>();

function isTiToken(tok: CLIPTokenizer, s: string): boolean {
  const id = tok.tokenToId(s);
  return id !== undefined && id >= tok.vocabSize;
}

/**
 * diffusers' `maybe_convert_prompt`: each token `t` of the prompt that has added siblings
 * `t_1 … t_{n−1}` is replaced (everywhere in the text) by `t t_1 … t_{n−1}`.
 */
export function maybeConvertPrompt(tok: CLIPTokenizer, prompt: string): string {
  if (!tiTokenizers.has(tok)) return prompt;
  for (const t of new Set(tok.tokenize(prompt))) {
    if (!isTiToken(tok, t)) continue;
    let replacement = t;
    for (let i = 1; isTiToken(tok, `${t}_${i}`); i++) replacement += ` ${t}_${i}`;
    if (replacement !== t) prompt = prompt.split(t).join(replacement);
  }
  return prompt;
}

interface EmbeddingFile {
  token: string;
  /** One set of vectors [n, D] (SD 1.x/2.x files, diffusers files). */
  vectors?: TensorData<Float32Array>;
  /** SDXL files (AUTOMATIC1111 / kohya): vectors for text_encoder (`clip_l`) and text_encoder_2 (`clip_g`). */
  clipL?: TensorData<Float32Array>;
  clipG?: TensorData<Float32Array>;
}

/** The vectors and default token of a textual-inversion file. */
async function readEmbedding(file: string): Promise<EmbeddingFile> {
  const st = await statRefusingSpecial(file, (kind) => new BadCheckpointError(`embedding file ${file} is ${kind}, not a regular file; refusing to open it`));
  if (!st || !st.isFile()) throw new ModelNotFoundError(`embedding file not found: ${file}`);
  if (path.extname(file).toLowerCase() !== '.safetensors') {
    throw new BadCheckpointError(`${file}: only .safetensors embeddings are read (pickle .pt/.bin files can run code)`);
  }
  const tensors = await readSafetensors(file);
  const keys = Object.keys(tensors);
  const stem = path.basename(file).replace(/\.safetensors$/i, '');
  const vectors = (key: string): TensorData<Float32Array> => {
    const t = tensors[key];
    if (!(t.data instanceof Float32Array) && !(t.data instanceof Float64Array)) {
      throw new BadCheckpointError(`${file}: embedding "${key}" must be float32 (got ${t.data?.constructor?.name})`);
    }
    const shape = t.shape.length === 1 ? [1, t.shape[0]] : t.shape;
    if (shape.length !== 2 || shape[0] < 1) {
      throw new BadCheckpointError(`${file}: embedding "${key}" has shape [${t.shape.join(', ')}]; expected [vectors, width]`);
    }
    return { data: Float32Array.from(t.data as Float32Array), shape };
  };
  if (keys.includes('clip_l') || keys.includes('clip_g')) {
    if (!keys.includes('clip_l') || !keys.includes('clip_g')) {
      throw new BadCheckpointError(`${file}: an SDXL embedding needs both "clip_l" and "clip_g" (keys: ${keys.join(', ')})`);
    }
    const clipL = vectors('clip_l'), clipG = vectors('clip_g');
    if (clipL.shape[0] !== clipG.shape[0]) {
      throw new BadCheckpointError(`${file}: "clip_l" has ${clipL.shape[0]} vectors but "clip_g" has ${clipG.shape[0]}`);
    }
    return { token: stem, clipL, clipG };
  }
  if (keys.includes('emb_params')) return { token: stem, vectors: vectors('emb_params') }; // AUTOMATIC1111 .safetensors
  if (keys.length === 1 && keys[0].startsWith('string_to_param.')) return { token: stem, vectors: vectors(keys[0]) }; // A1111 .pt layout flattened
  if (keys.length === 1) return { token: keys[0], vectors: vectors(keys[0]) }; // diffusers {"<token>": tensor}
  throw new BadCheckpointError(
    `${file}: not a textual-inversion embedding (keys: ${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ', …' : ''}; ` +
    'expected "emb_params", a single "<token>" key, or SDXL "clip_l" + "clip_g")');
}

/**
 * Loads a textual-inversion embedding: tokens `token`, `token_1`, … are added to the tokenizer(s)
 * and their vectors become the new rows of the text encoder(s)' token embedding.
 * @param encoders - the pipeline's text encoders with their tokenizers (SDXL: both)
 * @returns the tokens added
 */
export async function loadTextualInversion(
  handle: PipelineHandle, encoders: Array<{ tok: CLIPTokenizer; component: TextEncoderName }>, file: unknown, options: unknown,
): Promise<string[]> {
  if (typeof file !== 'string' || file.length === 0) {
    throw new InvalidArgumentError(`loadTextualInversion: path must be a non-empty string; received ${describe(file)}`);
  }
  const o = (options ?? {}) as { token?: unknown; textEncoder?: unknown };
  if (o.token !== undefined && (typeof o.token !== 'string' || o.token.length === 0)) {
    throw new InvalidArgumentError(`loadTextualInversion: token must be a non-empty string; received ${describe(o.token)}`);
  }
  if (o.textEncoder !== undefined && !encoders.some((e) => e.component === o.textEncoder)) {
    throw new InvalidArgumentError(`loadTextualInversion: textEncoder must be one of ${encoders.map((e) => `'${e.component}'`).join(', ')}; ` +
      `received ${describe(o.textEncoder)}`);
  }
  // a Hub file (org/name/file.safetensors) is downloaded into the huggingface_hub cache first
  const emb = await readEmbedding(path.resolve(await resolveFileLocation(file)));
  const byName = (c: TextEncoderName) => encoders.find((e) => e.component === c);
  let targets: Array<{ tok: CLIPTokenizer; component: TextEncoderName; vectors: TensorData<Float32Array> }>;
  if (emb.clipL && emb.clipG) {
    const te1 = byName('text_encoder'), te2 = byName('text_encoder_2');
    if (!te2) {
      throw new BadCheckpointError(`${file} is an SDXL embedding (clip_l + clip_g); this pipeline has one text encoder (SD 1.x/2.x)`);
    }
    if (o.textEncoder !== undefined) {
      throw new InvalidArgumentError('loadTextualInversion: textEncoder is for files with one set of vectors; this SDXL file fills both encoders');
    }
    targets = te1 ? [{ ...te1, vectors: emb.clipL }, { ...te2, vectors: emb.clipG }] : [{ ...te2, vectors: emb.clipG }];
  } else {
    const e = byName((o.textEncoder as TextEncoderName | undefined) ?? encoders[0].component)!;
    targets = [{ ...e, vectors: emb.vectors! }];
  }
  const token = (o.token as string | undefined) ?? emb.token;
  const n = targets[0].vectors.shape[0];
  const tokens = n === 1 ? [token] : [token, ...Array.from({ length: n - 1 }, (_, i) => `${token}_${i + 1}`)];
  for (const { tok } of targets) {
    for (const t of tokens) {
      if (tok.tokenToId(t) !== undefined) {
        throw new InvalidArgumentError(`loadTextualInversion: token ${describe(t)} is already in the tokenizer's vocabulary; pass another token`);
      }
    }
  }
  // Widths are checked natively before any tokenizer changes.
  for (const { tok, component, vectors } of targets) {
    await native(() => addon().setTokenEmbeddings(handle, tok.length, vectors, component));
  }
  for (const { tok } of targets) {
    const firstId = tok.length;
    const ids = tok.addTokens(tokens);
    ids.forEach((id, i) => {
      if (id !== firstId + i) throw new InvalidArgumentError(`loadTextualInversion: token ${describe(tokens[i])} got id ${id}, expected ${firstId + i}`);
    });
    tiTokenizers.add(tok);
  }
  return tokens;
}

// ---------------------------------------------------------------------------------------------
// A1111 <lora:name:weight> prompt tags
// ---------------------------------------------------------------------------------------------
