/**
 * Opt-in AUTOMATIC1111 prompt weighting: parser cases from A1111's documented examples
 * (modules/prompt_parser.py docstring), 75-token chunking with BREAK and comma backtracking, and
 * the pipeline: all weights 1.0 equal the plain (diffusers) encoding; emphasis and long prompts change it.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { CLIPTokenizer, StableDiffusionPipeline, parsePromptAttention, promptChunks } from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';
import { fixture, maxAbsDiff } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

describe('parsePromptAttention (A1111 examples)', () => {
  it.each([
    ['normal text', [['normal text', 1.0]]],
    ['an (important) word', [['an ', 1.0], ['important', 1.1], [' word', 1.0]]],
    ['(unbalanced', [['unbalanced', 1.1]]],
    ['\\(literal\\]', [['(literal]', 1.0]]],
    ['(unnecessary)(parens)', [['unnecessaryparens', 1.1]]],
    ['a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).', [
      ['a ', 1.0], ['house', 1.5730000000000004], [' ', 1.1], ['on', 1.0], [' a ', 1.1], ['hill', 0.55],
      [', sun, ', 1.1], ['sky', 1.4641000000000006], ['.', 1.1]]],
    ['a [word]', [['a ', 1.0], ['word', 1 / 1.1]]],
    ['one BREAK two', [['one', 1.0], ['BREAK', -1], ['two', 1.0]]],
    ['', [['', 1.0]]],
  ] as Array<[string, Array<[string, number]>]>)('%j', (text, expected) => {
    expect(parsePromptAttention(text)).toEqual(expected);
  });
});

describe('promptChunks', () => {
  let tok: CLIPTokenizer;
  beforeAll(async () => { tok = await CLIPTokenizer.fromPretrained(fixture('models', 'tiny-sd15', 'tokenizer')); });

  it('a short prompt with weight 1 is the diffusers encoding', () => {
    const [c, ...rest] = promptChunks(tok, 'a photo of an astronaut');
    expect(rest).toEqual([]);
    expect(c.ids).toEqual(tok.encode('a photo of an astronaut'));
    expect(c.weights.every((w) => w === 1)).toBe(true);
  });

  it('weights follow the emphasis; BREAK starts a chunk; long prompts become several chunks', () => {
    const [c] = promptChunks(tok, 'a (red:1.5) car');
    const red = tok.encode('red', { padding: false }).slice(1, -1);
    expect(c.weights.slice(0, 1 + 1 + red.length + 2)).toEqual([1, 1, ...red.map(() => 1.5), 1, 1]);
    const b = promptChunks(tok, 'a cat BREAK a dog');
    expect(b.length).toBe(2);
    expect(b[1].ids.slice(0, 4)).toEqual(tok.encode('a dog').slice(0, 4));
    const long = Array.from({ length: 100 }, () => 'cat').join(' ');
    const l = promptChunks(tok, long);
    expect(l.length).toBe(2);
    expect(l.every((ch) => ch.ids.length === 77 && ch.ids[0] === tok.bosTokenId && ch.ids[76] === tok.eosTokenId)).toBe(true);
    expect(l[1].ids.slice(1, 26).every((id) => id === l[0].ids[1])).toBe(true); // tokens 76-100 open chunk 2
    // comma backtracking: text after the last comma (within 20 tokens) moves to the next chunk
    const withComma = `${Array.from({ length: 70 }, () => 'cat').join(' ')}, ${Array.from({ length: 10 }, () => 'dog').join(' ')}`;
    const w = promptChunks(tok, withComma);
    const comma = tok.tokenToId(',</w>')!;
    expect(w[0].ids.indexOf(comma)).toBe(71);
    expect(w[0].ids[72]).toBe(tok.eosTokenId); // padded after the comma
    expect(w[1].ids.slice(1, 11).every((id) => id === tok.tokenToId('dog</w>'))).toBe(true);
  });
});

describe("promptWeighting: 'a1111' in the pipeline", () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15')); pipe.setScheduler('DDIMScheduler'); });
  afterAll(() => pipe?.dispose());
  const opts = { negativePrompt: 'blurry', numInferenceSteps: 2, height: 32, width: 32, seed: 11, outputType: 'latent' as const };

  it('all weights 1.0 equal the plain encoding', async () => {
    const plain = await pipe.generate({ ...opts, prompt: 'a red sports car' });
    const weighted = await pipe.generate({ ...opts, prompt: 'a red sports car', promptWeighting: 'a1111' });
    expect(maxAbsDiff(weighted.latents!, plain.latents!)).toBe(0);
    const literal = await pipe.generate({ ...opts, prompt: 'a red (sports:1.0) car', promptWeighting: 'a1111' });
    expect(maxAbsDiff(literal.latents!, plain.latents!)).toBe(0);
  });

  it('emphasis and prompts over 75 tokens change the result (chunks, not truncation)', async () => {
    const plain = await pipe.generate({ ...opts, prompt: 'a red sports car' });
    const emph = await pipe.generate({ ...opts, prompt: 'a (red:1.6) sports car', promptWeighting: 'a1111' });
    expect(maxAbsDiff(emph.latents!, plain.latents!)).toBeGreaterThan(0);
    const long = `${Array.from({ length: 80 }, () => 'car').join(' ')}`;
    const truncated = await pipe.generate({ ...opts, prompt: `${long} tree tree` });
    const chunked = await pipe.generate({ ...opts, prompt: `${long} tree tree`, promptWeighting: 'a1111' });
    expect(maxAbsDiff(chunked.latents!, truncated.latents!)).toBeGreaterThan(0);
  });
});

describe('A1111 encoding rule (native encodeText)', () => {
  let pipe: StableDiffusionPipeline;
  let tok: CLIPTokenizer;
  beforeAll(async () => {
    pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15'));
    tok = await CLIPTokenizer.fromPretrained(fixture('models', 'tiny-sd15', 'tokenizer'));
  });
  afterAll(() => pipe?.dispose());
  const enc = async (ids: number[], weights?: number[]) => (await addon().encodeText((pipe as any).model.handle, {
    inputIds: { data: BigInt64Array.from(ids.map(BigInt)), shape: [1, ids.length] },
    promptWeights: weights ? { data: Float32Array.from(weights), shape: [1, weights.length] } : undefined,
    clipSkip: 0,
  })).embeds as TensorData<Float32Array>;

  it('chunk concatenation equals separate encodings of the chunks; weights 1 equal the plain encoding', async () => {
    const chunks = promptChunks(tok, `${Array.from({ length: 90 }, (_, i) => (i % 2 ? 'cat' : 'dog')).join(' ')} BREAK a house`);
    expect(chunks.length).toBe(3);
    const all = await enc(chunks.flatMap((c) => c.ids), chunks.flatMap((c) => c.weights));
    expect(all.shape).toEqual([1, 77 * 3, 32]);
    for (let c = 0; c < 3; c++) {
      const one = await enc(chunks[c].ids);
      const part = all.data.subarray(c * 77 * 32, (c + 1) * 77 * 32);
      expect(maxAbsDiff({ data: part, shape: one.shape }, one)).toBe(0);
    }
  });

  it('weights multiply the hidden states, then the original mean is restored', async () => {
    const [c] = promptChunks(tok, 'a (red:1.5) [sports] car');
    const plain = await enc(c.ids);
    const weighted = await enc(c.ids, c.weights);
    const z = Float64Array.from(plain.data);
    const mean = (a: ArrayLike<number>) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i]; return s / a.length; };
    const m0 = mean(z);
    for (let t = 0; t < 77; t++) for (let d = 0; d < 32; d++) z[t * 32 + d] *= c.weights[t];
    const r = m0 / mean(z);
    let worst = 0;
    for (let i = 0; i < z.length; i++) worst = Math.max(worst, Math.abs(z[i] * r - weighted.data[i]));
    expect(worst).toBeLessThan(1e-5);
    expect(maxAbsDiff(weighted, plain)).toBeGreaterThan(1e-3);
  });
});
