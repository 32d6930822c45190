// AutoencoderTiny (TAESD, diffusers v0.30.3 autoencoder_tiny.py) against goldens/tiny-taesd:
// decode, encode, scale/unscale and forward (every model-level case), plus the error paths.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoencoderTiny, SdError } from '../lib/index.js';
import type { TensorData } from '../types/native.js';
import { loadCases, loadGolden, allClose, rejection } from './helpers/fixtures.js';

const ATOL = 1e-4, RTOL = 1e-4;
const GOLDEN = 'tiny-taesd';
const { modelDir, cases } = loadCases(GOLDEN);
const worst: Record<string, number> = {};

function expectClose(name: string, actual: TensorData<any>, expected: TensorData<any>) {
  const r = allClose(actual, expected, ATOL, RTOL);
  worst[name] = Math.max(worst[name] ?? 0, r.maxAbsDiff);
  expect(r.ok, `${name}: max |diff| ${r.maxAbsDiff} at ${r.worstIndex}`).toBe(true);
}

/** uint8 tensors: every value within ±1, and those off by one on a rounding boundary of the float golden. */
function expectUint8Near(name: string, actual: TensorData<any>, expected: TensorData<any>, scaledFloat: TensorData<any>) {
  expect(actual.shape).toEqual(expected.shape);
  let off = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const d = Math.abs(Number(actual.data[i]) - Number(expected.data[i]));
    expect(d, `${name}[${i}]`).toBeLessThanOrEqual(1);
    if (d === 1) {
      off++;
      const v = Number(scaledFloat.data[i]) * 255; // the value diffusers rounded
      expect(Math.abs(v - Math.round(v)), `${name}[${i}] differs by 1 away from a rounding boundary (${v})`).toBeGreaterThan(0.49);
    }
  }
  worst[name] = Math.max(worst[name] ?? 0, off);
}

let taesd: AutoencoderTiny;
beforeAll(async () => { taesd = await AutoencoderTiny.fromPretrained(modelDir); });
afterAll(() => {
  taesd?.dispose();
  console.log('tiny-taesd worst |diff| per tensor:', JSON.stringify(worst));
});

describe('AutoencoderTiny vs goldens/tiny-taesd', () => {
  it('reports the config as diffusers registers it', () => {
    const i = taesd.info;
    expect(i).toMatchObject({ vaeScaleFactor: 8, decoderUpsampling: 8, scalingFactor: 1, latentMagnitude: 3, latentShift: 0.5,
      latentChannels: 4, inChannels: 3, outChannels: 3, forceUpcast: false, dtype: 'float32', device: 'cpu' });
  });

  for (const c of cases.filter((k) => k.kind === 'taesd_decode')) {
    it(`decode: ${c.name}`, async () => {
      const g = await loadGolden(GOLDEN, c.file);
      const out = await taesd.decode(g.latents);
      expect(out.shape).toEqual(c.params.output_shape);
      expectClose(`${c.name}.decoded`, out, g.decoded);
      if (g.decoded_01) {
        const d01 = { data: Float32Array.from(out.data, (v) => Math.min(1, Math.max(0, v / 2 + 0.5))), shape: out.shape };
        expectClose(`${c.name}.decoded_01`, d01, g.decoded_01);
      }
    });
  }

  for (const c of cases.filter((k) => k.kind === 'taesd_encode')) {
    it(`encode: ${c.name} (deterministic)`, async () => {
      const g = await loadGolden(GOLDEN, c.file);
      const a = await taesd.encode(g.image);
      expect(a.shape).toEqual(c.params.latents_shape);
      expectClose(`${c.name}.latents`, a, g.latents);
      const b = await taesd.encode(g.image);
      expect(Buffer.from(b.data.buffer).equals(Buffer.from(a.data.buffer))).toBe(true);
    });
  }

  it('taesd_scaling: scale_latents, unscale_latents and forward', async () => {
    const c = cases.find((k) => k.kind === 'taesd_scaling')!;
    const g = await loadGolden(GOLDEN, c.file);
    const scaled = await taesd.scaleLatents(g.raw_latents);
    expectClose('scaled_latents', scaled, g.scaled_latents);
    const u8 = { data: Float32Array.from(g.scaled_latents_uint8.data as Uint8Array, (v) => v / 255), shape: g.scaled_latents_uint8.shape };
    expectClose('unscaled_latents', await taesd.unscaleLatents(u8), g.unscaled_latents);
    const fwd = await taesd.forward(g.fwd_image);
    expectClose('fwd_latents', fwd.latents, g.fwd_latents);
    const fwdScaled = await taesd.scaleLatents(g.fwd_latents);
    expectUint8Near('fwd_latents_uint8', fwd.latentsUint8, g.fwd_latents_uint8, fwdScaled);
    // the decode of the golden's uint8 latents (a flipped byte would change the decode input)
    const fromGoldenU8 = { data: Float32Array.from(g.fwd_latents_uint8.data as Uint8Array, (v) => v / 255), shape: g.fwd_latents_uint8.shape };
    expectClose('fwd_decoded', await taesd.decode(await taesd.unscaleLatents(fromGoldenU8)), g.fwd_decoded);
    if (worst.fwd_latents_uint8 === 0) expectClose('fwd_decoded (forward)', fwd.decoded, g.fwd_decoded);
  });
});

