/**
 * CLIPTokenizer against transformers' slow CLIPTokenizer (v4.40, BasicTokenizer cleaning path):
 * every case of clip-tokenizer/tokenizer-cases.json, the input_ids stored in the text-encoder
 * goldens (SD 1.5, SD 2.x, SDXL tokenizer + tokenizer_2, textual inversion), and the errors.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLIPTokenizer, SdError } from '../lib/index.js';
import { fixture, loadCases } from './helpers/fixtures.js';

interface TokenizerCase {
  prompt: string;
  input_ids: number[];
  ids_unpadded_untruncated: number[];
  tokens: string[];
  truncated: boolean;
  num_tokens_untruncated: number;
}
const casesFile = JSON.parse(fs.readFileSync(fixture('clip-tokenizer', 'tokenizer-cases.json'), 'utf8')) as {
  text_cleaning_path: string; bos_token_id: number; eos_token_id: number; pad_token_id: number;
  model_max_length: number; cases: TokenizerCase[];
};

/** Reads one int64 tensor of a safetensors file as numbers, rows of `shape[1]` (pure JS: no addon needed). */
function readInt64Rows(file: string, name: string): number[][] {
  const buf = fs.readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  const info = header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] };
  expect(info.dtype).toBe('I64');
  const base = 8 + headerLen;
  const [rows, cols] = info.shape;
  const out: number[][] = [];
  for (let r = 0; r < rows; r++) {
    const row: number[] = [];
    for (let c = 0; c < cols; c++) row.push(Number(buf.readBigInt64LE(base + info.data_offsets[0] + (r * cols + c) * 8)));
    out.push(row);
  }
  return out;
}

async function expectSdError(fn: () => unknown, code: string, message: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(SdError);
  expect((caught as SdError).code).toBe(code);
  expect((caught as SdError).message).toMatch(message);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-tok-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
/** A tokenizer folder in tmp: vocab/merges linked from the fixture, plus the given json files. */
function tokenizerDir(name: string, files: Record<string, unknown>, link = ['vocab.json', 'merges.txt']): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of link) fs.symlinkSync(fixture('clip-tokenizer', f), path.join(dir, f));
  for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), typeof v === 'string' ? v : JSON.stringify(v));
  return dir;
}

