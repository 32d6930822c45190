/**
 * The fused GroupNorm + SiLU CPU kernel (native/core/nn/group_norm_silu; torch.nn.GroupNorm then
 * torch.nn.SiLU as diffusers' ResnetBlock2D and conv_norm_out use them): against a float64
 * reference computed here and against ATen's at::group_norm + at::silu at several shapes, both
 * dtypes, with and without SiLU; the GEGLU kernel likewise; their error paths; and the tiny-sd15 UNet
 * golden (GroupNorm, SiLU and GEGLU inside) with the fusion off and on (the float32 goldens'
 * atol = rtol = 1e-4, fixtures/README.md).
 */
import { describe, it, expect, afterAll } from 'vitest';
import path from 'node:path';
import { testingAddon as addon } from '../lib/native.js';
import { native, nativeSync, SdError } from '../lib/errors.js';
import type { TensorData, UNetHandle } from '../types/native.js';
import { loadCases, loadGolden, allClose, maxAbsDiff, maxAbs, rejection, roundBf16, seededRandn as randn } from './helpers/fixtures.js';

/** GroupNorm (+ SiLU) of x [N, C, S] in float64: biased variance, as torch.nn.GroupNorm. */
function reference(x: Float32Array, shape: number[], groups: number, gamma: Float32Array, beta: Float32Array,
  eps: number, silu: boolean): Float64Array {
  const [n, c] = shape, s = shape.slice(2).reduce((a, b) => a * b, 1), d = c / groups, len = d * s;
  const y = new Float64Array(x.length);
  for (let t = 0; t < n * groups; t++) {
    let mean = 0;
    for (let i = 0; i < len; i++) mean += x[t * len + i];
    mean /= len;
    let v = 0;
    for (let i = 0; i < len; i++) v += (x[t * len + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / len + eps);
    for (let i = 0; i < len; i++) {
      const ch = (t % groups) * d + Math.floor(i / s);
      const z = (x[t * len + i] - mean) * rstd * gamma[ch] + beta[ch];
      y[t * len + i] = silu ? z / (1 + Math.exp(-z)) : z;
    }
  }
  return y;
}

/** max|got − ref| / max|ref|. */
function relErr(got: TensorData, ref: Float64Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(got.data[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return d / m;
}

/** groupNormSilu's x, groups, gamma, beta. */
type GnArgs = [TensorData, number, TensorData, TensorData];

interface Case { shape: number[]; groups: number; mean?: number; std?: number; what: string }
const CASES: Case[] = [
  { shape: [1, 64, 7, 9], groups: 32, what: 'a spatial size that is no multiple of the vector width' },
  { shape: [2, 96, 16, 16], groups: 32, what: 'batch 2, 3 channels per group' },
  { shape: [1, 64, 64, 64], groups: 32, what: 'groups of 8192 elements (several statistics chunks)' },
  { shape: [3, 40, 5], groups: 8, what: 'a 3-D input' },
  { shape: [1, 32, 1, 1], groups: 32, what: 'one element per group (zero variance)' },
  { shape: [1, 64, 33, 33], groups: 32, mean: 300, std: 0.5, what: 'a large mean against a small spread' },
];
const measured: Record<string, string> = {};
afterAll(() => console.log('group_norm_silu relative errors (fused | aten):', measured));

/**
 * One case: x, γ, β drawn from `seeds` (rounded to bfloat16 for bfloat16), the fused kernel and ATen
 * against the float64 reference, the relative errors recorded under `label`, and the bounds: float32
 * arithmetic throughout — a few ulp of the largest value, never worse than ATen's by much; bfloat16
 * rounded once at the output — half an ulp (≤ 2⁻⁸ relative) plus float32 arithmetic (ATen rounds
 * twice, after the norm and after the SiLU).
 */
async function checkCase(c: Case, seeds: [number, number, number], dtype: 'float32' | 'bfloat16', silu: boolean, channelsLast: boolean,
  label: string): Promise<void> {
  const numel = c.shape.reduce((a, b) => a * b, 1), channels = c.shape[1];
  let x = randn(numel, seeds[0], c.std ?? 2.5, c.mean ?? 0.3);
  let gamma = randn(channels, seeds[1], 0.3, 1), beta = randn(channels, seeds[2], 0.2);
  if (dtype === 'bfloat16') [x, gamma, beta] = [roundBf16(x), roundBf16(gamma), roundBf16(beta)];
  const eps = 1e-6;
  const ref = reference(x, c.shape, c.groups, gamma, beta, eps, silu);
  const args: GnArgs = [{ data: x, shape: c.shape }, c.groups, { data: gamma, shape: [channels] },
    { data: beta, shape: [channels] }];
  const fused = await native(() => addon().groupNormSilu(...args, { eps, dtype, silu, channelsLast, impl: 'fused' }));
  const aten = await native(() => addon().groupNormSilu(...args, { eps, dtype, silu, channelsLast, impl: 'aten' }));
  expect(fused.shape).toEqual(c.shape);
  const ef = relErr(fused, ref), ea = relErr(aten, ref);
  measured[label] = `${ef.toExponential(2)} | ${ea.toExponential(2)}`;
  if (dtype === 'float32') {
    expect(ef).toBeLessThan(Math.max(2e-6, 4 * ea));
  } else {
    expect(ef).toBeLessThan(2 ** -8 + 1e-5);
    expect(ef).toBeLessThanOrEqual(ea + 1e-5);
  }
}

describe('fused GroupNorm + SiLU CPU kernel vs float64 and ATen', () => {
  for (const dtype of ['float32', 'bfloat16'] as const) {
    for (const silu of [true, false]) {
      for (const [k, c] of CASES.entries()) {
        it(`${dtype}${silu ? '' : ' (no SiLU)'}: ${JSON.stringify(c.shape)} in ${c.groups} groups, ${c.what}`, () =>
          checkCase(c, [11 + k, 101 + k, 201 + k], dtype, silu, false, `${dtype}${silu ? '' : ' no-silu'} ${c.shape.join('x')}`));
      }
    }
  }

  // channels-last 4-D inputs ([N, H, W, C] in memory): the fused kernel's own path (statistics per
  // 64 spatial rows merged in float64, vectorised across channels), the same bounds
  const NHWC: Case[] = [
    ...CASES.filter((c) => c.shape.length === 4),
    { shape: [2, 20, 9, 11], groups: 4, what: 'channels no multiple of the vector width, 99 rows (2 statistics chunks)' },
    { shape: [1, 512, 32, 32], groups: 32, what: "the VAE decoder's 512 channels" },
  ];
  for (const dtype of ['float32', 'bfloat16'] as const) {
    for (const [k, c] of NHWC.entries()) {
      it(`channels-last, ${dtype}: ${JSON.stringify(c.shape)} in ${c.groups} groups, ${c.what}`, () =>
        checkCase(c, [31 + k, 131 + k, 231 + k], dtype, true, true, `channels-last ${dtype} ${c.shape.join('x')}`));
    }
  }

  it('rejects groups that do not divide the channels, and gamma/beta of the wrong size, with E_INVALID_ARGUMENT', async () => {
    const shape = [1, 6, 2, 2], x = { data: randn(24, 1), shape };
    const six = { data: new Float32Array(6).fill(1), shape: [6] }, five = { data: new Float32Array(5).fill(1), shape: [5] };
    for (const [groups, gamma, what] of [[4, six, /divisible/], [0, six, /divisible/], [3, five, /gamma and beta/]] as const) {
      const err = await rejection<SdError>(native(() => addon().groupNormSilu(x, groups, gamma, six, { impl: 'fused' })));
      expect(err).toBeInstanceOf(SdError);
      expect(err.code).toBe('E_INVALID_ARGUMENT');
      expect(err.message).toMatch(what);
    }
    // the binding still works after the errors
    const ok = await native(() => addon().groupNormSilu(x, 3, six, six, { impl: 'fused' }));
    expect(ok.shape).toEqual(shape);
  });
});

/**
 * hidden · gelu(gate) of proj [rows, 2F] in float64 (exact erf GELU): erf by its Taylor series below 3
 * and by erfc's continued fraction (Lentz) above, both to ~1e-15.
 */
function gegluReference(proj: Float32Array, rows: number, f: number): Float64Array {
  const erf = (x: number): number => {
    const ax = Math.abs(x);
    if (ax < 3) {  // Taylor series, converges fast enough below 3 (terms shrink past n ≈ x²)
      let term = ax, sum = ax;
      for (let n = 1; n < 200; n++) {
        term *= -ax * ax / n;
        const add = term / (2 * n + 1);
        sum += add;
        if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
      }
      return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
    }
    // continued fraction for erfc (Lentz), accurate for |x| ≥ 3
    let fcf = ax, c = ax, d = 0;
    for (let n = 1; n < 200; n++) {
      const an = n / 2;
      d = ax + an * d; d = 1 / d;
      c = ax + an / c;
      const delta = c * d;
      fcf *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / fcf;
    return Math.sign(x) * (1 - erfc);
  };
  const y = new Float64Array(rows * f);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < f; i++) {
      const h = proj[r * 2 * f + i], g = proj[r * 2 * f + f + i];
      y[r * f + i] = h * 0.5 * g * (1 + erf(g / Math.SQRT2));
    }
  return y;
}

describe('fused GEGLU CPU kernel vs float64 and ATen', () => {
  for (const dtype of ['float32', 'bfloat16'] as const) {
    for (const [rows, f] of [[6, 20], [3, 37], [2, 1280]] as const) {
      it(`${dtype}: proj [${rows}, ${2 * f}]`, async () => {
        let proj = randn(rows * 2 * f, rows * 1000 + f, 3);
        if (dtype === 'bfloat16') proj = roundBf16(proj);
        const ref = gegluReference(proj, rows, f);
        const t = { data: proj, shape: [rows, 2 * f] };
        const fused = await native(() => addon().geglu(t, { dtype, impl: 'fused' }));
        const aten = await native(() => addon().geglu(t, { dtype, impl: 'aten' }));
        expect(fused.shape).toEqual([rows, f]);
        const ef = relErr(fused, ref), ea = relErr(aten, ref);
        measured[`geglu ${dtype} ${rows}x${2 * f}`] = `${ef.toExponential(2)} | ${ea.toExponential(2)}`;
        if (dtype === 'float32') expect(ef).toBeLessThan(Math.max(1e-6, 4 * ea));
        else {
          expect(ef).toBeLessThan(2 ** -8 + 1e-5);
          expect(ef).toBeLessThanOrEqual(ea + 1e-5);
        }
      });
    }
  }

  it('rejects an odd last dimension with E_INVALID_ARGUMENT, and works after', async () => {
    const err = await rejection<SdError>(native(() => addon().geglu({ data: randn(6, 1), shape: [2, 3] }, {})));
    expect(err).toBeInstanceOf(SdError);
    expect(err.code).toBe('E_INVALID_ARGUMENT');
    expect(err.message).toMatch(/even/);
    const ok = await native(() => addon().geglu({ data: randn(8, 1), shape: [2, 4] }, {}));
    expect(ok.shape).toEqual([2, 2]);
  });
});

describe('UNet2DConditionModel with the fusion off and on (tiny-sd15 golden, atol = rtol = 1e-4)', () => {
  const handles: UNetHandle[] = [];
  afterAll(() => {
    for (const h of handles) addon().disposeUNet(h);
    nativeSync(() => addon().setFusedGroupNorm(true));
  });

  it('both paths match the golden and each other', async () => {
    const { modelDir, cases } = loadCases('tiny-sd15');
    const c = cases.find((x) => x.kind === 'unet')!;
    const g = await loadGolden('tiny-sd15', c.file);
    const h = await native(() => addon().loadUNet(path.join(modelDir, 'unet')));
    handles.push(h);
    const t = c.params.timesteps[0];
    const inputs = { sample: g.sample, timestep: g[t.timestep_tensor], encoderHiddenStates: g.encoder_hidden_states };
    const outs: TensorData[] = [];
    for (const on of [false, true]) {
      nativeSync(() => addon().setFusedGroupNorm(on));
      const out = await native(() => addon().unetForward(h, inputs));
      const r = allClose(out, g[t.output], 1e-4, 1e-4);
      expect(r.ok, `fusion ${on ? 'on' : 'off'}: max |diff| ${r.maxAbsDiff}`).toBe(true);
      outs.push(out);
    }
    expect(nativeSync(() => addon().setFusedGroupNorm(true))).toBe(true);  // returns the previous setting
    const d = maxAbsDiff(outs[0], outs[1]);
    measured['tiny-sd15 unet, fusion off vs on'] = `max|Δ| ${d.toExponential(2)}`;
    expect(d).toBeLessThan(1e-5 * maxAbs(outs[0]));
  });
});
