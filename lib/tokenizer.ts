/**
 * The CLIP byte-level BPE tokenizer, following transformers' slow `CLIPTokenizer`
 * (models/clip/tokenization_clip.py, v4.40) on its no-ftfy path, where text is cleaned by
 * BERT's `BasicTokenizer(strip_accents=False, do_split_on_punc=False)`
 * (models/bert/tokenization_bert.py), and the added-token handling of
 * `PreTrainedTokenizer.tokenize` (tokenization_utils.py: `Trie.split`, `_add_tokens`).
 *
 * Pipeline of one call: added/special tokens are cut out of the raw text literally (longest
 * match, case-sensitive) → each remaining piece is cleaned (control chars dropped, whitespace
 * → ' ', spaces around CJK ideographs, NFC, lower-case, whitespace collapsed) → split by the
 * CLIP regex → each word's UTF-8 bytes mapped to printable characters → BPE with a `</w>`
 * end-of-word marker → ids; then `<|startoftext|>` … `<|endoftext|>`, truncation and padding.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { BadConfigError, InvalidArgumentError, ModelNotFoundError, describeValue } from './errors.js';
import { parseTokenizerFilesOffThread, yieldToEventLoop } from './tokenizer_worker.js';
import {
  BYTE_ENCODER, BYTE_DECODER, utf8, basicClean, AddedTokenTrie, parseAddedToken, cleanUpTokenization, readRequired, readJsonObject, type AddedToken,
} from './tokenization_utils.js';

/** Options of {@link CLIPTokenizer.encode}. */
export interface TokenizeOptions {
  /**
   * `'max_length'` (default) pads with the pad token up to `maxLength`; `false` leaves the
   * sequence as long as it is. A sequence longer than `maxLength` is never padded.
   */
  padding?: 'max_length' | false;
  /** Target length including `<|startoftext|>` and `<|endoftext|>`; default `modelMaxLength` (77). Integer ≥ 2. */
  maxLength?: number;
  /**
   * `true` (default) keeps `<|startoftext|>`, the first `maxLength - 2` content tokens and
   * `<|endoftext|>` (transformers' `truncation=True`, right side); `false` keeps everything.
   */
  truncation?: boolean;
}

/** Options of {@link CLIPTokenizer.decode}. */
export interface DecodeOptions {
  /** Drop the special tokens (bos, eos, unk, pad, additional special tokens). Default `false`. */
  skipSpecialTokens?: boolean;
}


/** transformers' `model_max_length` sentinel for "not set" is 1e30; anything this large means unset. */
const UNSET_MAX_LENGTH = 2 ** 31;
/** `49152 - 256 - 2`: CLIPTokenizer reads at most this many merges. */
const MAX_MERGES = 49152 - 256 - 2;
/** Vocabulary entries / merges added to their Map between two yields to the event loop (≈ 1–2 ms of work). */
const LOAD_SLICE = 2048;
/** Entries kept in the BPE cache before it is cleared (transformers' is unbounded). */
const BPE_CACHE_LIMIT = 100_000;

const DEFAULT_SPECIAL = {
  unk_token: '<|endoftext|>',
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  pad_token: '<|endoftext|>',
} as const;
type SpecialKey = keyof typeof DEFAULT_SPECIAL;
/** transformers' SPECIAL_TOKENS_ATTRIBUTES order, which is also the order they are added in. */
const SPECIAL_ORDER: SpecialKey[] = ['bos_token', 'eos_token', 'unk_token', 'pad_token'];