describe('CLIPTokenizer', () => {
  let tok: CLIPTokenizer;
  let loadMs = 0;
  beforeAll(async () => {
    const t0 = performance.now();
    tok = await CLIPTokenizer.fromPretrained(fixture('clip-tokenizer'));
    loadMs = performance.now() - t0;
  });

  it('loads the CLIP ViT-L/14 tokenizer: ids, sizes, max length', () => {
    expect(casesFile.text_cleaning_path).toBe('BasicTokenizer');
    expect(tok.vocabSize).toBe(49408);
    expect(tok.length).toBe(49408);
    expect(tok.bosTokenId).toBe(casesFile.bos_token_id);
    expect(tok.eosTokenId).toBe(casesFile.eos_token_id);
    expect(tok.padTokenId).toBe(casesFile.pad_token_id);
    expect(tok.unkTokenId).toBe(49407);
    expect(tok.modelMaxLength).toBe(casesFile.model_max_length);
    expect(tok.specialTokens).toEqual({ bos: '<|startoftext|>', eos: '<|endoftext|>', unk: '<|endoftext|>', pad: '<|endoftext|>' });
    expect(tok.tokenToId('cat</w>')).toBe(2368);
    expect(tok.idToToken(2368)).toBe('cat</w>');
    expect(tok.tokenToId('no such token')).toBeUndefined();
  });

  it('loads vocab (49408) + merges (48894) quickly', () => {
    console.log(`tokenizer load: ${loadMs.toFixed(0)} ms`);
    // Typically ~0.1 s; the bound is loose because the test machine's 2 cores are shared.
    expect(loadMs).toBeLessThan(1500);
  });

  it('encodes the sanity prompt', () => {
    const ids = tok.encode('a photo of an astronaut riding a horse on mars', { padding: false });
    expect(ids).toEqual([49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]);
    const padded = tok.encode('a photo of an astronaut riding a horse on mars');
    expect(padded).toHaveLength(77);
    expect(padded.slice(12)).toEqual(new Array(65).fill(49407));
  });

  describe(`matches transformers on every case of tokenizer-cases.json (${casesFile.cases.length})`, () => {
    it.each(casesFile.cases.map((c) => [JSON.stringify(c.prompt).slice(0, 70), c] as const))('%s', (_name, c) => {
      expect(tok.tokenize(c.prompt)).toEqual(c.tokens);
      expect(tok.encode(c.prompt, { padding: false, truncation: false })).toEqual(c.ids_unpadded_untruncated);
      expect(tok.encode(c.prompt)).toEqual(c.input_ids);
      expect(tok.encode(c.prompt, { padding: 'max_length', maxLength: 77, truncation: true })).toEqual(c.input_ids);
      expect(c.ids_unpadded_untruncated).toHaveLength(c.num_tokens_untruncated);
      expect(c.truncated).toBe(c.num_tokens_untruncated > 77);
    });
  });

  it('covers truncated cases: bos + first 75 content tokens + eos', () => {
    const long = casesFile.cases.filter((c) => c.truncated);
    expect(long.length).toBeGreaterThan(0);
    for (const c of long) {
      const ids = tok.encode(c.prompt);
      expect(ids).toHaveLength(77);
      expect(ids.slice(0, 76)).toEqual(c.ids_unpadded_untruncated.slice(0, 76));
      expect(ids[76]).toBe(49407);
    }
  });

  it('honours maxLength, padding and truncation options', () => {
    const p = 'a photo of an astronaut riding a horse on mars';
    expect(tok.encode(p, { maxLength: 5 })).toEqual([49406, 320, 1125, 539, 49407]);
    expect(tok.encode(p, { maxLength: 5, truncation: false })).toHaveLength(12); // too long: neither cut nor padded
    expect(tok.encode('cat', { maxLength: 6 })).toEqual([49406, 2368, 49407, 49407, 49407, 49407]);
    expect(tok.encode('cat', { padding: false, maxLength: 6 })).toEqual([49406, 2368, 49407]);
    expect(tok.encode('', { padding: false })).toEqual([49406, 49407]);
  });

  it('matches the special tokens literally, before cleaning', () => {
    expect(tok.tokenize('cat<|endoftext|>dog')).toEqual(['cat</w>', '<|endoftext|>', 'dog</w>']);
    // Upper case is not an added-token match, but the cleaned text meets the CLIP regex alternative.
    expect(tok.tokenize('<|ENDOFTEXT|>')).toEqual(['<|endoftext|>']);
  });

  it('decodes ids back to text', () => {
    const ids = tok.encode('a photo of an Astronaut, riding a horse on mars!');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('a photo of an astronaut, riding a horse on mars!');
    expect(tok.decode(tok.encode('café 🐱', { padding: false }))).toBe('<|startoftext|>café 🐱 <|endoftext|>');
  });

  it('rejects bad arguments with E_INVALID_ARGUMENT', async () => {
    await expectSdError(() => tok.encode(42 as unknown as string), 'E_INVALID_ARGUMENT', /Expected a string for text but received 42 of type number/);
    await expectSdError(() => tok.encode('x', { maxLength: 1 }), 'E_INVALID_ARGUMENT', /maxLength/);
    await expectSdError(() => tok.encode('x', { maxLength: 7.5 }), 'E_INVALID_ARGUMENT', /maxLength/);
    await expectSdError(() => tok.encode('x', { padding: 'longest' as 'max_length' }), 'E_INVALID_ARGUMENT', /padding/);
    await expectSdError(() => tok.tokenize(null as unknown as string), 'E_INVALID_ARGUMENT', /text/);
    await expectSdError(() => tok.addTokens(['ok', ''] as string[]), 'E_INVALID_ARGUMENT', /tokens\[1\]/);
  });
});

