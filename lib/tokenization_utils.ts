/**
 * The pieces of transformers' tokenizer machinery that the CLIP tokenizer (lib/tokenizer.ts) is
 * built from: GPT-2's byte ↔ unicode table, BERT's BasicTokenizer text cleaning, the added-token
 * `Trie` (tokenization_utils.py), AddedToken parsing, tokenizer file reading and
 * `clean_up_tokenization`.
 */
import fs from 'node:fs/promises';
import { BadConfigError, ModelNotFoundError, statRefusingSpecial } from './errors.js';

/** An added token as transformers' `AddedToken` describes it. */
export interface AddedToken {
  content: string;
  /** Eat the whitespace on the left of the token. */
  lstrip: boolean;
  /** Eat the whitespace on the right of the token. */
  rstrip: boolean;
  /** Match only as a whole word. */
  singleWord: boolean;
  special: boolean;
}

// ---------------------------------------------------------------------------------------------
// Byte-level mapping (bytes_to_unicode)
// ---------------------------------------------------------------------------------------------

/** GPT-2's reversible byte → printable unicode character table. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b); // '!'..'~'
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b); // '¡'..'¬'
  for (let b = 0xae; b <= 0xff; b++) bs.push(b); // '®'..'ÿ'
  const table: string[] = new Array(256);
  for (const b of bs) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  }
  return table;
}
export const BYTE_ENCODER = bytesToUnicode();
export const BYTE_DECODER = new Map<string, number>(BYTE_ENCODER.map((c, b) => [c, b]));
export const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Text cleaning: BasicTokenizer(strip_accents=False, do_split_on_punc=False)
// ---------------------------------------------------------------------------------------------

/** Unicode category C* except \t \n \r (BERT `_is_control`). */
export const CONTROL = /\p{C}/u;
/** ' ', \t, \n, \r or category Zs (BERT `_is_whitespace`). */
export const WHITESPACE = /[ \t\n\r\p{Zs}]/u;
/** Python's `str.split()`/`str.strip()` whitespace (`str.isspace`). */
export const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
/** The same minus ' '. */
export const PY_SPACE_NOT_BLANK = /[\t\n\v\f\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;

/** BERT `_is_chinese_char`: the CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana). */
export function isCjk(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** Python `text.split()` (no argument). */
export function pySplit(text: string): string[] {
  return text.split(PY_SPACE).filter((t) => t.length > 0);
}

/**
 * `" ".join(BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text))`:
 * drops \0, U+FFFD and control/format/unassigned chars, maps whitespace to ' ', surrounds
 * CJK ideographs with spaces, NFC-normalizes, lower-cases each word (accents kept) and joins
 * the words with single spaces.
 */
export function basicClean(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd) continue;
    if (ch !== '\t' && ch !== '\n' && ch !== '\r' && CONTROL.test(ch)) continue;
    if (WHITESPACE.test(ch)) out += ' ';
    else if (isCjk(cp)) out += ` ${ch} `;
    else out += ch;
  }
  return pySplit(out.normalize('NFC')).map((w) => w.toLowerCase()).join(' ');
}

// ---------------------------------------------------------------------------------------------
// Added tokens: transformers' Trie.split semantics
// ---------------------------------------------------------------------------------------------

export interface TrieNode { end: boolean; next: Map<string, TrieNode> }

/**
 * Cuts added tokens out of a text like transformers' `Trie.split`: scanning left to right,
 * the first partial match that completes wins, extended to the longest token from the
 * earliest start still pending (so `<tok>_1` beats `<tok>`).
 */
export class AddedTokenTrie {
  private readonly root: TrieNode = { end: false, next: new Map() };

  add(word: string): void {
    if (!word) return;
    let node = this.root;
    for (const ch of word) {
      let child = node.next.get(ch);
      if (!child) node.next.set(ch, (child = { end: false, next: new Map() }));
      node = child;
    }
    node.end = true;
  }