/** The CLIP pre-tokenization regex (`regex` module with IGNORECASE). */
const CLIP_PATTERN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
export class CLIPTokenizer {
  /** Id of `<|startoftext|>` (49406 for CLIP). */
  readonly bosTokenId: number;
  /** Id of `<|endoftext|>` (49407 for CLIP). */
  readonly eosTokenId: number;
  /** Id of the padding token: 49407 (`<|endoftext|>`) for SD 1.x, 0 (`!`) for SD 2.x and SDXL's `tokenizer_2`. */
  readonly padTokenId: number;
  /** Id given to a BPE token missing from the vocabulary (`<|endoftext|>` for CLIP). */
  readonly unkTokenId: number;
  /** `model_max_length` of tokenizer_config.json (77 when absent): the default `maxLength` of {@link encode}. */
  readonly modelMaxLength: number;
  /** The special tokens' text: `bos`, `eos`, `unk`, `pad` (e.g. `pad` is `'!'` for SD 2.x). */
  readonly specialTokens: Readonly<{ bos: string; eos: string; unk: string; pad: string }>;

  private readonly encoder: Map<string, number>;
  private decoderCache: Map<number, string> | undefined;
  private readonly bpeRanks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();
  private readonly addedEncoder = new Map<string, number>();
  private readonly addedDecoder = new Map<number, AddedToken>();
  private readonly specialIds = new Set<number>();
  private readonly specialContents = new Set<string>();
  private readonly trie = new AddedTokenTrie();

  private constructor(
    encoder: Map<string, number>, bpeRanks: Map<string, number>, modelMaxLength: number,
    special: Record<SpecialKey, AddedToken>, additionalSpecial: AddedToken[],
    addedTokensDecoder: Array<[number, AddedToken]>,
  ) {
    this.encoder = encoder;
    this.bpeRanks = bpeRanks;
    this.modelMaxLength = modelMaxLength;
    this.resetCache();
    // Tokens listed with their ids (added_tokens_decoder / added_tokens.json) come first, then
    // the special tokens not yet known are added (PreTrainedTokenizer.__init__ step 4).
    for (const [id, token] of addedTokensDecoder) this.registerAdded(token, id);
    for (const token of [...SPECIAL_ORDER.map((k) => special[k]), ...additionalSpecial]) {
      this.specialContents.add(token.content);
      if (!this.addedEncoder.has(token.content)) this.addToken({ ...token, special: true });
    }
    this.specialTokens = Object.freeze({
      bos: special.bos_token.content, eos: special.eos_token.content,
      unk: special.unk_token.content, pad: special.pad_token.content,
    });
    this.bosTokenId = this.tokenToId(special.bos_token.content)!;
    this.eosTokenId = this.tokenToId(special.eos_token.content)!;
    this.unkTokenId = this.tokenToId(special.unk_token.content)!;
    this.padTokenId = this.tokenToId(special.pad_token.content)!;
    for (const content of this.specialContents) this.specialIds.add(this.tokenToId(content)!);
  }