describe('CLIPTokenizer: model folders and goldens', () => {
  it('SD 1.x tokenizer pads with <|endoftext|> and reproduces the text_encoder golden ids', async () => {
    const { cases, modelDir } = loadCases('tiny-sd15');
    const te = cases.find((c) => c.name === 'text_encoder')!;
    const tok = await CLIPTokenizer.fromPretrained(path.join(modelDir, 'tokenizer'));
    expect(tok.padTokenId).toBe(49407);
    const expected = readInt64Rows(fixture('goldens', 'tiny-sd15', te.file), 'input_ids');
    expect(te.params.prompts.map((p: string) => tok.encode(p))).toEqual(expected);
  });

  it('SD 2.x tokenizer pads with "!" (id 0) and reproduces the text_encoder golden ids', async () => {
    const { cases, modelDir } = loadCases('tiny-sd2-v');
    const te = cases.find((c) => c.name === 'text_encoder')!;
    const tok = await CLIPTokenizer.fromPretrained(path.join(modelDir, 'tokenizer'));
    expect(tok.specialTokens.pad).toBe('!');
    expect(tok.padTokenId).toBe(0);
    expect(tok.length).toBe(49408);
    const expected = readInt64Rows(fixture('goldens', 'tiny-sd2-v', te.file), 'input_ids');
    expect(te.params.prompts.map((p: string) => tok.encode(p))).toEqual(expected);
    expect(tok.encode('cat').slice(0, 4)).toEqual([49406, 2368, 49407, 0]);
    // As in transformers, the pad token "!" is a special added token: matched literally, one id per "!".
    expect(tok.tokenize('wow!!!')).toEqual(['wow</w>', '!', '!', '!']);
    expect(tok.encode('wow!!!', { padding: false })).toEqual([49406, 2781, 0, 0, 0, 49407]);
    // …whereas the SD 1.x tokenizer merges it by BPE ('!!!</w>' = 995).
    const sd1 = await CLIPTokenizer.fromPretrained(fixture('clip-tokenizer'));
    expect(sd1.encode('wow!!!', { padding: false })).toEqual([49406, 2781, 995, 49407]);
  });

  it('SDXL tokenizer and tokenizer_2 reproduce their golden ids', async () => {
    const { cases, modelDir } = loadCases('tiny-sdxl');
    for (const [name, folder, pad] of [['text_encoder', 'tokenizer', 49407], ['text_encoder_2', 'tokenizer_2', 0]] as const) {
      const te = cases.find((c) => c.name === name)!;
      const tok = await CLIPTokenizer.fromPretrained(path.join(modelDir, folder));
      expect(tok.padTokenId).toBe(pad);
      const expected = readInt64Rows(fixture('goldens', 'tiny-sdxl', te.file), 'input_ids');
      expect(te.params.prompts.map((p: string) => tok.encode(p))).toEqual(expected);
    }
  });

  it('addTokens: textual-inversion tokens get the next ids and are matched literally (golden ids)', async () => {
    const { cases, modelDir } = loadCases('tiny-sd15-ti');
    const te = cases.find((c) => c.name === 'ti_text_encoder')!;
    const tok = await CLIPTokenizer.fromPretrained(path.join(modelDir, 'tokenizer'));
    const added = te.params.added_tokens as Record<string, number>;
    expect(tok.addTokens(Object.keys(added))).toEqual(Object.values(added)); // [49408, 49409]
    expect(tok.length).toBe(te.params.vocab_size_after);
    expect(tok.vocabSize).toBe(te.params.vocab_size_before);
    expect(tok.tokenize('a photo of <my-token> <my-token>_1 riding'))
      .toEqual(['a</w>', 'photo</w>', 'of</w>', '<my-token>', '<my-token>_1', 'riding</w>']);
    expect(tok.encode('a photo of <my-token> <my-token>_1 riding', { padding: false }))
      .toEqual([49406, 320, 1125, 539, 49408, 49409, 6765, 49407]);
    const expected = readInt64Rows(fixture('goldens', 'tiny-sd15-ti', te.file), 'input_ids');
    expect(te.params.prompts.map((p: string) => tok.encode(p))).toEqual(expected);
    // Re-adding keeps the ids; a longer added token wins over its prefix; matching is case-sensitive.
    expect(tok.addTokens(['<my-token>_1', '<my-token>'])).toEqual([49409, 49408]);
    expect(tok.tokenize('x<my-token>_12')).toEqual(['x</w>', '<my-token>_1', '2</w>']);
    expect(tok.tokenize('<MY-TOKEN>')).not.toContain('<my-token>');
    expect(tok.decode([49406, 320, 49408, 49409, 49407], { skipSpecialTokens: true })).toBe('a <my-token> <my-token>_1');
  });

  it('a missing folder or file is E_MODEL_NOT_FOUND naming it', async () => {
    const missing = path.join(tmp, 'does-not-exist');
    await expectSdError(() => CLIPTokenizer.fromPretrained(missing), 'E_MODEL_NOT_FOUND', /does-not-exist/);
    const noVocab = tokenizerDir('no-vocab', {}, ['merges.txt']);
    await expectSdError(() => CLIPTokenizer.fromPretrained(noVocab), 'E_MODEL_NOT_FOUND', /vocab\.json/);
    const noMerges = tokenizerDir('no-merges', {}, ['vocab.json']);
    await expectSdError(() => CLIPTokenizer.fromPretrained(noMerges), 'E_MODEL_NOT_FOUND', /merges\.txt/);
  });

  it('malformed files are E_BAD_CONFIG naming the file and field', async () => {
    const badJson = tokenizerDir('bad-json', { 'tokenizer_config.json': '{"pad_token": ' });
    await expectSdError(() => CLIPTokenizer.fromPretrained(badJson), 'E_BAD_CONFIG', /tokenizer_config\.json: invalid JSON/);
    const badField = tokenizerDir('bad-field', { 'special_tokens_map.json': { pad_token: 3 } });
    await expectSdError(() => CLIPTokenizer.fromPretrained(badField), 'E_BAD_CONFIG', /special_tokens_map\.json: field "pad_token"/);
    const badLen = tokenizerDir('bad-len', { 'tokenizer_config.json': { model_max_length: 'long' } });
    await expectSdError(() => CLIPTokenizer.fromPretrained(badLen), 'E_BAD_CONFIG', /model_max_length/);
    const badVocab = tokenizerDir('bad-vocab', { 'vocab.json': { a: 1.5 } }, ['merges.txt']);
    await expectSdError(() => CLIPTokenizer.fromPretrained(badVocab), 'E_BAD_CONFIG', /vocab\.json: the id of token "a"/);
  });

  it('reads AddedToken objects, defaults, and appends special tokens missing from the vocab', async () => {
    const dir = tokenizerDir('objects', {
      'tokenizer_config.json': {
        bos_token: { __type: 'AddedToken', content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
        pad_token: { content: '!' },
        additional_special_tokens: ['<extra>'],
      },
    });
    const tok = await CLIPTokenizer.fromPretrained(dir);
    expect(tok.bosTokenId).toBe(49406);
    expect(tok.eosTokenId).toBe(49407); // default
    expect(tok.padTokenId).toBe(0);
    expect(tok.modelMaxLength).toBe(77); // default
    expect(tok.tokenToId('<extra>')).toBe(49408);
    expect(tok.length).toBe(49409);
    expect(tok.encode('a <extra> cat', { padding: false })).toEqual([49406, 320, 49408, 2368, 49407]);
    expect(tok.addTokens(['<new>'])).toEqual([49409]);
  });

  it('lstrip/rstrip of an added token eat the whitespace beside it', async () => {
    const dir = tokenizerDir('strip', {
      'tokenizer_config.json': { added_tokens_decoder: { 49408: { content: '<s>', lstrip: true, rstrip: true, special: false } } },
    });
    const tok = await CLIPTokenizer.fromPretrained(dir);
    expect(tok.tokenize('a  <s>  cat')).toEqual(['a</w>', '<s>', 'cat</w>']);
    expect(tok.encode('a <s> cat', { padding: false })).toEqual([49406, 320, 49408, 2368, 49407]);
  });
});
