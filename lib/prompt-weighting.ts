/**
 * AUTOMATIC1111 prompt weighting (opt-in `promptWeighting: 'a1111'`), after stable-diffusion-webui
 * modules/prompt_parser.py (parse_prompt_attention) and modules/sd_hijack_clip.py (tokenize_line:
 * 75-token chunks, BREAK, comma backtracking; process_tokens: weights on the hidden states with the
 * mean restored, done natively). `(text)` ×1.1, `((text))` ×1.21, `(text:1.3)` ×1.3, `[text]` ÷1.1,
 * `\(` `\)` `\[` `\]` `\\` literal, `BREAK` starts a new chunk.
 */
import { InvalidArgumentError } from './errors.js';
import type { CLIPTokenizer } from './tokenizer.js';
import type { TensorData } from '../types/native.js';

const RE_ATTENTION = /\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()[\]:]+|:/g;
const RE_BREAK = /\s*\bBREAK\b\s*/s;

/** parse_prompt_attention: `[text, weight]` runs (weight −1 marks BREAK), equal weights merged. */
export function parsePromptAttention(text: string): Array<[string, number]> {
  const res: Array<[string, number]> = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyRange = (start: number, m: number) => { for (let p = start; p < res.length; p++) res[p][1] *= m; };
  for (const m of text.matchAll(RE_ATTENTION)) {
    const t = m[0];
    const weight = m[1];
    if (t.startsWith('\\')) res.push([t.slice(1), 1.0]);
    else if (t === '(') round.push(res.length);
    else if (t === '[') square.push(res.length);
    else if (weight !== undefined && round.length > 0) multiplyRange(round.pop()!, Number.parseFloat(weight));
    else if (t === ')' && round.length > 0) multiplyRange(round.pop()!, 1.1);
    else if (t === ']' && square.length > 0) multiplyRange(square.pop()!, 1 / 1.1);
    else if (!t.includes('BREAK')) res.push([t, 1.0]); // the common case, without split's arrays
    else {
      t.split(RE_BREAK).forEach((part, i) => {
        if (i > 0) res.push(['BREAK', -1]);
        res.push([part, 1.0]);
      });
    }
  }
  for (const pos of round) multiplyRange(pos, 1.1);
  for (const pos of square) multiplyRange(pos, 1 / 1.1);
  if (res.length === 0) res.push(['', 1.0]);
  // neighbours of equal weight merged (A1111 does it with list.pop(i + 1), quadratic: ~100 ms on
  // a 100k-character prompt; one linear pass gives the same list)
  const merged: Array<[string, number]> = [];
  for (const r of res) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last[1] === r[1]) last[0] += r[0];
    else merged.push(r);
  }
  return merged;
}

/** One 77-token chunk: ids and weights. */
export interface PromptChunk { ids: number[]; weights: number[] }

const CHUNK = 75;

/**
 * The most 75-token chunks a prompt may make with `promptWeighting: 'a1111'`: 32 chunks = 2,400
 * tokens (diffusers and A1111 have no limit). Every chunk is one more text-encoder pass and 77 more
 * keys in every cross-attention of every step: measured in issue 19, a short prompt took
 * 4.4 s and 2k / 10k / 30k characters 11.8 / 28.5 / 73.2 s (≈ 0.7 s a chunk), so 32 chunks bound a
 * call to ≈ 6× a short one while leaving room far beyond real prompts (A1111 prompts rarely pass
 * 4–8 chunks).
 */
export const MAX_PROMPT_CHUNKS = 32;

/** Text over this many characters is tokenized in whitespace-cut pieces, so the cap stops it early. */
const PIECE_CHARS = 2048;

/** `text` in pieces of about `PIECE_CHARS` characters cut at whitespace (CLIP always splits there). */
function* pieces(text: string): Generator<string> {
  let at = 0;
  while (text.length - at > PIECE_CHARS) {
    let cut = at + PIECE_CHARS;
    while (cut > at + (PIECE_CHARS >> 1) && !/\s/.test(text[cut])) cut--;
    if (cut <= at + (PIECE_CHARS >> 1)) break; // a giant word: the rest whole
    yield text.slice(at, cut);
    at = cut;
  }
  yield text.slice(at);
}
/** Emphasis brackets a prompt may hold per allowed token: more cannot be meant, and each one is a parse step. */
const BRACKETS_PER_TOKEN = 4;

/**
 * Refuses, before any parsing, a prompt that certainly makes more than `maxChunks` chunks, so a
 * 100k-character prompt costs one linear scan (≈ 1 ms) instead of the full emphasis parse (15–70
 * ms on the JS thread; issue 19: no sd-native work blocks the event loop for more than 20 ms).
 * Lower bound on its tokens: the whitespace-separated words holding a letter, other than `BREAK`
 * (each gives at least one CLIP token: letters survive the cleaning, and the A1111 syntax — brackets,
 * `:weight` — holds none). Also refused: more than {@link BRACKETS_PER_TOKEN} emphasis brackets
 * `()[]` per allowed token.
 */