describe('AutoencoderTiny refuses bad input with typed errors and keeps working', () => {
  it('wrong latent channels, rank, dtype, empty tensors', async () => {
    const bad: [string, TensorData<any>][] = [
      ['3 channels', { data: new Float32Array(3 * 4 * 4), shape: [1, 3, 4, 4] }],
      ['16 channels', { data: new Float32Array(16 * 4), shape: [1, 16, 2, 2] }],
      ['rank 3', { data: new Float32Array(4 * 4 * 4), shape: [4, 4, 4] }],
      ['empty', { data: new Float32Array(0), shape: [1, 4, 0, 4] }],
      ['uint8', { data: new Uint8Array(4 * 4 * 4), shape: [1, 4, 4, 4] }],
    ];
    for (const [what, t] of bad) {
      const e = await rejection(taesd.decode(t));
      expect(e, what).toBeInstanceOf(SdError);
      expect(e.code, what).toBe('E_INVALID_ARGUMENT');
    }
    const e = await rejection(taesd.encode({ data: new Float32Array(4 * 8 * 8), shape: [1, 4, 8, 8] }));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toMatch(/3 channels/);
    const ok = await taesd.decode({ data: new Float32Array(4 * 2 * 2), shape: [1, 4, 2, 2] });
    expect(ok.shape).toEqual([1, 3, 16, 16]);
  });

  it('config range checks name the field (E_BAD_CONFIG / E_UNSUPPORTED_MODEL), missing folder E_MODEL_NOT_FOUND', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-taesd-'));
    const base = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
    const weights = path.join(modelDir, 'diffusion_pytorch_model.safetensors');
    const variants: [Record<string, unknown>, string, RegExp][] = [
      [{ latent_channels: 0 }, 'E_BAD_CONFIG', /latent_channels/],
      [{ decoder_block_out_channels: [16, 32, 16, 16] }, 'E_BAD_CONFIG', /decoder_block_out_channels/],
      [{ num_encoder_blocks: [1, 3, 3] }, 'E_BAD_CONFIG', /num_encoder_blocks/],
      [{ latent_magnitude: -1 }, 'E_BAD_CONFIG', /latent_magnitude/],
      [{ upsampling_scaling_factor: 100 }, 'E_BAD_CONFIG', /upsampling_scaling_factor/],
      [{ act_fn: 'tanh' }, 'E_UNSUPPORTED_MODEL', /act_fn/],
      [{ upsample_fn: 'bilinear' }, 'E_UNSUPPORTED_MODEL', /upsample_fn/],
      [{ num_decoder_blocks: [3, 3, 3, 2] }, 'E_BAD_CHECKPOINT', /decoder\.layers/],
    ];
    try {
      for (const [patch, code, re] of variants) {
        const dir = fs.mkdtempSync(path.join(tmp, 'v'));
        fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...base, ...patch }));
        fs.symlinkSync(weights, path.join(dir, 'diffusion_pytorch_model.safetensors'));
        const e = await rejection(AutoencoderTiny.fromPretrained(dir));
        expect(e.code, JSON.stringify(patch)).toBe(code);
        expect(e.message, JSON.stringify(patch)).toMatch(re);
      }
      const e = await rejection(AutoencoderTiny.fromPretrained(path.join(tmp, 'missing')));
      expect(e.code).toBe('E_MODEL_NOT_FOUND');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a disposed model throws DisposedError', async () => {
    const m = await AutoencoderTiny.fromPretrained(modelDir);
    m.dispose();
    expect(() => m.decode({ data: new Float32Array(16), shape: [1, 4, 2, 2] })).toThrow(/disposed/);
  });
});
