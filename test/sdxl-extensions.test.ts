/**
 * What users bring from civitai, on SDXL (tiny-sdxl): a LoRA for both text encoders and the UNet
 * (kohya `lora_te1_` / `lora_te2_` / `lora_unet_`, made here by the README's formula) proven equal
 * to merging it by hand (fused weights, and images against a hand-merged copy of the model);
 * SDXL textual inversion (`clip_l` + `clip_g` files); A1111 prompt weighting on both encoders; and
 * the speed/memory toggles on the SDXL pipeline.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  StableDiffusionPipeline, StableDiffusionXLPipeline, CLIPTokenizer, SdError, promptChunks, readSafetensors, writeSafetensors,
} from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';
import { fixture, maxAbs, maxAbsDiff } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

const MODEL = fixture('models', 'tiny-sdxl');
const handle = (p: unknown) => (p as any).model.handle;
type Component = 'unet' | 'text_encoder' | 'text_encoder_2';
const weightOf = (p: unknown, c: Component, name: string) => addon().pipelineWeight(handle(p), c, name) as Promise<TensorData<Float32Array>>;

/** Seeded uniform values in [-a, a] (mulberry32). */
function uniform(n: number, seed: number, a: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * a;
  }
  return out;
}

const GEN = { prompt: 'a lighthouse on a cliff at dusk', negativePrompt: 'blurry', width: 64, height: 64, numInferenceSteps: 3, seed: 7 };
const largest: Record<string, number> = {};
const note = (k: string, v: number) => { largest[k] = Math.max(largest[k] ?? 0, v); return v; };
afterAll(() => console.log('sdxl-extensions largest errors', largest));
const relErr = (a: TensorData<Float32Array>, b: TensorData<Float32Array>) => maxAbsDiff(a, b) / maxAbs(b);
const same = (a: Buffer, b: Buffer) => a.length === b.length && Buffer.compare(a, b) === 0;
const pixels = async (p: StableDiffusionXLPipeline, extra: Record<string, unknown> = {}) => {
  const r = await p.generate({ ...GEN, ...extra });
  return { latents: r.latents as TensorData<Float32Array>, image: r.images[0].data as Buffer };
};

// ---------------------------------------------------------------------------------------------
// LoRA on both text encoders + UNet, by the README formula: W' = W + s·(alpha/rank)·(up @ down)
// ---------------------------------------------------------------------------------------------