  /**
   * Loads a tokenizer folder in the Hugging Face layout.
   * - `vocab.json` (token → id) and `merges.txt` (`#version` line, then one merge per line;
   *   at most 48894 are read, as transformers does) are required.
   * - `tokenizer_config.json` and `special_tokens_map.json` are optional: `bos_token`,
   *   `eos_token`, `unk_token`, `pad_token` (strings or `{content: …}` objects; the map file
   *   wins over the config), `additional_special_tokens`, `model_max_length` (default 77),
   *   `added_tokens_decoder`; a legacy `added_tokens.json` is read too.
   *   Defaults are CLIPTokenizer's: bos `<|startoftext|>`, eos/unk/pad `<|endoftext|>`.
   * Special tokens missing from the vocabulary are appended after it, like transformers.
   * @param dir - the tokenizer folder (e.g. `<model>/tokenizer` or `<model>/tokenizer_2`)
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `dir` is not a non-empty string.
   * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) when the folder, `vocab.json` or `merges.txt` is missing; the message names it.
   * @throws BadConfigError (`E_BAD_CONFIG`) when a file is malformed (invalid JSON, a non-integer
   *   id, a bad token field or `model_max_length`); the message names the file and field.
   */
  static async fromPretrained(dir: string): Promise<CLIPTokenizer> {
    if (typeof dir !== 'string' || dir.length === 0) {
      throw new InvalidArgumentError(`Expected a tokenizer folder path (non-empty string) for dir but received ${describe(dir)}`);
    }
    let stat;
    try {
      stat = await fs.stat(dir);
    } catch (e) {
      throw new ModelNotFoundError(`tokenizer folder not found: ${dir}`, { cause: e });
    }
    if (!stat.isDirectory()) throw new ModelNotFoundError(`tokenizer folder is not a directory: ${dir}`);

    const vocabFile = path.join(dir, 'vocab.json');
    const mergesFile = path.join(dir, 'merges.txt');
    const configFile = path.join(dir, 'tokenizer_config.json');
    const mapFile = path.join(dir, 'special_tokens_map.json');
    const addedFile = path.join(dir, 'added_tokens.json');
    const [vocabText, mergesText, config, map, added] = await Promise.all([
      readRequired(vocabFile), readRequired(mergesFile),
      readJsonObject(configFile, false), readJsonObject(mapFile, false), readJsonObject(addedFile, false),
    ]);

    // 1.–2. vocabulary and merges (lines[1 : 48895] of the stripped file, each split on
    // whitespace): parsed in a worker thread (a 1 MB JSON.parse blocks the event loop for tens of
    // ms), the Maps filled here in slices between which the event loop runs (issue 19: no
    // sd-native work blocks it for more than 20 ms)
    const files = await parseTokenizerFilesOffThread(vocabText, vocabFile, mergesText, mergesFile, MAX_MERGES);
    const encoder = new Map<string, number>();
    const { vocab, merges } = files;
    for (let i = 0, at = 0; i < vocab.ids.length; i++) {
      if (i % LOAD_SLICE === LOAD_SLICE - 1) await yieldToEventLoop();
      const n = vocab.lengths[i];
      encoder.set(vocab.tokens.slice(at, at + n), vocab.ids[i]);
      at += n;
    }
    const bpeRanks = new Map<string, number>();
    for (let rank = 0, at = 0; rank < merges.lengths.length; rank++) {
      if (rank % LOAD_SLICE === LOAD_SLICE - 1) await yieldToEventLoop();
      const n = merges.lengths[rank];
      bpeRanks.set(merges.pairs.slice(at, at + n), rank); // a repeated merge keeps its last rank, as dict(zip(...)) does
      at += n;
    }

    // 3. special tokens: special_tokens_map.json > tokenizer_config.json > CLIPTokenizer defaults
    const special = {} as Record<SpecialKey, AddedToken>;
    for (const key of SPECIAL_ORDER) {
      const fromMap = map?.[key];
      const fromConfig = config?.[key];
      if (fromMap !== undefined && fromMap !== null) special[key] = parseAddedToken(fromMap, mapFile, key, true);
      else if (fromConfig !== undefined && fromConfig !== null) special[key] = parseAddedToken(fromConfig, configFile, key, true);
      else special[key] = parseAddedToken(DEFAULT_SPECIAL[key], configFile, key, true);
    }
    const additional: AddedToken[] = [];
    const additionalSource = map?.additional_special_tokens !== undefined ? [map.additional_special_tokens, mapFile]
      : [config?.additional_special_tokens, configFile];
    if (additionalSource[0] !== undefined && additionalSource[0] !== null) {
      if (!Array.isArray(additionalSource[0])) {
        throw new BadConfigError(`${additionalSource[1]}: field "additional_special_tokens" must be a list`);
      }
      for (const t of additionalSource[0]) {
        additional.push(parseAddedToken(t, additionalSource[1] as string, 'additional_special_tokens', true));
      }
    }

    // 4. tokens stored with their ids
    const addedTokens: Array<[number, AddedToken]> = [];
    const decoderField = config?.added_tokens_decoder;
    if (decoderField !== undefined && decoderField !== null) {
      if (typeof decoderField !== 'object' || Array.isArray(decoderField)) {
        throw new BadConfigError(`${configFile}: field "added_tokens_decoder" must be an object (id → token)`);
      }
      for (const [idText, t] of Object.entries(decoderField)) {
        const id = Number(idText);
        if (!Number.isSafeInteger(id) || id < 0) {
          throw new BadConfigError(`${configFile}: field "added_tokens_decoder" has a non-integer id ${JSON.stringify(idText)}`);
        }
        addedTokens.push([id, parseAddedToken(t, configFile, `added_tokens_decoder.${idText}`, false)]);
      }
    } else if (added) {
      const specialContents = new Set([...SPECIAL_ORDER.map((k) => special[k].content), ...additional.map((t) => t.content)]);
      for (const [content, id] of Object.entries(added)) {
        if (!Number.isSafeInteger(id) || (id as number) < 0) {
          throw new BadConfigError(`${addedFile}: the id of token ${JSON.stringify(content)} must be a non-negative integer, got ${JSON.stringify(id)}`);
        }
        addedTokens.push([id as number, { content, lstrip: false, rstrip: false, singleWord: false, special: specialContents.has(content) }]);
      }
    }

    // 5. model_max_length
    let modelMaxLength = 77;
    const mml = config?.model_max_length;
    if (mml !== undefined && mml !== null) {
      if (typeof mml !== 'number' || !(mml >= 2)) {
        throw new BadConfigError(`${configFile}: field "model_max_length" must be a number ≥ 2, got ${JSON.stringify(mml)}`);
      }
      if (mml < UNSET_MAX_LENGTH) {
        if (!Number.isInteger(mml)) {
          throw new BadConfigError(`${configFile}: field "model_max_length" must be an integer, got ${mml}`);
        }
        modelMaxLength = mml;
      }
    }
    return new CLIPTokenizer(encoder, bpeRanks, modelMaxLength, special, additional, addedTokens);
  }

