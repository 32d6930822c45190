// AutoencoderKL (diffusers v0.30.3) against goldens/tiny-sd15 `vae` case, plus slicing, tiling,
// reduced precision and error paths.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoencoderKL, SdError, readSafetensors, writeSafetensors } from '../lib/index.js';
import type { TensorData } from '../types/native.js';
import { loadCases, loadGolden, allClose, maxAbsDiff, seededRandn } from './helpers/fixtures.js';

const ATOL = 1e-4, RTOL = 1e-4;
const { modelDir, cases } = loadCases('tiny-sd15');
const vaeDir = path.join(modelDir, 'vae');
const vaeCase = cases.find((c) => c.kind === 'vae')!;
const worst: Record<string, number> = {};

function expectClose(name: string, actual: TensorData<any>, expected: TensorData<any>, atol = ATOL, rtol = RTOL) {
  const r = allClose(actual, expected, atol, rtol);
  worst[name] = Math.max(worst[name] ?? 0, r.maxAbsDiff);
  expect(r.ok, `${name}: max |diff| ${r.maxAbsDiff} at ${r.worstIndex}`).toBe(true);
}

function scale(t: TensorData<any>, s: number): TensorData {
  return { data: Float32Array.from(t.data as Float32Array, (v) => v * s), shape: [...t.shape] };
}

function meanAbsDiff(a: TensorData<any>, b: TensorData<any>): number {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += Math.abs(a.data[i] - b.data[i]);
  return s / a.data.length;
}

/** Deterministic N(0,1) values of `shape` (helpers/fixtures seededRandn). */
function randn(shape: number[], seed: number): TensorData {
  return { data: seededRandn(shape.reduce((x, y) => x * y, 1), seed), shape };
}

function cat0(a: TensorData<any>, b: TensorData<any>): TensorData {
  const data = new Float32Array(a.data.length + b.data.length);
  data.set(a.data as Float32Array, 0);
  data.set(b.data as Float32Array, a.data.length);
  return { data, shape: [a.shape[0] + b.shape[0], ...a.shape.slice(1)] };
}

/** x[:, :, i:i+h, j:j+w] of an NCHW tensor (clipped at the edges, like python slicing). */
function crop(t: TensorData<any>, i: number, j: number, h: number, w: number): TensorData {
  const [B, C, H, W] = t.shape;
  const hh = Math.min(h, H - i), ww = Math.min(w, W - j);
  const out = new Float32Array(B * C * hh * ww);
  let k = 0;
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let y = 0; y < hh; y++)
    for (let x = 0; x < ww; x++) out[k++] = t.data[((b * C + c) * H + i + y) * W + j + x];
  return { data: out, shape: [B, C, hh, ww] };
}

/** Independent re-statement of diffusers' tiled_decode/tiled_encode blending over per-tile outputs. */
async function referenceTiled(x: TensorData<any>, tileIn: number, stride: number, blend: number, rowLimit: number,
  run: (tile: TensorData) => Promise<TensorData<any>>): Promise<TensorData> {
  const rows: TensorData<any>[][] = [];
  for (let i = 0; i < x.shape[2]; i += stride) {
    const row: TensorData<any>[] = [];
    for (let j = 0; j < x.shape[3]; j += stride) row.push(await run(crop(x, i, j, tileIn, tileIn)));
    rows.push(row);
  }
  const at = (t: TensorData<any>, b: number, c: number, y: number, xx: number) =>
    ((b * t.shape[1] + c) * t.shape[2] + y) * t.shape[3] + xx;
  for (let i = 0; i < rows.length; i++) for (let j = 0; j < rows[i].length; j++) {
    const tile = rows[i][j];
    const [B, C, H, W] = tile.shape;
    if (i > 0) { // blend_v, in place
      const a = rows[i - 1][j];
      const e = Math.min(a.shape[2], H, blend);
      for (let y = 0; y < e; y++) for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let xx = 0; xx < W; xx++)
        tile.data[at(tile, b, c, y, xx)] = a.data[at(a, b, c, a.shape[2] - e + y, xx)] * (1 - y / e) + tile.data[at(tile, b, c, y, xx)] * (y / e);
    }
    if (j > 0) { // blend_h, in place
      const a = rows[i][j - 1];
      const e = Math.min(a.shape[3], W, blend);
      for (let xx = 0; xx < e; xx++) for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let y = 0; y < H; y++)
        tile.data[at(tile, b, c, y, xx)] = a.data[at(a, b, c, y, a.shape[3] - e + xx)] * (1 - xx / e) + tile.data[at(tile, b, c, y, xx)] * (xx / e);
    }
  }
  // crop each tile to rowLimit and assemble
  const B = rows[0][0].shape[0], C = rows[0][0].shape[1];
  const hs = rows.map((r) => Math.min(rowLimit, r[0].shape[2]));
  const ws = rows[0].map((t) => Math.min(rowLimit, t.shape[3]));
  const H = hs.reduce((p, q) => p + q, 0), W = ws.reduce((p, q) => p + q, 0);
  const out = new Float32Array(B * C * H * W);
  let y0 = 0;
  for (let i = 0; i < rows.length; i++) {
    let x0 = 0;
    for (let j = 0; j < rows[i].length; j++) {
      const t = rows[i][j];
      for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let y = 0; y < hs[i]; y++) for (let xx = 0; xx < ws[j]; xx++)
        out[((b * C + c) * H + y0 + y) * W + x0 + xx] = t.data[at(t, b, c, y, xx)];
      x0 += ws[j];
    }
    y0 += hs[i];
  }
  return { data: out, shape: [B, C, H, W] };
}