  split(text: string): string[] {
    if (this.root.next.size === 0) return [text];
    const chars = Array.from(text); // code points, as Python indexes them
    const states = new Map<number, TrieNode>(); // start → node, in increasing start order
    const offsets: number[] = [0];
    let skip = 0;
    for (let current = 0; current < chars.length; current++) {
      if (skip && current < skip) continue;
      const ch = chars[current];
      const toRemove: number[] = [];
      let reset = false;
      for (let [start, node] of states) {
        if (node.end) {
          // A match ends before `current`; look ahead for the longest one from the earliest start.
          let end = current;
          for (const [lookStart, lookNode0] of states) {
            let lookNode = lookNode0;
            if (lookStart > start) break;
            let lookIndex = lookStart < start ? current + 1 : current;
            end = lookIndex;
            if (lookNode.end) { start = lookStart; end = lookIndex; skip = lookIndex; }
            let nextChar = lookIndex < chars.length ? chars[lookIndex] : undefined;
            while (nextChar !== undefined && lookNode.next.has(nextChar)) {
              lookNode = lookNode.next.get(nextChar)!;
              lookIndex++;
              if (lookNode.end) { start = lookStart; end = lookIndex; skip = lookIndex; }
              if (lookIndex === chars.length) break;
              nextChar = chars[lookIndex];
            }
          }
          offsets.push(start, end);
          reset = true;
          break;
        }
        const child = node.next.get(ch);
        if (child) states.set(start, child);
        else toRemove.push(start);
      }
      if (reset) states.clear();
      else for (const s of toRemove) states.delete(s);
      const first = this.root.next.get(ch);
      if (current >= skip && first) states.set(current, first);
    }
    for (const [start, node] of states) {
      if (node.end) { offsets.push(start, chars.length); break; }
    }
    // cut_text
    offsets.push(chars.length);
    const pieces: string[] = [];
    let start = 0;
    for (const end of offsets) {
      if (start >= end) continue;
      pieces.push(chars.slice(start, end).join(''));
      start = end;
    }
    return pieces;
  }
}

// ---------------------------------------------------------------------------------------------
// Loading helpers
// ---------------------------------------------------------------------------------------------

/** E_BAD_CONFIG when `file` exists but is a FIFO, socket or device (a read would block or never end). */
async function refuseNonRegular(file: string): Promise<void> {
  await statRefusingSpecial(file, (kind) => new BadConfigError(`tokenizer file ${file} is ${kind}, not a regular file; refusing to open it`));
}

export async function readRequired(file: string): Promise<string> {
  await refuseNonRegular(file);
  try {
    return await fs.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ModelNotFoundError(`tokenizer file not found: ${file}`, { cause: e });
    }
    throw new ModelNotFoundError(`cannot read tokenizer file ${file}: ${(e as Error).message}`, { cause: e });
  }
}

export async function readJsonObject(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  if (required) {
    text = await readRequired(file);
  } else {
    await refuseNonRegular(file);
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ModelNotFoundError(`cannot read tokenizer file ${file}: ${(e as Error).message}`, { cause: e });
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new BadConfigError(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadConfigError(`${file}: expected a JSON object at the top level`);
  }
  return value as Record<string, unknown>;
}

/** A token field: a string or an AddedToken-like object `{content, lstrip?, rstrip?, single_word?}`. */
export function parseAddedToken(value: unknown, file: string, field: string, special: boolean): AddedToken {
  if (typeof value === 'string') {
    return { content: value, lstrip: false, rstrip: false, singleWord: false, special };
  }
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    const v = value as { content: string; lstrip?: unknown; rstrip?: unknown; single_word?: unknown; special?: unknown };
    return {
      content: v.content,
      lstrip: v.lstrip === true,
      rstrip: v.rstrip === true,
      singleWord: v.single_word === true,
      special: typeof v.special === 'boolean' ? v.special : special,
    };
  }
  throw new BadConfigError(`${file}: field "${field}" must be a string or an object with a string "content"`);
}

// ---------------------------------------------------------------------------------------------
// CLIPTokenizer
// ---------------------------------------------------------------------------------------------

/**
 * CLIP's byte-level BPE tokenizer, id-for-id equal to transformers' slow `CLIPTokenizer`
 * (v4.40) without ftfy installed — the tokenizer diffusers pipelines use.
 *
 * @example
 * ```ts
 * const tok = await CLIPTokenizer.fromPretrained('./stable-diffusion-v1-5/tokenizer');
 * tok.encode('a photo of an astronaut riding a horse on mars');
 * // [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407, 49407, …] (77 ids)
 * ```
 */

/** transformers' `clean_up_tokenization`. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',')
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}