  /** Number of entries of `vocab.json` (transformers' `vocab_size`, 49408 for CLIP); added tokens not included. */
  get vocabSize(): number {
    return this.encoder.size;
  }

  /**
   * Number of distinct tokens, vocabulary plus added tokens (Python's `len(tokenizer)`): the
   * number of rows a text encoder's token embedding needs.
   */
  get length(): number {
    let n = this.encoder.size;
    for (const content of this.addedEncoder.keys()) if (!this.encoder.has(content)) n++;
    return n;
  }

  /**
   * Id of a token: an added token's id, else its vocabulary id (BPE tokens carry `</w>` at a
   * word's end, e.g. `'cat</w>'`), else `undefined`.
   */
  tokenToId(token: string): number | undefined {
    return this.addedEncoder.get(token) ?? this.encoder.get(token);
  }

  /** The token text of an id (`'cat</w>'`, `'<|endoftext|>'`), or `undefined` when the id is unknown. */
  idToToken(id: number): string | undefined {
    return this.addedDecoder.get(id)?.content ?? this.decoder().get(id);
  }

  /** id → vocabulary token, built on first use (only decoding needs it). */
  private decoder(): Map<number, string> {
    if (!this.decoderCache) {
      this.decoderCache = new Map();
      for (const [token, id] of this.encoder) this.decoderCache.set(id, token);
    }
    return this.decoderCache;
  }

  /**
   * Adds tokens matched literally (case-sensitive, longest match first) in the text before any
   * cleaning or BPE, as transformers' `tokenizer.add_tokens(tokens)` does; this is how textual
   * inversion embeddings get their ids. A new token gets the next id after the vocabulary and
   * the tokens added before (49408, 49409, … for CLIP); a token already added keeps its id; a
   * string that is already a vocabulary entry keeps its vocabulary id (and is now matched
   * literally).
   * @param tokens - the token strings, e.g. `['<my-token>', '<my-token>_1']`
   * @returns the id of each token, in order.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `tokens` is not an array of non-empty strings.
   */
  addTokens(tokens: string[]): number[] {
    if (!Array.isArray(tokens)) {
      throw new InvalidArgumentError(`Expected an array of strings for tokens but received ${describe(tokens)}`);
    }
    tokens.forEach((t, i) => {
      if (typeof t !== 'string' || t.length === 0) {
        throw new InvalidArgumentError(`Expected a non-empty string for tokens[${i}] but received ${describe(t)}`);
      }
    });
    const ids = tokens.map((content) =>
      this.addedEncoder.get(content) ??
      this.addToken({ content, lstrip: false, rstrip: false, singleWord: false, special: this.specialContents.has(content) }));
    return ids;
  }