describe('AutoencoderKL (tiny-sd15 vae)', () => {
  let vae: AutoencoderKL;
  let g: Record<string, TensorData<any>>;
  beforeAll(async () => {
    vae = await AutoencoderKL.fromPretrained(vaeDir);
    g = await loadGolden('tiny-sd15', vaeCase.file);
  });
  afterAll(() => {
    vae?.dispose();
    console.log('vae: largest |diff| per tensor', worst);
  });

  it('reads the config: scale factor from block_out_channels, scaling factor, force_upcast', () => {
    const info = vae.info;
    expect(info.vaeScaleFactor).toBe(2); // 2^(len([32, 64]) - 1), not 8
    expect(info.scalingFactor).toBe(0.18215);
    expect(info.scalingFactor).toBe(vaeCase.params.scaling_factor);
    expect(info.forceUpcast).toBe(true);
    expect(info.shiftFactor).toBeNull();
    expect(info.latentChannels).toBe(4);
    expect(info.tileSampleMinSize).toBe(64);
    expect(info.tileLatentMinSize).toBe(32);
    expect(info.tileOverlapFactor).toBe(0.25);
    expect(info.dtype).toBe('Float');
  });

  it('decode(latents / scaling_factor) matches `decoded` (and `decoded_01`)', async () => {
    // params.latents is a plain randn: the stored latents are the scaled ones; decode divides.
    expect(vaeCase.params.decoded).toMatch(/latents \/ scaling_factor/);
    const out = await vae.decode(scale(g.latents, 1 / vae.scalingFactor));
    expect(out.shape).toEqual([1, 3, 16, 16]);
    expectClose('decoded', out, g.decoded);
    const img01 = { data: Float32Array.from(out.data, (v) => Math.min(1, Math.max(0, v / 2 + 0.5))), shape: out.shape };
    expectClose('decoded_01', img01, g.decoded_01);
  });

  it('encode(image) matches moments, mean, logvar, std and the seed-7 sample', async () => {
    const r = await vae.encode(g.image, 7);
    expect(r.mean.shape).toEqual([1, 4, 32, 32]);
    expectClose('moments', r.moments, g.moments);
    expectClose('latent_mean', r.mean, g.latent_mean);
    expectClose('latent_logvar', r.logvar, g.latent_logvar);
    expectClose('latent_std', r.std, g.latent_std);
    expectClose('latent_sample_seed7', r.sample!, g.latent_sample_seed7);
    expectClose('latent_sample_seed7_scaled', scale(r.sample!, vae.scalingFactor), g.latent_sample_seed7_scaled);
    // no seed → no sample
    const r2 = await vae.encode(g.image);
    expect(r2.sample).toBeUndefined();
    expect(maxAbsDiff(r2.mean, r.mean)).toBe(0);
  });

  it('slicing: a batch of 2 is decoded/encoded one element at a time, matching the unsliced batch', async () => {
    const z1 = scale(g.latents, 1 / vae.scalingFactor);
    const z2 = randn([1, 4, 8, 8], 5);
    const z = cat0(z1, z2);
    const img = cat0(g.image, randn([1, 3, 64, 64], 6));
    vae.setOptions({ slicing: false });
    const dFull = await vae.decode(z);
    const eFull = await vae.encode(img, 3);
    const dOne = cat0(await vae.decode(z1), await vae.decode(z2));
    vae.enableSlicing();
    expect(vae.info.slicing).toBe(true);
    const dSliced = await vae.decode(z);
    const eSliced = await vae.encode(img, 3);
    vae.disableSlicing();
    expect(dSliced.shape).toEqual([2, 3, 16, 16]);
    // sliced = the batch elements decoded alone, bit for bit
    expect(maxAbsDiff(dSliced, dOne)).toBe(0);
    // vs the unsliced batch: only float32 rounding of batch-size-dependent conv kernels (measured ≈4e-6
    // on values up to ≈2; encode ≈1e-6)
    const dd = maxAbsDiff(dSliced, dFull), de = maxAbsDiff(eSliced.moments, eFull.moments);
    const ds = maxAbsDiff(eSliced.sample!, eFull.sample!);
    worst.slicing_decode_vs_batch = dd; worst.slicing_encode_vs_batch = Math.max(de, ds);
    expect(dd).toBeLessThanOrEqual(1e-5);
    expect(de).toBeLessThanOrEqual(1e-5);
    expect(ds).toBeLessThanOrEqual(1e-5);
    // the first batch element still matches the golden
    expectClose('decoded (batch of 2, element 0)', { data: dFull.data.slice(0, 768), shape: [1, 3, 16, 16] }, g.decoded);
  });

  it('tiling: the tiled path equals diffusers\' blend of per-tile decodes, and stays close to untiled', async () => {
    // latents 2× the latent tile (32) → 128×128 image: tiles at 0, 24, 48 in each direction.
    const z = randn([1, 4, 64, 64], 11); // N(0,1), like initial latents after / scaling_factor
    vae.setOptions({ tiling: false });
    const full = await vae.decode(z);
    vae.enableTiling();
    expect(vae.info.tiling).toBe(true);
    const tiled = await vae.decode(z);
    expect(tiled.shape).toEqual([1, 3, 128, 128]);
    // reference: diffusers' loop over tiles decoded one by one without tiling (tiles ≤ 32 take the plain path)
    const ref = await referenceTiled(z, 32, 24, 16, 48, (t) => vae.decode(t));
    const dRef = maxAbsDiff(tiled, ref);
    worst.tiled_decode_vs_reference_blend = dRef;
    expect(dRef).toBeLessThanOrEqual(1e-5);
    // vs untiled: differences come from per-tile GroupNorm statistics and cut receptive fields
    const mx = maxAbsDiff(tiled, full), mean = meanAbsDiff(tiled, full);
    const range = Math.max(...Array.from(full.data as Float32Array, Math.abs));
    worst.tiled_decode_vs_untiled_max = mx; worst.tiled_decode_vs_untiled_mean = mean;
    console.log(`tiled vs untiled decode: max ${mx}, mean ${mean}, max|untiled| ${range}`);
    // measured on this input: max 0.536, mean 0.051 (values up to 1.83); bound = 1.5× measured
    expect(mx).toBeLessThan(0.8);
    expect(mean).toBeLessThan(0.08);
    // an input no larger than one tile takes the untiled path: identical
    const small = scale(g.latents, 1 / vae.scalingFactor);
    expectClose('decoded (tiling on, one tile)', await vae.decode(small), g.decoded);
    vae.disableTiling();
  });

  it('tiling: tiled encode equals the blend of per-tile moments, close to untiled', async () => {
    const img = randn([1, 3, 128, 128], 12);
    for (let i = 0; i < img.data.length; i++) img.data[i] = Math.tanh(img.data[i]);
    vae.setOptions({ tiling: false });
    const full = await vae.encode(img);
    vae.enableTiling();
    const tiled = await vae.encode(img);
    expect(tiled.moments.shape).toEqual([1, 8, 64, 64]);
    vae.disableTiling();
    const ref = await referenceTiled(img, 64, 48, 8, 24, async (t) => (await vae.encode(t)).moments);
    const dRef = maxAbsDiff(tiled.moments, ref);
    worst.tiled_encode_vs_reference_blend = dRef;
    expect(dRef).toBeLessThanOrEqual(1e-5);
    const mx = maxAbsDiff(tiled.mean, full.mean), mean = meanAbsDiff(tiled.mean, full.mean);
    worst.tiled_encode_mean_vs_untiled_max = mx; worst.tiled_encode_mean_vs_untiled_mean = mean;
    console.log(`tiled vs untiled encode (mean): max ${mx}, mean ${mean}`);
    // measured: max 0.235, mean 0.022; bound = 1.5× measured
    expect(mx).toBeLessThan(0.35);
    expect(mean).toBeLessThan(0.035);
  });

  it('tiling options are validated', () => {
    const err = (() => { try { vae.enableTiling(63); } catch (e) { return e as SdError; } })();
    expect(err).toBeInstanceOf(SdError);
    expect(err!.code).toBe('E_INVALID_ARGUMENT');
    expect(err!.message).toMatch(/multiple of the VAE scale factor 2/);
    const err2 = (() => { try { vae.enableTiling(64, 1.0); } catch (e) { return e as SdError; } })();
    expect(err2!.code).toBe('E_INVALID_ARGUMENT');
    expect(vae.info.tiling).toBe(false);
    vae.enableTiling(32);
    expect(vae.info.tileLatentMinSize).toBe(16);
    vae.setOptions({ tiling: false, tileSize: 64 });
  });

  it('bfloat16 decode/encode stay within a stated bound of float32', async () => {
    const bf = await AutoencoderKL.fromPretrained(vaeDir, { dtype: 'bfloat16' });
    try {
      expect(bf.info.dtype).toBe('BFloat16');
      const out = await bf.decode(scale(g.latents, 1 / bf.scalingFactor));
      const d = maxAbsDiff(out, g.decoded), m = meanAbsDiff(out, g.decoded);
      worst.bf16_decoded_max = d; worst.bf16_decoded_mean = m;
      console.log(`bfloat16 decode vs float32 golden: max ${d}, mean ${m}`);
      // measured: max 0.028, mean 0.0046
      expect(d).toBeLessThan(0.05);
      expect(m).toBeLessThan(0.01);
      const enc = await bf.encode(g.image, 7);
      const de = maxAbsDiff(enc.mean, g.latent_mean);
      worst.bf16_latent_mean_max = de;
      expect(de).toBeLessThan(0.04); // measured 0.023
    } finally {
      bf.dispose();
    }
  });

  it('float16 on the CPU works or is refused with a clear error', async () => {
    const r = await AutoencoderKL.fromPretrained(vaeDir, { dtype: 'float16' }).then(
      async (v) => { try { return await v.decode(scale(g.latents, 1 / v.scalingFactor)); } finally { v.dispose(); } },
      (e) => e,
    );
    console.log('float16 on CPU:', r instanceof Error ? `${(r as SdError).code}: ${r.message}` : 'ran');
    if (r instanceof Error) {
      expect(r).toBeInstanceOf(SdError);
      expect((r as SdError).code).toBe('E_UNSUPPORTED_MODEL');
      expect(r.message).toMatch(/float16 compute on cpu is not supported/);
    } else {
      const d = maxAbsDiff(r as TensorData, g.decoded);
      worst.fp16_decoded_max = d;
      expect(d).toBeLessThan(0.05);
    }
  });

  it('rejects bad inputs with E_INVALID_ARGUMENT', async () => {
    const e1 = await vae.decode({ data: new Float32Array(3 * 8 * 8), shape: [1, 3, 8, 8] }).catch((e) => e);
    expect(e1.code).toBe('E_INVALID_ARGUMENT');
    expect(e1.message).toMatch(/latents must have 4 channels, got shape \[1, 3, 8, 8\]/);
    const e2 = await vae.encode({ data: new Float32Array(16), shape: [4, 4] }).catch((e) => e);
    expect(e2.code).toBe('E_INVALID_ARGUMENT');
    expect(e2.message).toMatch(/image must be a 4-d tensor/);
    const e3 = await vae.encode(g.image, -1).catch((e) => e);
    expect(e3.code).toBe('E_INVALID_ARGUMENT');
    expect(e3.message).toMatch(/seed/);
  });
});