interface Target { component: Component; module: string; kohya: string }
const TARGETS: Target[] = [
  { component: 'unet', module: 'down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q', kohya: 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q' },
  { component: 'unet', module: 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k', kohya: 'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k' },
  { component: 'unet', module: 'down_blocks.0.resnets.0.conv1', kohya: 'lora_unet_down_blocks_0_resnets_0_conv1' }, // 3×3 conv
  { component: 'text_encoder', module: 'text_model.encoder.layers.0.self_attn.q_proj', kohya: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj' },
  { component: 'text_encoder', module: 'text_model.encoder.layers.2.mlp.fc1', kohya: 'lora_te1_text_model_encoder_layers_2_mlp_fc1' },
  { component: 'text_encoder_2', module: 'text_model.encoder.layers.1.self_attn.k_proj', kohya: 'lora_te2_text_model_encoder_layers_1_self_attn_k_proj' },
  { component: 'text_encoder_2', module: 'text_model.encoder.layers.2.mlp.fc2', kohya: 'lora_te2_text_model_encoder_layers_2_mlp_fc2' },
];
const RANK = 4, ALPHA = 2;

/** delta = (up @ down) reshaped like W (Linear [out, in]; conv [out, in, kh, kw] with up [out, r, 1, 1]). */
function loraDelta(up: TensorData<Float32Array>, down: TensorData<Float32Array>): Float64Array {
  const out = up.shape[0], r = up.shape[1];
  const inner = down.data.length / r; // in · kh · kw
  const d = new Float64Array(out * inner);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < r; k++) {
      const u = up.data[o * r + k];
      for (let j = 0; j < inner; j++) d[o * inner + j] += u * down.data[k * inner + j];
    }
  }
  return d;
}

describe('SDXL LoRA (lora_te1_ + lora_te2_ + lora_unet_): loading equals merging by hand', () => {
  let pipe: StableDiffusionXLPipeline;
  let tmp: string;
  let loraFile: string;
  const pairs = new Map<string, { up: TensorData<Float32Array>; down: TensorData<Float32Array>; base: TensorData<Float32Array> }>();
  const SCALE = 0.7;

  beforeAll(async () => {
    pipe = await StableDiffusionXLPipeline.fromPretrained(MODEL);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-xl-lora-'));
    const file: Record<string, TensorData> = {};
    let seed = 100;
    for (const t of TARGETS) {
      const base = await weightOf(pipe, t.component, `${t.module}.weight`);
      const [out, inn, kh, kw] = base.shape;
      const downShape = base.shape.length === 4 ? [RANK, inn, kh, kw] : [RANK, inn];
      const upShape = base.shape.length === 4 ? [out, RANK, 1, 1] : [out, RANK];
      const down = { data: uniform(downShape.reduce((a, b) => a * b, 1), seed++, 0.3), shape: downShape };
      const up = { data: uniform(upShape.reduce((a, b) => a * b, 1), seed++, 0.3), shape: upShape };
      file[`${t.kohya}.lora_down.weight`] = down;
      file[`${t.kohya}.lora_up.weight`] = up;
      file[`${t.kohya}.alpha`] = { data: new Float32Array([ALPHA]), shape: [] };
      pairs.set(t.module + t.component, { up, down, base });
    }
    loraFile = path.join(tmp, 'xl-lora.safetensors');
    await writeSafetensors(loraFile, file);
  });
  afterAll(() => {
    pipe?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** The weight W + s·(alpha/rank)·(up @ down) computed here, in float64, rounded to float32. */
  const handMerged = (t: Target, s: number): Float32Array => {
    const { up, down, base } = pairs.get(t.module + t.component)!;
    const d = loraDelta(up, down);
    return Float32Array.from(base.data, (w, i) => w + s * (ALPHA / RANK) * d[i]);
  };

  it('attaches to the UNet and to both text encoders', async () => {
    const r = await pipe.loadLoraWeights(loraFile, { adapterName: 'xl' });
    expect(r).toEqual({ adapter: 'xl', unetModules: 3, textEncoderModules: 2, textEncoder2Modules: 2 });
  });

  it('fuseLora gives the hand-merged weights of every targeted layer; unfuseLora restores them bit for bit', async () => {
    const fused = await pipe.fuseLora({ loraScale: SCALE });
    expect(fused).toBe(TARGETS.length);
    for (const t of TARGETS) {
      const w = await weightOf(pipe, t.component, `${t.module}.weight`);
      const want = handMerged(t, SCALE);
      const base = pairs.get(t.module + t.component)!.base;
      expect(maxAbsDiff(base, { data: want, shape: base.shape })).toBeGreaterThan(1e-3); // the LoRA changes the layer
      expect(note('fused vs hand-merged weight (abs)', maxAbsDiff(w, { data: want, shape: w.shape })), `${t.component} ${t.module}`).toBeLessThan(1e-6);
    }
    expect(await pipe.unfuseLora()).toBe(TARGETS.length);
    for (const t of TARGETS) {
      const w = await weightOf(pipe, t.component, `${t.module}.weight`);
      expect(maxAbsDiff(w, pairs.get(t.module + t.component)!.base)).toBe(0);
    }
  });

  it('the unfused LoRA at loraScale 0.7 generates what a hand-merged copy of the model generates', async () => {
    // The hand-merged model: tiny-sdxl with the three weight files rewritten (everything else linked).
    const merged = path.join(tmp, 'merged');
    fs.mkdirSync(merged);
    for (const entry of fs.readdirSync(MODEL)) {
      if (['unet', 'text_encoder', 'text_encoder_2'].includes(entry)) continue;
      fs.symlinkSync(path.join(MODEL, entry), path.join(merged, entry));
    }
    for (const c of ['unet', 'text_encoder', 'text_encoder_2'] as const) {
      fs.mkdirSync(path.join(merged, c));
      fs.copyFileSync(path.join(MODEL, c, 'config.json'), path.join(merged, c, 'config.json'));
      const file = c === 'unet' ? 'diffusion_pytorch_model.safetensors' : 'model.safetensors';
      const tensors = await readSafetensors(path.join(MODEL, c, file));
      for (const t of TARGETS.filter((x) => x.component === c)) {
        tensors[`${t.module}.weight`] = { data: handMerged(t, SCALE), shape: tensors[`${t.module}.weight`].shape };
      }
      await writeSafetensors(path.join(merged, c, file), tensors);
    }
    const byHand = await StableDiffusionXLPipeline.fromPretrained(merged);
    try {
      const want = await pixels(byHand);
      const got = await pixels(pipe, { loraScale: SCALE });
      expect(note('unfused LoRA vs hand-merged model, latents (rel)', relErr(got.latents, want.latents))).toBeLessThan(1e-4);
      let off = 0;
      for (let i = 0; i < want.image.length; i++) {
        expect(Math.abs(got.image[i] - want.image[i])).toBeLessThanOrEqual(1);
        if (got.image[i] !== want.image[i]) off++;
      }
      expect(off / want.image.length).toBeLessThan(0.01);
      // and the LoRA matters: without it (scale 0) the image is the base model's, not this one
      const none = await pixels(pipe, { loraScale: 0 });
      expect(relErr(none.latents, want.latents)).toBeGreaterThan(1e-3);
    } finally {
      byHand.dispose();
    }
  });

  it('unloading leaves the pipeline bit-identical to one that never had the LoRA', async () => {
    const fresh = await StableDiffusionXLPipeline.fromPretrained(MODEL);
    try {
      const before = await pixels(fresh);
      await pipe.unloadLoraWeights();
      expect(await pipe.getAdapters()).toEqual([]);
      const after = await pixels(pipe);
      expect(same(after.image, before.image)).toBe(true);
      expect(maxAbsDiff(after.latents, before.latents)).toBe(0);
    } finally {
      fresh.dispose();
    }
  });

  it('an SDXL LoRA on an SD 1.5 model is an E_BAD_CHECKPOINT listing the keys that fit nothing', async () => {
    const sd15 = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15'));
    try {
      const err = await sd15.loadLoraWeights(loraFile).catch((e) => e);
      expect(err).toBeInstanceOf(SdError);
      expect(err.code).toBe('E_BAD_CHECKPOINT');
      expect(err.message).toContain('lora_te2_text_model_encoder_layers_1_self_attn_k_proj');
      expect(err.message).toContain('it has no text_encoder_2');
      expect(await sd15.getAdapters()).toEqual([]);
    } finally {
      sd15.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Textual inversion: SDXL files carry clip_l (text_encoder) and clip_g (text_encoder_2) vectors
// ---------------------------------------------------------------------------------------------

describe('SDXL textual inversion (clip_l + clip_g)', () => {
  let pipe: StableDiffusionXLPipeline;
  let tmp: string;
  beforeAll(async () => {
    pipe = await StableDiffusionXLPipeline.fromPretrained(MODEL);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-xl-ti-'));
  });
  afterAll(() => {
    pipe?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('adds the tokens to both tokenizers and the vectors to both encoders; prompts use them', async () => {
    const clipL = { data: uniform(2 * 32, 1, 0.05), shape: [2, 32] };
    const clipG = { data: uniform(2 * 32, 2, 0.05), shape: [2, 32] };
    const file = path.join(tmp, 'xl-style.safetensors');
    await writeSafetensors(file, { clip_l: clipL, clip_g: clipG });
    const plain = await pixels(pipe, { prompt: 'a photo of xl-style' });
    expect(await pipe.loadTextualInversion(file)).toEqual(['xl-style', 'xl-style_1']);
    const rows = async (c: Component) => {
      const w = await weightOf(pipe, c, 'text_model.embeddings.token_embedding.weight');
      expect(w.shape).toEqual([49410, 32]);
      return { data: w.data.slice(49408 * 32), shape: [2, 32] };
    };
    expect(maxAbsDiff(await rows('text_encoder'), clipL)).toBe(0);
    expect(maxAbsDiff(await rows('text_encoder_2'), clipG)).toBe(0);
    const [t1, t2] = (pipe as any).model.tokenizers as CLIPTokenizer[];
    for (const tok of [t1, t2]) expect(tok.encode('xl-style xl-style_1', { padding: false }).slice(1, 3)).toEqual([49408, 49409]);
    const withToken = await pixels(pipe, { prompt: 'a photo of xl-style' });
    expect(relErr(withToken.latents, plain.latents)).toBeGreaterThan(1e-3);
  });

  it('a one-set file goes to text_encoder by default (diffusers), or to the encoder named by textEncoder', async () => {
    const table = (c: Component) => weightOf(pipe, c, 'text_model.embeddings.token_embedding.weight');
    const v = { data: uniform(32, 3, 0.05), shape: [1, 32] };
    const file = path.join(tmp, 'one.safetensors');
    await writeSafetensors(file, { '<one>': v });
    expect(await pipe.loadTextualInversion(file, { textEncoder: 'text_encoder_2' })).toEqual(['<one>']);
    const w2 = await table('text_encoder_2');
    expect(w2.shape[0]).toBe(49411);
    expect(maxAbsDiff({ data: w2.data.slice(49410 * 32), shape: [1, 32] }, v)).toBe(0);
    expect((await table('text_encoder')).shape[0]).toBe(49410); // text_encoder untouched

    const u = { data: uniform(32, 4, 0.05), shape: [1, 32] };
    const file2 = path.join(tmp, 'two.safetensors');
    await writeSafetensors(file2, { '<two>': u });
    expect(await pipe.loadTextualInversion(file2)).toEqual(['<two>']); // no option: text_encoder
    const w1 = await table('text_encoder');
    expect(w1.shape[0]).toBe(49411);
    expect(maxAbsDiff({ data: w1.data.slice(49410 * 32), shape: [1, 32] }, u)).toBe(0);
    expect((await table('text_encoder_2')).shape[0]).toBe(49411); // text_encoder_2 untouched
    const [t1, t2] = (pipe as any).model.tokenizers as CLIPTokenizer[];
    expect(t1.tokenToId('<two>')).toBe(49410);
    expect(t2.tokenToId('<two>')).toBeUndefined();
  });

  it('bad files are clear errors and change nothing', async () => {
    const wrongWidth = path.join(tmp, 'zq-wide-emb.safetensors');
    await writeSafetensors(wrongWidth, { clip_l: { data: new Float32Array(768), shape: [1, 768] }, clip_g: { data: new Float32Array(1280), shape: [1, 1280] } });
    const e1 = await pipe.loadTextualInversion(wrongWidth).catch((e) => e);
    expect(e1.code).toBe('E_BAD_CHECKPOINT');
    expect(e1.message).toMatch(/width 768 .*needs 32/);
    const half = path.join(tmp, 'zq-half-emb.safetensors');
    await writeSafetensors(half, { clip_l: { data: new Float32Array(32), shape: [1, 32] } });
    const e2 = await pipe.loadTextualInversion(half).catch((e) => e);
    expect(e2.code).toBe('E_BAD_CHECKPOINT');
    expect(e2.message).toContain('clip_g');
    const [t1] = (pipe as any).model.tokenizers as CLIPTokenizer[];
    expect(t1.tokenToId('zq-wide-emb')).toBeUndefined();
    const sd15 = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15'));
    try {
      const f = path.join(tmp, 'zq-xl-emb.safetensors');
      await writeSafetensors(f, { clip_l: { data: new Float32Array(32), shape: [1, 32] }, clip_g: { data: new Float32Array(32), shape: [1, 32] } });
      const e3 = await sd15.loadTextualInversion(f).catch((e) => e);
      expect(e3.code).toBe('E_BAD_CHECKPOINT');
      expect(e3.message).toMatch(/SDXL embedding/);
    } finally {
      sd15.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A1111 prompt weighting on SDXL: emphasis on each encoder's hidden states, 75-token chunks
// ---------------------------------------------------------------------------------------------

describe("SDXL promptWeighting: 'a1111'", () => {
  let pipe: StableDiffusionXLPipeline;
  let t1: CLIPTokenizer, t2: CLIPTokenizer;
  beforeAll(async () => {
    pipe = await StableDiffusionXLPipeline.fromPretrained(MODEL);
    [t1, t2] = (pipe as any).model.tokenizers as CLIPTokenizer[];
  });
  afterAll(() => pipe?.dispose());
  const ids = (a: number[]) => ({ data: BigInt64Array.from(a.map(BigInt)), shape: [1, a.length] });
  const ws = (a: number[]) => ({ data: Float32Array.from(a), shape: [1, a.length] });
  const enc = (c1: { ids: number[]; weights?: number[] }, c2: { ids: number[]; weights?: number[] }) =>
    addon().encodeText(handle(pipe), {
      inputIds: ids(c1.ids), inputIds2: ids(c2.ids), promptWeights: c1.weights && ws(c1.weights), promptWeights2: c2.weights && ws(c2.weights),
      clipSkip: 0,
    }) as Promise<{ embeds: TensorData<Float32Array>; pooled: TensorData<Float32Array> }>;

  it('weights 1.0 equal the plain encoding; chunks equal separate encodings; pooled comes from the first chunk', async () => {
    const text = `${Array.from({ length: 90 }, (_, i) => (i % 2 ? 'cat' : 'dog')).join(' ')} BREAK a house`;
    const a = promptChunks(t1, text), b = promptChunks(t2, text);
    expect(a.length).toBe(3);
    expect(b.length).toBe(3);
    const all = await enc({ ids: a.flatMap((c) => c.ids), weights: a.flatMap((c) => c.weights) },
      { ids: b.flatMap((c) => c.ids), weights: b.flatMap((c) => c.weights) });
    expect(all.embeds.shape).toEqual([1, 77 * 3, 64]);
    for (let c = 0; c < 3; c++) {
      const one = await enc({ ids: a[c].ids }, { ids: b[c].ids });
      const part = all.embeds.data.subarray(c * 77 * 64, (c + 1) * 77 * 64);
      expect(maxAbsDiff({ data: part, shape: one.embeds.shape }, one.embeds)).toBe(0);
      if (c === 0) expect(maxAbsDiff(all.pooled, one.pooled)).toBe(0);
    }
  });

  it('each encoder gets the emphasis and its own mean restored; the pooled embedding is not weighted', async () => {
    const [c1] = promptChunks(t1, 'a (red:1.5) [sports] car');
    const [c2] = promptChunks(t2, 'a (red:1.5) [sports] car');
    const plain = await enc({ ids: c1.ids }, { ids: c2.ids });
    const weighted = await enc(c1, c2);
    expect(maxAbsDiff(weighted.pooled, plain.pooled)).toBe(0);
    let worst = 0;
    for (const [off, w] of [[0, c1.weights], [32, c2.weights]] as const) { // te1 → features 0..31, te2 → 32..63
      const z = new Float64Array(77 * 32);
      for (let t = 0; t < 77; t++) for (let d = 0; d < 32; d++) z[t * 32 + d] = plain.embeds.data[t * 64 + off + d];
      const mean = (x: Float64Array) => x.reduce((s, v) => s + v, 0) / x.length;
      const m0 = mean(z);
      for (let t = 0; t < 77; t++) for (let d = 0; d < 32; d++) z[t * 32 + d] *= w[t];
      const r = m0 / mean(z);
      for (let t = 0; t < 77; t++) {
        for (let d = 0; d < 32; d++) worst = Math.max(worst, Math.abs(z[t * 32 + d] * r - weighted.embeds.data[t * 64 + off + d]));
      }
    }
    expect(worst).toBeLessThan(1e-5);
    expect(maxAbsDiff(weighted.embeds, plain.embeds)).toBeGreaterThan(1e-3);
  });

  it('in the pipeline: all-1 weights give the plain image bit for bit; emphasis and long prompts change it', async () => {
    const plain = await pixels(pipe);
    const ones = await pixels(pipe, { promptWeighting: 'a1111' });
    expect(same(ones.image, plain.image)).toBe(true);
    const emph = await pixels(pipe, { prompt: 'a (lighthouse:1.6) on a cliff at dusk', promptWeighting: 'a1111' });
    expect(relErr(emph.latents, plain.latents)).toBeGreaterThan(1e-4);
    // 81 tokens: diffusers truncates to 75, A1111 weighting encodes a second chunk; all weights are 1
    // and the first chunk equals the truncated encoding, so any difference is the second chunk's
    const longPrompt = `${'tall '.repeat(80)}lighthouse`;
    const truncated = await pixels(pipe, { prompt: longPrompt });
    const chunked = await pixels(pipe, { prompt: longPrompt, promptWeighting: 'a1111' });
    expect(relErr(chunked.latents, truncated.latents)).toBeGreaterThan(1e-4);
  });
});

// ---------------------------------------------------------------------------------------------
// Speed/memory toggles on SDXL
// ---------------------------------------------------------------------------------------------

describe('SDXL toggles', () => {
  let pipe: StableDiffusionXLPipeline;
  let base: Awaited<ReturnType<typeof pixels>>;
  beforeAll(async () => {
    pipe = await StableDiffusionXLPipeline.fromPretrained(MODEL);
    base = await pixels(pipe);
  });
  afterAll(() => pipe?.dispose());

  it('attention slicing and VAE slicing give the same image as the unsliced math path', async () => {
    // slicing computes the math path a few heads at a time; on libtorch >= 2 the default ('auto')
    // may run SDPA instead, so the bit-exact comparison is against the math path
    pipe.setAttentionBackend('math');
    const plain = await pixels(pipe);
    pipe.enableAttentionSlicing('max').enableVaeSlicing();
    const sliced = await pixels(pipe);
    pipe.disableAttentionSlicing().disableVaeSlicing().setAttentionBackend('auto');
    expect(maxAbsDiff(sliced.latents, plain.latents)).toBe(0);
    expect(same(sliced.image, plain.image)).toBe(true);
    expect(note('math vs default attention latents (rel)', relErr(plain.latents, base.latents))).toBeLessThan(1e-4);
  });

  it('channels-last stays within float round-off', async () => {
    pipe.enableChannelsLast();
    const cl = await pixels(pipe);
    pipe.disableChannelsLast();
    expect(note('channels-last latents (rel)', relErr(cl.latents, base.latents))).toBeLessThan(1e-4);
  });

  it('fp8 storage shrinks the UNet weights, stays within the e4m3fn bound, and disabling it restores the exact image', async () => {
    const unetBytes = () => pipe.info.components.find((c) => c.name === 'unet')!.bytes;
    const before = unetBytes();
    pipe.enableFp8Storage();
    const fp8 = await pixels(pipe);
    const after = unetBytes();
    expect(after / before).toBeLessThan(0.3);
    expect(note('fp8 e4m3fn latents (rel)', relErr(fp8.latents, base.latents))).toBeLessThan(2 ** -4);
    note('fp8 UNet bytes / fp32 bytes', after / before);
    expect(relErr(fp8.latents, base.latents)).toBeGreaterThan(0);
    pipe.disableFp8Storage();
    const back = await pixels(pipe);
    expect(unetBytes()).toBe(before);
    expect(same(back.image, base.image)).toBe(true);
  });

  it('CPU offload on a CPU pipeline is a clear error (CUDA only)', () => {
    expect(() => pipe.enableModelCpuOffload()).toThrow(/CUDA/);
  });
});
