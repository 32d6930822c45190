/**
 * CLIP text encoders (transformers v4.40 CLIPTextModel / CLIPTextModelWithProjection) against the
 * fixtures: every `kind: "text_encoder"` case of tiny-sd15, tiny-sd2-v and tiny-sdxl, the textual
 * inversion case of tiny-sd15-ti, reduced-precision runs, and loader errors.
 */
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SdError, readSafetensors, writeSafetensors } from '../lib/index.js';
import { TextEncoder } from '../lib/internal/text_encoder.js';
import { testingAddon as addon } from '../lib/native.js';
import { native } from '../lib/errors.js';
import type { TensorData } from '../types/native.js';
import { loadCases, loadGolden, allClose, fixture, type GoldenCase } from './helpers/fixtures.js';

const ATOL = 1e-4;
const RTOL = 1e-4;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-clip-'));
const worst = new Map<string, { name: string; err: number }>();

afterAll(() => {
  const lines = [...worst.entries()].map(([k, v]) => `  ${k}: max |diff| ${v.err.toExponential(2)} (${v.name})`);
  console.log(`text encoder: largest error per case\n${lines.join('\n')}`);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function expectClose(caseKey: string, name: string, actual: TensorData<any>, expected: TensorData<any>): void {
  const r = allClose(actual, expected, ATOL, RTOL);
  const w = worst.get(caseKey);
  if (!w || r.maxAbsDiff > w.err) worst.set(caseKey, { name, err: r.maxAbsDiff });
  expect(r.ok, `${caseKey} ${name}: max |diff| ${r.maxAbsDiff} at ${r.worstIndex}`).toBe(true);
}

/** Compares every output tensor a case stores; returns the names compared. */
async function checkCase(caseKey: string, enc: TextEncoder, c: GoldenCase, golden: Record<string, TensorData<any>>):
  Promise<Set<string>> {
  const ids = golden.input_ids as TensorData<BigInt64Array>;
  const info = enc.info;
  const L = info.numHiddenLayers;
  expect(info.withProjection).toBe(c.params.class === 'CLIPTextModelWithProjection');

  const out = await enc.forward(ids);
  const seen = new Set<string>(['input_ids']);
  const cmp = (name: string, t: TensorData<any> | undefined) => {
    expect(t, `${caseKey}: output for ${name}`).toBeDefined();
    expectClose(caseKey, name, t!, golden[name]);
    seen.add(name);
  };
  cmp('last_hidden_state', out.lastHiddenState);
  expect(out.hiddenStates.length).toBe(L + 1);
  for (let i = 0; i <= L; i++) cmp(`hidden_states_${i}`, out.hiddenStates[i]);
  cmp('hidden_states_minus2', out.hiddenStates[L - 1]);
  cmp('hidden_states_minus2_final_layer_norm', await enc.finalLayerNorm(out.hiddenStates[L - 1]));
  if (info.withProjection) {
    cmp('text_embeds', out.textEmbeds);
    expect(golden.pooler_output).toBeUndefined();
  } else {
    cmp('pooler_output', out.pooled);
    expect(out.textEmbeds).toBeUndefined();
  }
  // The early-stopping path (clip skip) gives the same tensors as the full forward.
  expectClose(caseKey, 'hidden_states_minus2 (hiddenState(-2))', await enc.hiddenState(ids, -2), golden.hidden_states_minus2);
  expectClose(caseKey, 'hidden_states_minus2_final_layer_norm (hiddenState(-2, finalLayerNorm))',
    await enc.hiddenState(ids, -2, { finalLayerNorm: true }), golden.hidden_states_minus2_final_layer_norm);
  expectClose(caseKey, 'hidden_states_0 (hiddenState(0))', await enc.hiddenState(ids, 0), golden.hidden_states_0);
  expectClose(caseKey, 'last_hidden_state (finalLayerNorm(hiddenState(-1)))',
    await enc.finalLayerNorm(await enc.hiddenState(ids, -1)), golden.last_hidden_state);
  return seen;
}

/** The text_encoder cases of a fixture model, with the component folder each one uses. */
function textEncoderCases(model: string): Array<{ c: GoldenCase; dir: string }> {
  const { modelDir, cases } = loadCases(model);
  return cases.filter((c) => c.kind === 'text_encoder').map((c) => ({ c, dir: path.join(modelDir, c.name) }));
}

const MODELS = ['tiny-sd15', 'tiny-sd2-v', 'tiny-sdxl'];
const ALL = MODELS.flatMap((m) => textEncoderCases(m).map((x) => ({ model: m, ...x })));

describe('CLIPTextModel vs transformers 4.40 (float32, atol=rtol=1e-4)', () => {
  it('finds the text_encoder cases (sdxl has two)', () => {
    expect(ALL.map((x) => `${x.model}/${x.c.name}`)).toEqual([
      'tiny-sd15/text_encoder', 'tiny-sd2-v/text_encoder', 'tiny-sdxl/text_encoder', 'tiny-sdxl/text_encoder_2',
    ]);
  });

  for (const { model, c, dir } of ALL) {
    it(`${model}/${c.name} (${c.params.class}): every stored tensor`, async () => {
      const golden = await loadGolden(model, c.file);
      const enc = await TextEncoder.load(dir);
      try {
        expect(enc.info.dtype).toBe('float32');
        const seen = await checkCase(`${model}/${c.name}`, enc, c, golden);
        // Nothing the case stores is left unchecked.
        expect([...seen].sort()).toEqual(Object.keys(c.tensors).sort());
      } finally {
        enc.dispose();
      }
    });
  }

  it('tiny-sdxl/text_encoder_2 is CLIPTextModelWithProjection with exact-erf gelu', async () => {
    const enc = await TextEncoder.load(fixture('models', 'tiny-sdxl', 'text_encoder_2'));
    expect(enc.info).toMatchObject({ withProjection: true, projectionDim: 32, hiddenAct: 'gelu', numHiddenLayers: 4 });
    enc.dispose();
  });

  it('pools at argmax(input_ids) for legacy eos_token_id 2 (batch rows pool independently)', async () => {
    const enc = await TextEncoder.load(fixture('models', 'tiny-sd15', 'text_encoder'));
    const golden = await loadGolden('tiny-sd15', 'text_encoder.safetensors');
    const ids = golden.input_ids as TensorData<BigInt64Array>;
    const out = await enc.forward(ids, { outputHiddenStates: false });
    expect(out.hiddenStates).toEqual([]);
    const [B, S] = ids.shape;
    const D = enc.info.hiddenSize;
    for (let b = 0; b < B; b++) {
      const row = Array.from(ids.data.slice(b * S, (b + 1) * S));
      const at = row.indexOf(row.reduce((m, v) => (v > m ? v : m)));
      const expected = out.lastHiddenState.data.slice((b * S + at) * D, (b * S + at + 1) * D);
      expect(Array.from(out.pooled.data.slice(b * D, (b + 1) * D))).toEqual(Array.from(expected));
    }
    enc.dispose();
  });
});

describe('textual inversion (tiny-sd15-ti ti_text_encoder)', () => {
  it('matches after appending the embedding rows to the token table', async () => {
    const { modelDir, cases } = loadCases('tiny-sd15-ti');
    const c = cases.find((x) => x.name === 'ti_text_encoder')!;
    const golden = await loadGolden('tiny-sd15-ti', c.file);
    const enc = await TextEncoder.load(path.join(modelDir, 'text_encoder'));
    try {
      const vectors = (await readSafetensors(path.resolve(fixture('goldens', 'tiny-sd15-ti'), c.params.ti_file_diffusers)))[c.params.token];
      expect(vectors.shape).toEqual([c.params.n_vectors, enc.info.hiddenSize]);
      expectClose('tiny-sd15-ti/ti_text_encoder', 'ti_vectors_from_file', vectors, golden.ti_vectors_from_file);
      const firstId = c.params.added_tokens[c.params.token];
      expect(firstId).toBe(c.params.vocab_size_before);
      await enc.setTokenEmbeddings(firstId, vectors);
      expect(enc.info.vocabSize).toBe(c.params.embedding_rows_after);
      const seen = await checkCase('tiny-sd15-ti/ti_text_encoder', enc, c, golden);
      seen.add('ti_vectors_from_file');
      seen.add('ti_embedding_rows');
      expectClose('tiny-sd15-ti/ti_text_encoder', 'ti_embedding_rows', vectors, golden.ti_embedding_rows);
      expect([...seen].sort()).toEqual(Object.keys(c.tensors).sort());
    } finally {
      enc.dispose();
    }
  });
});

describe('reduced precision (CPU)', () => {
  // bfloat16 keeps 8 significant bits: unit roundoff u = 2^-8 ≈ 3.9e-3 per rounding. Weights,
  // activations and the output are each rounded; LayerNorm renormalises every layer so the
  // error does not compound with depth. Measured on these models: relative RMS error 0.6–1.0e-2
  // (≈ 2–3u), max error ≤ 1.6e-2 · max|ref|. Bound asserted: relative RMS ≤ 8u = 2^-5 and
  // max |diff| ≤ 16u · max|ref| = 2^-4 · max|ref|.
  const U_BF16 = 2 ** -8;
  const U_F16 = 2 ** -11;
  function relErrors(a: TensorData<any>, b: TensorData<any>): { rms: number; max: number } {
    expect(a.shape).toEqual(b.shape);
    let se = 0, sr = 0, md = 0, mr = 0;
    for (let i = 0; i < a.data.length; i++) {
      const d = a.data[i] - b.data[i];
      se += d * d; sr += b.data[i] * b.data[i];
      md = Math.max(md, Math.abs(d)); mr = Math.max(mr, Math.abs(b.data[i]));
    }
    return { rms: Math.sqrt(se / sr), max: md / mr };
  }

  for (const { model, c, dir } of ALL) {
    it(`${model}/${c.name}: bfloat16 within relative RMS 2^-5 of the float32 reference`, async () => {
      const golden = await loadGolden(model, c.file);
      const enc = await TextEncoder.load(dir, { dtype: 'bfloat16' });
      try {
        expect(enc.info.dtype).toBe('bfloat16');
        const out = await enc.forward(golden.input_ids as TensorData<BigInt64Array>);
        const pairs: Array<[string, TensorData<any>]> = [
          ['last_hidden_state', out.lastHiddenState],
          ['hidden_states_minus2', out.hiddenStates.at(-2)!],
          [out.textEmbeds ? 'text_embeds' : 'pooler_output', out.textEmbeds ?? out.pooled],
        ];
        for (const [name, t] of pairs) {
          const e = relErrors(t, golden[name]);
          expect(e.rms, `${name} relative RMS`).toBeLessThanOrEqual(8 * U_BF16);
          expect(e.max, `${name} max error / max|ref|`).toBeLessThanOrEqual(16 * U_BF16);
          expect(e.rms, `${name}: bfloat16 should not be bit-identical to float32`).toBeGreaterThan(0);
        }
      } finally {
        enc.dispose();
      }
    });
  }

  it('float16: a clear E_UNSUPPORTED_MODEL where libtorch lacks CPU kernels, else bounded error', async () => {
    const golden = await loadGolden('tiny-sd15', 'text_encoder.safetensors');
    const dir = fixture('models', 'tiny-sd15', 'text_encoder');
    const enc = await TextEncoder.load(dir, { dtype: 'float16' }).catch((e) => e);
    if (enc instanceof SdError) {
      expect(enc.code).toBe('E_UNSUPPORTED_MODEL');
      expect(enc.message).toMatch(/float16 compute on cpu is not supported by this libtorch/);
      expect(enc.message).toMatch(/float32 or bfloat16/);
      expect(enc.message).toContain(dir);
      return;
    }
    const out = await (enc as TextEncoder).forward(golden.input_ids as TensorData<BigInt64Array>);
    // float16: u = 2^-11; same reasoning as bfloat16.
    const e = relErrors(out.lastHiddenState, golden.last_hidden_state);
    expect(e.rms).toBeLessThanOrEqual(8 * U_F16);
    expect(e.max).toBeLessThanOrEqual(16 * U_F16);
    (enc as TextEncoder).dispose();
  });
});

describe('loading errors', () => {
  const src = fixture('models', 'tiny-sd15', 'text_encoder');
  const config = () => JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
  let n = 0;
  function folder(files: Record<string, string | Buffer | null>): string {
    const dir = path.join(tmp, `te${n++}`);
    fs.mkdirSync(dir);
    for (const [name, content] of Object.entries(files)) {
      if (content === null) fs.symlinkSync(path.join(src, name), path.join(dir, name));
      else fs.writeFileSync(path.join(dir, name), content);
    }
    return dir;
  }
  async function loadError(dir: string, options = {}): Promise<SdError> {
    const e = await TextEncoder.load(dir, options).then(() => undefined, (err) => err);
    expect(e).toBeInstanceOf(SdError);
    return e as SdError;
  }
  let weights: Record<string, TensorData<any>> | undefined;
  const srcWeights = async () => (weights ??= await readSafetensors(path.join(src, 'model.safetensors')));

  it('a missing folder is E_MODEL_NOT_FOUND naming it', async () => {
    const dir = path.join(tmp, 'no-such-text-encoder');
    const e = await loadError(dir);
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain(dir);
  });

  it('a missing config.json is E_MODEL_NOT_FOUND naming it', async () => {
    const dir = folder({ 'model.safetensors': null });
    const e = await loadError(dir);
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain(path.join(dir, 'config.json'));
  });

  it('a config without hidden_size is E_BAD_CONFIG naming the file and field', async () => {
    const cfg = config();
    delete cfg.hidden_size;
    const dir = folder({ 'config.json': JSON.stringify(cfg), 'model.safetensors': null });
    const e = await loadError(dir);
    expect(e.code).toBe('E_BAD_CONFIG');
    expect(e.message).toContain('"hidden_size"');
    expect(e.message).toContain(path.join(dir, 'config.json'));
  });

  it('an unknown activation is E_UNSUPPORTED_MODEL naming hidden_act', async () => {
    const dir = folder({ 'config.json': JSON.stringify({ ...config(), hidden_act: 'mish' }), 'model.safetensors': null });
    const e = await loadError(dir);
    expect(e.code).toBe('E_UNSUPPORTED_MODEL');
    expect(e.message).toMatch(/hidden_act.*mish/);
  });

  it('a weight of the wrong shape is E_BAD_CHECKPOINT naming the key and both shapes', async () => {
    const t = { ...(await srcWeights()) };
    const key = 'text_model.encoder.layers.1.mlp.fc1.weight';
    expect(t[key].shape).toEqual([37, 32]);
    t[key] = { data: t[key].data, shape: [32, 37] };
    const dir = folder({ 'config.json': null });
    await writeSafetensors(path.join(dir, 'model.safetensors'), t);
    const e = await loadError(dir);
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain(`"${key}"`);
    expect(e.message).toContain('[32, 37]');
    expect(e.message).toContain('[37, 32]');
    expect(e.message).toContain(path.join(dir, 'model.safetensors'));
  });

  it('a missing weight and an unexpected weight are E_BAD_CHECKPOINT naming the key', async () => {
    const t = { ...(await srcWeights()) };
    delete t['text_model.final_layer_norm.bias'];
    const dir1 = folder({ 'config.json': null });
    await writeSafetensors(path.join(dir1, 'model.safetensors'), t);
    const e1 = await loadError(dir1);
    expect(e1.code).toBe('E_BAD_CHECKPOINT');
    expect(e1.message).toContain('missing weight "text_model.final_layer_norm.bias"');

    const u = { ...(await srcWeights()), 'text_projection.weight': { data: new Float32Array(32 * 32), shape: [32, 32] } };
    const dir2 = folder({ 'config.json': null });
    await writeSafetensors(path.join(dir2, 'model.safetensors'), u);
    const e2 = await loadError(dir2);
    expect(e2.code).toBe('E_BAD_CHECKPOINT');
    expect(e2.message).toContain('text_projection.weight');
  });

  it('a folder holding only a pickle is E_BAD_CHECKPOINT explaining why and how to convert', async () => {
    // Not a real pickle: the loader must refuse by name, without reading it.
    const dir = folder({ 'config.json': null, 'pytorch_model.bin': Buffer.from('\x80\x02}q\x00.', 'latin1') });
    const e = await loadError(dir);
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain('pytorch_model.bin');
    expect(e.message).toMatch(/pickle/);
    expect(e.message).toMatch(/can execute arbitrary code/);
    expect(e.message).toMatch(/safetensors/);
  });

  it('a missing variant is E_MODEL_NOT_FOUND naming the file; a present variant loads', async () => {
    const e = await loadError(src, { variant: 'fp16' });
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain('model.fp16.safetensors');
    expect(e.message).toMatch(/load without a variant/);

    const dir = folder({ 'config.json': null });
    fs.symlinkSync(path.join(src, 'model.safetensors'), path.join(dir, 'model.fp16.safetensors'));
    const enc = await TextEncoder.load(dir, { variant: 'fp16' });
    expect(enc.info.hiddenSize).toBe(32);
    enc.dispose();
  });

  it('accepts and ignores the position_ids buffer; reads sharded safetensors', async () => {
    const golden = await loadGolden('tiny-sd15', 'text_encoder.safetensors');
    const ids = golden.input_ids as TensorData<BigInt64Array>;
    const all = await srcWeights();
    const withBuffer = {
      ...all,
      'text_model.embeddings.position_ids': { data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)), shape: [1, 77] },
    };
    const dir = folder({ 'config.json': null });
    await writeSafetensors(path.join(dir, 'model.safetensors'), withBuffer);
    const enc = await TextEncoder.load(dir);
    expectClose('tiny-sd15/text_encoder (+position_ids)', 'last_hidden_state',
      (await enc.forward(ids)).lastHiddenState, golden.last_hidden_state);
    enc.dispose();

    const names = Object.keys(all).sort();
    const half = Math.floor(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const sharded = folder({ 'config.json': null });
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < 2; s++) {
      const file = `model-0000${s + 1}-of-00002.safetensors`;
      await writeSafetensors(path.join(sharded, file), Object.fromEntries(shards[s].map((k) => [k, all[k]])));
      for (const k of shards[s]) weightMap[k] = file;
    }
    fs.writeFileSync(path.join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const enc2 = await TextEncoder.load(sharded);
    expectClose('tiny-sd15/text_encoder (sharded)', 'last_hidden_state',
      (await enc2.forward(ids)).lastHiddenState, golden.last_hidden_state);
    enc2.dispose();
  });

  it('rejects bad options with E_INVALID_ARGUMENT', async () => {
    const e = await loadError(src, { dtype: 'float8' });
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toMatch(/'float32', 'float16' or 'bfloat16'.*'float8'/);
    const d = await loadError(src, { device: 'tpu:x' });
    expect(d.code).toBe('E_INVALID_ARGUMENT');
  });
});

describe('call errors', () => {
  const dir = fixture('models', 'tiny-sd15', 'text_encoder');
  const ids = (shape: number[], fill: bigint) => ({
    data: new BigInt64Array(shape.reduce((a, b) => a * b, 1)).fill(fill), shape,
  });

  it('rejects out-of-vocabulary ids, too-long sequences, wrong ranks and bad hidden-state indices', async () => {
    const enc = await TextEncoder.load(dir);
    try {
      const cases: Array<[Promise<unknown>, RegExp]> = [
        [enc.forward(ids([1, 77], 49408n)), /token id 49408.*\[0, 49408\)/],
        [enc.forward(ids([1, 77], -1n)), /token id -1/],
        [enc.forward(ids([1, 78], 1n)), /max_position_embeddings \(77\)/],
        [enc.forward(ids([77], 1n)), /2-d tensor/],
        [enc.hiddenState(ids([1, 77], 1n), 6), /index 6 is out of range.*-6 … 5/],
        [enc.hiddenState(ids([1, 77], 1n), -7), /index -7 is out of range/],
        [enc.finalLayerNorm({ data: new Float32Array(31), shape: [1, 31] }), /hidden_size \(32\)/],
        [enc.setTokenEmbeddings(50000, { data: new Float32Array(32), shape: [1, 32] }), /start at id 50000/],
      ];
      // Settle every call at once so no rejection waits unobserved.
      const settled = await Promise.all(cases.map(([p]) => p.then(() => undefined, (err) => err)));
      for (const [i, [, msg]] of cases.entries()) {
        const e = settled[i];
        expect(e).toBeInstanceOf(SdError);
        expect(e.code).toBe('E_INVALID_ARGUMENT');
        expect(e.message).toMatch(msg);
      }
      // Shorter sequences work (positions 0..S-1), and the model is still usable after errors.
      const out = await enc.forward(ids([2, 5], 7n));
      expect(out.lastHiddenState.shape).toEqual([2, 5, 32]);
    } finally {
      enc.dispose();
    }
  });

  it('a disposed handle is E_DISPOSED (wrapper and raw addon)', async () => {
    const enc = await TextEncoder.load(dir);
    enc.dispose();
    expect(() => enc.info).toThrow(/disposed/);
    const h = await native(() => addon().loadTextEncoder(dir));
    addon().disposeTextEncoder(h);
    const e = await native(() => addon().textEncoderForward(h, ids([1, 77], 1n))).catch((err) => err);
    expect(e).toBeInstanceOf(SdError);
    expect(e.code).toBe('E_DISPOSED');
  });
});
