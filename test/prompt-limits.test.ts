/**
 * Long prompts (issue 19, item 6): `promptWeighting: 'a1111'` is capped at MAX_PROMPT_CHUNKS
 * chunks (E_INVALID_ARGUMENT naming the field, the limit and the length, before any native work),
 * and the default truncating tokenization looks only at a prompt's head.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIPTokenizer, MAX_PROMPT_CHUNKS, StableDiffusionPipeline, promptChunks, weightedTokens } from '../lib/index.js';
import { TOKENIZE_HEAD_CHARS, tokenize } from '../lib/pipelines/prompt_encoding.js';
import { fixture } from './helpers/fixtures.js';

let tok: CLIPTokenizer;
beforeAll(async () => { tok = await CLIPTokenizer.fromPretrained(fixture('models', 'tiny-sd15', 'tokenizer')); });

const sentence = 'a photo of an astronaut riding a horse on the moon highly detailed trending on artstation ';
const longText = (chars: number) => sentence.repeat(Math.ceil(chars / sentence.length)).slice(0, chars);

/** process warnings emitted while `fn` runs. */
function warningsOf(fn: () => void): string[] {
  const seen: string[] = [];
  const on = (w: Error) => seen.push(w.message);
  const orig = process.emitWarning;
  process.emitWarning = ((w: string | Error) => { on(typeof w === 'string' ? new Error(w) : w); }) as typeof process.emitWarning;
  try { fn(); } finally { process.emitWarning = orig; }
  return seen;
}

describe("promptWeighting 'a1111': the chunk cap", () => {
  it('is 32 chunks of 75 tokens', () => { expect(MAX_PROMPT_CHUNKS).toBe(32); });

  it('long text tokenized in pieces gives the tokens of the whole text', () => {
    const text = longText(9000); // > 2 pieces, no commas (no backtracking)
    const chunks = promptChunks(tok, text);
    const flat = chunks.flatMap((c) => c.ids.slice(1, -1)).filter((id) => id !== tok.padTokenId);
    expect(flat).toEqual(tok.encode(text, { padding: false, truncation: false }).slice(1, -1));
  });

  it('exactly 32 chunks pass; one token more is E_INVALID_ARGUMENT naming the field, limit and size', () => {
    const word = 'horse '; // one token
    expect(tok.encode('horse', { padding: false, truncation: false })).toHaveLength(3);
    expect(promptChunks(tok, word.repeat(32 * 75), MAX_PROMPT_CHUNKS)).toHaveLength(32);
    const text = word.repeat(32 * 75 + 1);
    expect(() => weightedTokens(tok, [['ok'], ['fine', text]], 1, ['prompt', 'negativePrompt'])).toThrow(expect.objectContaining({
      code: 'E_INVALID_ARGUMENT',
      message: `negativePrompt[1] is too long for promptWeighting 'a1111': at most 32 chunks of 75 tokens (2400 tokens) are encoded; ` +
        `received ${text.length} characters that make more than 32 chunks`,
    }));
    // BREAK makes chunks too
    expect(() => promptChunks(tok, 'a BREAK '.repeat(40), MAX_PROMPT_CHUNKS)).toThrow(/at most 32 chunks/);
  });

  it('a 1M-character prompt is refused quickly (tokenizing stops at the cap)', () => {
    const text = longText(1_000_000);
    const t0 = performance.now();
    expect(() => weightedTokens(tok, [[text]])).toThrow(/received 1000000 characters/);
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

describe('default tokenization of long prompts', () => {
  it('a 100k-character prompt: the ids of the whole text, "at least" in the warning, fast', () => {
    const text = longText(100_000);
    expect(TOKENIZE_HEAD_CHARS).toBe(2048);
    let out: ReturnType<typeof tokenize> | undefined;
    const t0 = performance.now();
    const w = warningsOf(() => { out = tokenize(tok, [text], 'prompt'); });
    const ms = performance.now() - t0;
    expect(Array.from(out!.data, Number)).toEqual(tok.encode(text));
    expect(w).toEqual([expect.stringMatching(/^prompt has at least \d+ tokens; CLIP keeps the first 77/)]);
    expect(ms).toBeLessThan(40); // the whole-text encode took ~40-75 ms before
  });

  it('a prompt under the head size keeps the exact count', () => {
    const text = longText(1000);
    const n = tok.encode(text, { padding: false, truncation: false }).length;
    const w = warningsOf(() => tokenize(tok, [text, 'short'], 'negativePrompt'));
    expect(w).toEqual([`negativePrompt[0] has ${n} tokens; CLIP keeps the first 77 (the rest is ignored)`]);
  });

  it('a head of whitespace falls back to the whole text', () => {
    const text = ' '.repeat(5000) + 'a horse';
    const w = warningsOf(() => { expect(Array.from(tokenize(tok, [text], 'prompt').data, Number)).toEqual(tok.encode(text)); });
    expect(w).toEqual([]);
  });
});

describe('pipeline: the cap is checked before native work', () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15')); });
  afterAll(async () => { await pipe?.[Symbol.asyncDispose](); });

  it('a 30k-character a1111 prompt rejects with E_INVALID_ARGUMENT at once', async () => {
    const t0 = performance.now();
    await expect(pipe.generate({ prompt: 'x', negativePrompt: longText(30_000), promptWeighting: 'a1111', numInferenceSteps: 1, width: 64, height: 64 }))
      .rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(/^negativePrompt is too long .* received 30000 characters/) });
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