  /**
   * Splits a text into BPE tokens, like transformers' `tokenizer.tokenize(text)`: added and
   * special tokens come out as they are (`'<|endoftext|>'`), word-final pieces end in `</w>`
   * (`['a</w>', 'photo</w>', 'of</w>']`). No `<|startoftext|>`/`<|endoftext|>` is added.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `text` is not a string.
   */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') {
      throw new InvalidArgumentError(`Expected a string for text but received ${describe(text)}`);
    }
    // 1. cut the added tokens out of the raw text (PreTrainedTokenizer.tokenize)
    const pieces = this.trie.split(text);
    for (let i = 0; i < pieces.length; i++) {
      const id = this.addedEncoder.get(pieces[i]);
      if (id === undefined) continue;
      const tok = this.addedDecoder.get(id)!;
      const left = i > 0 ? pieces[i - 1] : '';
      const right = i < pieces.length - 1 ? pieces[i + 1] : '';
      if (tok.rstrip && right) pieces[i + 1] = right.replace(/^\s+/u, '');
      if (tok.lstrip && left) pieces[i - 1] = left.replace(/\s+$/u, '');
      if (tok.singleWord && left && !left.endsWith(' ')) {
        pieces[i - 1] += pieces[i];
        pieces[i] = '';
      } else if (tok.singleWord && right && !right.startsWith(' ')) {
        pieces[i + 1] = pieces[i] + right;
        pieces[i] = '';
      }
    }
    // 2. BPE the remaining pieces (CLIPTokenizer._tokenize)
    const out: string[] = [];
    for (const piece of pieces) {
      if (!piece) continue;
      if (this.addedEncoder.has(piece)) out.push(piece);
      else this.bpeText(piece, out);
    }
    return out;
  }

  /**
   * Encodes a text to CLIP input ids: `<|startoftext|>`, the BPE token ids, `<|endoftext|>`,
   * then (by default) truncation to `maxLength` and padding with the pad token up to it —
   * what diffusers' `tokenizer(prompt, padding="max_length", max_length=77, truncation=True)` gives.
   * @param text - the prompt
   * @param options - {@link TokenizeOptions}; defaults `{ padding: 'max_length', maxLength: modelMaxLength, truncation: true }`.
   *   `{ padding: false, truncation: false }` gives transformers' plain `tokenizer(text)`.
   * @returns the ids (`maxLength` of them when padded and truncated).
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `text` is not a string or an option is invalid.
   */
  encode(text: string, options: TokenizeOptions = {}): number[] {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError(`Expected an options object for options but received ${describe(options)}`);
    }
    const { padding = 'max_length', maxLength = this.modelMaxLength, truncation = true } = options;
    if (padding !== 'max_length' && padding !== false) {
      throw new InvalidArgumentError(`Expected 'max_length' or false for padding but received ${describe(padding)}`);
    }
    if (!Number.isSafeInteger(maxLength) || maxLength < 2) {
      throw new InvalidArgumentError(`Expected an integer ≥ 2 for maxLength but received ${describe(maxLength)}`);
    }
    if (typeof truncation !== 'boolean') {
      throw new InvalidArgumentError(`Expected a boolean for truncation but received ${describe(truncation)}`);
    }
    let content = this.tokenize(text).map((t) => this.tokenToIdOrUnk(t));
    if (truncation && content.length > maxLength - 2) content = content.slice(0, maxLength - 2);
    const ids = [this.bosTokenId, ...content, this.eosTokenId];
    if (padding === 'max_length') while (ids.length < maxLength) ids.push(this.padTokenId);
    return ids;
  }

  /**
   * Turns ids back into text like transformers' `tokenizer.decode(ids)`: byte-level decoding
   * (invalid UTF-8 becomes U+FFFD), `</w>` → space, added tokens kept as they are, and
   * `clean_up_tokenization` (`' ,'` → `','` …). Unknown ids are skipped.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `ids` is not an array of integers.
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (!Array.isArray(ids)) throw new InvalidArgumentError(`Expected an array of ids but received ${describe(ids)}`);
    const skipSpecial = options.skipSpecialTokens === true;
    const texts: string[] = [];
    let current: string[] = [];
    const flush = (): void => {
      if (current.length === 0) return;
      const s = this.tokensToString(current);
      if (s.length > 0) texts.push(s);
      current = [];
    };
    for (const id of ids) {
      if (!Number.isInteger(id)) throw new InvalidArgumentError(`Expected integer ids but received ${describe(id)}`);
      if (skipSpecial && this.specialIds.has(id)) continue;
      const token = this.idToToken(id);
      if (token === undefined) continue;
      if (this.addedEncoder.has(token) && !this.specialContents.has(token)) {
        flush();
        texts.push(token);
      } else {
        current.push(token);
      }
    }
    if (current.length > 0) texts.push(this.tokensToString(current));
    return cleanUpTokenization(texts.join(' '));
  }

  // -------------------------------------------------------------------------------------------

  /** `_add_tokens` for one new token: reuses a vocabulary id or appends one; returns the id. */
  private addToken(token: AddedToken): number {
    let id = this.encoder.get(token.content);
    if (id === undefined) id = this.length; // len(get_vocab()) before adding
    this.registerAdded(token, id);
    return id;
  }

  private registerAdded(token: AddedToken, id: number): void {
    this.addedDecoder.set(id, token);
    this.addedEncoder.set(token.content, id);
    this.trie.add(token.content);
  }

  private resetCache(): void {
    this.cache.clear();
    this.cache.set('<|startoftext|>', ['<|startoftext|>']);
    this.cache.set('<|endoftext|>', ['<|endoftext|>']);
  }

  private tokenToIdOrUnk(token: string): number {
    return this.addedEncoder.get(token) ?? this.encoder.get(token) ?? this.unkTokenId;
  }

  /** CLIPTokenizer._tokenize on one piece without added tokens; appends to `out`. */
  private bpeText(text: string, out: string[]): void {
    const cleaned = basicClean(text);
    for (const match of cleaned.matchAll(CLIP_PATTERN)) {
      let mapped = '';
      for (const b of utf8.encode(match[0])) mapped += BYTE_ENCODER[b];
      for (const t of this.bpe(mapped)) out.push(t);
    }
  }

  /** Byte-pair merges of one byte-mapped word, lowest rank first; `</w>` marks the last symbol. */
  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    let word = token.split(''); // byte-mapped characters are all single UTF-16 units
    word[word.length - 1] += '</w>';
    if (word.length < 2) return word;
    const ranks = this.bpeRanks;
    for (;;) {
      let best = Infinity;
      let bestIndex = -1;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < best) { best = rank; bestIndex = i; }
      }
      if (bestIndex < 0) break;
      const first = word[bestIndex];
      const second = word[bestIndex + 1];
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i]);
          i += 1;
        }
      }
      word = merged;
      if (word.length === 1) break;
    }
    if (this.cache.size >= BPE_CACHE_LIMIT) this.resetCache();
    this.cache.set(token, word);
    return word;
  }

  /** CLIPTokenizer.convert_tokens_to_string. */
  private tokensToString(tokens: string[]): string {
    const bytes: number[] = [];
    for (const ch of tokens.join('')) {
      const b = BYTE_DECODER.get(ch);
      if (b !== undefined) bytes.push(b);
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replaceAll('</w>', ' ').trim();
  }
}

/** transformers' wording: "<value> of type <type>", the value as every sd-native message renders it. */
function describe(value: unknown): string {
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return `${describeValue(value)} of type ${type}`;
}