const LETTER = /\p{L}/u;
function refuseSurelyTooLong(prompt: string, maxChunks: number, field: string): void {
  if (!Number.isFinite(maxChunks)) return;
  const maxTokens = maxChunks * CHUNK;
  if (prompt.length <= maxTokens) return; // fewer characters than the tokens allowed: fits or is cut by chunks
  let words = 0, brackets = 0;
  let letters = ''; // the current word's letters (kept up to 6: enough to tell BREAK)
  let hasLetter = false;
  const endWord = () => { if (hasLetter && letters !== 'BREAK') words++; letters = ''; hasLetter = false; };
  for (let i = 0; i < prompt.length; i++) {
    const c = prompt.charCodeAt(i);
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) { endWord(); continue; } // ASCII whitespace (other spaces only merge words: still a bound)
    if (c === 0x28 || c === 0x29 || c === 0x5b || c === 0x5d) { brackets++; continue; }
    const letter = c < 0x80 ? ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) : LETTER.test(prompt[i]);
    if (letter) { hasLetter = true; if (letters.length < 6) letters += prompt[i]; }
  }
  endWord();
  if (words > maxTokens || brackets > maxTokens * BRACKETS_PER_TOKEN) {
    throw new InvalidArgumentError(`${field} is too long for promptWeighting 'a1111': at most ${maxChunks} chunks of ${CHUNK} tokens ` +
      `(${maxTokens} tokens) are encoded; received ${prompt.length} characters that make more than ${maxChunks} chunks`);
  }
}

const COMMA_BACKTRACK = 20; // A1111 opts.comma_padding_backtrack default

/**
 * tokenize_line: the chunks of one prompt ([BOS] 75 tokens [EOS], padding with the pad token, weights 1 there).
 * @param maxChunks - the most chunks allowed ({@link MAX_PROMPT_CHUNKS} in pipelines); tokenizing
 *   stops as soon as the prompt makes more
 * @param field - the option named in the error
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when the prompt makes more than `maxChunks` chunks.
 */
export function promptChunks(tok: CLIPTokenizer, prompt: string, maxChunks = Infinity, field = 'prompt'): PromptChunk[] {
  refuseSurelyTooLong(prompt, maxChunks, field);
  const comma = tok.tokenToId(',</w>');
  const chunks: PromptChunk[] = [];
  let ids: number[] = [];
  let weights: number[] = [];
  let lastComma = -1;
  const nextChunk = () => {
    const padded = [tok.bosTokenId, ...ids, tok.eosTokenId];
    const w = [1, ...weights, 1];
    while (padded.length < CHUNK + 2) { padded.push(tok.padTokenId); w.push(1); }
    chunks.push({ ids: padded, weights: w });
    ids = []; weights = []; lastComma = -1;
    if (chunks.length > maxChunks) {
      throw new InvalidArgumentError(`${field} is too long for promptWeighting 'a1111': at most ${maxChunks} chunks of ${CHUNK} tokens ` +
        `(${maxChunks * CHUNK} tokens) are encoded; received ${prompt.length} characters that make more than ${maxChunks} chunks`);
    }
  };
  for (const [text, weight] of parsePromptAttention(prompt)) {
    if (text === 'BREAK' && weight === -1) { nextChunk(); continue; }
    for (const piece of pieces(text)) for (const t of tok.encode(piece, { padding: false, truncation: false }).slice(1, -1)) {
      if (t === comma) {
        lastComma = ids.length;
      } else if (ids.length === CHUNK && lastComma !== -1 && ids.length - lastComma <= COMMA_BACKTRACK) {
        const at = lastComma + 1;
        const relocIds = ids.slice(at), relocW = weights.slice(at);
        ids = ids.slice(0, at); weights = weights.slice(0, at);
        nextChunk();
        ids = relocIds; weights = relocW;
      }
      if (ids.length === CHUNK) nextChunk();
      ids.push(t);
      weights.push(weight);
    }
  }
  if (ids.length > 0 || chunks.length === 0) nextChunk();
  return chunks;
}

/**
 * Token ids and weights `[P, 77·k]` for prompts (and negative prompts), every prompt padded with
 * empty chunks to the largest chunk count k (A1111 pads the shorter conditioning with the empty prompt).
 * @param minChunks - at least this many chunks (SDXL: both tokenizers must give the same k)
 * @param fields - the option name of each group, for errors (e.g. `['prompt', 'negativePrompt']`)
 * @param maxChunks - the most chunks a prompt may make (default {@link MAX_PROMPT_CHUNKS})
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when a prompt makes more than `maxChunks` chunks,
 *   naming the field, the limit and the prompt's length.
 */
export function weightedTokens(
  tok: CLIPTokenizer, groups: string[][], minChunks = 1, fields: string[] = [], maxChunks = MAX_PROMPT_CHUNKS,
): Array<{ ids: TensorData<BigInt64Array>; weights: TensorData<Float32Array> }> {
  const all = groups.map((g, gi) => g.map((p, i) => promptChunks(tok, p, maxChunks, `${fields[gi] ?? 'prompt'}${g.length > 1 ? `[${i}]` : ''}`)));
  const empty = promptChunks(tok, '')[0];
  const k = Math.max(minChunks, ...all.flat().map((c) => c.length));
  return all.map((g) => {
    const n = g.length, len = 77 * k;
    const ids = new BigInt64Array(n * len), weights = new Float32Array(n * len);
    g.forEach((chunks, i) => {
      for (let c = 0; c < k; c++) {
        const ch = chunks[c] ?? empty;
        for (let j = 0; j < 77; j++) { ids[i * len + c * 77 + j] = BigInt(ch.ids[j]); weights[i * len + c * 77 + j] = ch.weights[j]; }
      }
    });
    return { ids: { data: ids, shape: [n, len] }, weights: { data: weights, shape: [n, len] } };
  });
}