describe('AutoencoderKL loading errors', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-vae-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  function copyVae(name: string, editConfig?: (c: any) => void): string {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(vaeDir, 'config.json'), 'utf8'));
    editConfig?.(cfg);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    fs.symlinkSync(path.join(vaeDir, 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
    return dir;
  }

  it('a missing folder is E_MODEL_NOT_FOUND', async () => {
    const e = await AutoencoderKL.fromPretrained(path.join(tmp, 'nope')).catch((x) => x);
    expect(e).toBeInstanceOf(SdError);
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain(path.join(tmp, 'nope'));
  });

  it('a missing variant file is E_MODEL_NOT_FOUND naming it', async () => {
    const e = await AutoencoderKL.fromPretrained(vaeDir, { variant: 'fp16' }).catch((x) => x);
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain('diffusion_pytorch_model.fp16.safetensors');
  });

  it('a config without latent_channels is E_BAD_CONFIG naming the field and file', async () => {
    const dir = copyVae('nolatent', (c) => { delete c.latent_channels; });
    const e = await AutoencoderKL.fromPretrained(dir).catch((x) => x);
    expect(e.code).toBe('E_BAD_CONFIG');
    expect(e.message).toMatch(/latent_channels/);
    expect(e.message).toContain(path.join(dir, 'config.json'));
  });

  it('an unsupported block type is E_UNSUPPORTED_MODEL', async () => {
    const dir = copyVae('badblock', (c) => { c.up_block_types = ['UpDecoderBlock2D', 'AttnUpDecoderBlock2D']; });
    const e = await AutoencoderKL.fromPretrained(dir).catch((x) => x);
    expect(e.code).toBe('E_UNSUPPORTED_MODEL');
    expect(e.message).toMatch(/AttnUpDecoderBlock2D/);
  });

  it('a config that disagrees with the weights is E_BAD_CHECKPOINT naming the key', async () => {
    const dir = copyVae('wronglatent', (c) => { c.latent_channels = 8; });
    const e = await AutoencoderKL.fromPretrained(dir).catch((x) => x);
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toMatch(/decoder\.conv_in\.weight|encoder\.conv_out\.weight/);
  });

  it('strict load: a missing weight and an unexpected weight are E_BAD_CHECKPOINT', async () => {
    const all = await readSafetensors(path.join(vaeDir, 'diffusion_pytorch_model.safetensors'));
    const dir1 = path.join(tmp, 'missing');
    fs.mkdirSync(dir1);
    fs.copyFileSync(path.join(vaeDir, 'config.json'), path.join(dir1, 'config.json'));
    const { ['decoder.mid_block.attentions.0.to_q.weight']: _drop, ...rest } = all;
    await writeSafetensors(path.join(dir1, 'diffusion_pytorch_model.safetensors'), rest as any);
    const e1 = await AutoencoderKL.fromPretrained(dir1).catch((x) => x);
    expect(e1.code).toBe('E_BAD_CHECKPOINT');
    expect(e1.message).toContain('missing weight "decoder.mid_block.attentions.0.to_q.weight"');

    const dir2 = path.join(tmp, 'extra');
    fs.mkdirSync(dir2);
    fs.copyFileSync(path.join(vaeDir, 'config.json'), path.join(dir2, 'config.json'));
    await writeSafetensors(path.join(dir2, 'diffusion_pytorch_model.safetensors'),
      { ...all, 'decoder.extra.weight': { data: new Float32Array(2), shape: [2] } } as any);
    const e2 = await AutoencoderKL.fromPretrained(dir2).catch((x) => x);
    expect(e2.code).toBe('E_BAD_CHECKPOINT');
    expect(e2.message).toContain('decoder.extra.weight');
  });

  it('a disposed model is E_DISPOSED', async () => {
    const v = await AutoencoderKL.fromPretrained(vaeDir);
    v.dispose();
    expect(() => v.info).toThrow(/disposed/);
    const e = await Promise.resolve().then(() => v.decode({ data: new Float32Array(4), shape: [1, 4, 1, 1] })).catch((x) => x);
    expect(e.code).toBe('E_DISPOSED');
  });
});
