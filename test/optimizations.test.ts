/**
 * The speed/memory toggles (issue 5), each proven on the tiny-sd15 fixture in float32 on the CPU:
 * exact-path toggles (attention slicing, channels-last, VAE slicing) equal the plain path within
 * float32 tolerance; approximate ones (VAE tiling, fp8 storage, bfloat16) within a stated bound;
 * CUDA-only ones give a clear error on the CPU. Plus the torch.backends flags and precision errors.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, backends, buildInfo, readSafetensors, readSafetensorsHeader,
  writeSafetensors, type GenerateResult,
} from '../lib/index.js';
import { loadCases, loadGolden, maxAbs, maxAbsDiff } from './helpers/fixtures.js';
import { testingAddon as addon } from '../lib/native.js';
import type { TensorData } from '../types/native.js';

const { modelDir } = loadCases('tiny-sd15');
const libtorchMajor = Number(buildInfo().libtorchVersion.split('.')[0]);

/** Two DDIM steps with CFG at the fixture's 64×64 (32×32 latents): every UNet/VAE path runs. */
const BASE = {
  prompt: 'a photo of an astronaut riding a horse on mars', negativePrompt: 'blurry',
  numInferenceSteps: 2, guidanceScale: 7.5, seed: 42, height: 64, width: 64,
};

function rel(a: TensorData<any>, b: TensorData<any>): number {
  return maxAbsDiff(a, b) / maxAbs(b);
}

/** Largest and mean |Δ| between the uint8 images of two results, in uint8 units. */
function pixelDiff(a: GenerateResult, b: GenerateResult): { max: number; mean: number; offFraction: number } {
  let max = 0, sum = 0, n = 0, off = 0;
  expect(a.images.length).toBe(b.images.length);
  for (let i = 0; i < a.images.length; i++) {
    const x = a.images[i].data, y = b.images[i].data;
    expect(x.length).toBe(y.length);
    for (let j = 0; j < x.length; j++) {
      const d = Math.abs(x[j] - y[j]);
      max = Math.max(max, d);
      sum += d;
      if (d > 0) off++;
      n++;
    }
  }
  return { max, mean: sum / n, offFraction: off / n };
}

/** The float32 tolerance of the exact-path toggles: parity.test.ts's criteria. */
function expectSameImage(r: GenerateResult, base: GenerateResult, what: string): number {
  const e = rel(r.latents!, base.latents!);
  expect(e, `${what}: final latents relative error`).toBeLessThan(1e-4);
  const p = pixelDiff(r, base);
  expect(p.max, `${what}: max uint8 difference`).toBeLessThanOrEqual(1);
  expect(p.offFraction, `${what}: fraction of pixels off by one`).toBeLessThan(0.01);
  return e;
}

const measured: Record<string, string> = {};
afterAll(() => {
  console.log('optimizations: measured errors\n' + Object.entries(measured).map(([k, v]) => `  ${k}: ${v}`).join('\n'));
});

describe('backends (torch.backends flags)', () => {
  it('each flag reads back what was set and can be restored', () => {
    const flags = [
      [backends.cudnn, 'benchmark'], [backends.cudnn, 'allowTf32'], [backends.cuda.matmul, 'allowTf32'],
    ] as const;
    for (const [obj, key] of flags) {
      const before = (obj as any)[key];
      expect(typeof before).toBe('boolean');
      (obj as any)[key] = !before;
      expect((obj as any)[key]).toBe(!before);
      (obj as any)[key] = before;
      expect((obj as any)[key]).toBe(before);
    }
    expect(backends.cudnn.benchmark).toBe(false); // libtorch's default
  });

  it('a non-boolean is refused with E_INVALID_ARGUMENT', () => {
    expect(() => { (backends.cudnn as any).benchmark = 1; }).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});

describe('toggles on the tiny-sd15 fixture (float32, CPU)', () => {
  let pipe: StableDiffusionPipeline;
  let base: GenerateResult;
  beforeAll(async () => {
    pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    pipe.setScheduler('DDIMScheduler');
    base = await pipe.generate(BASE);
  }, 120_000);
  afterAll(() => pipe?.dispose());

  for (const slice of ['auto', 'max', 2] as const) {
    it(`attention slicing ${JSON.stringify(slice)} equals plain attention`, async () => {
      pipe.enableAttentionSlicing(slice);
      expect(pipe.optimizations.sliceSize).toBe(slice);
      const r = await pipe.generate(BASE);
      pipe.disableAttentionSlicing();
      measured[`attention slicing ${slice}`] = `latents rel ${expectSameImage(r, base, `slicing ${slice}`).toExponential(2)}`;
    }, 120_000);
  }

  it('channels-last equals the contiguous layout', async () => {
    pipe.enableChannelsLast();
    const r = await pipe.generate(BASE);
    pipe.disableChannelsLast();
    measured['channels-last'] = `latents rel ${expectSameImage(r, base, 'channels-last').toExponential(2)}`;
    const back = await pipe.generate(BASE); // and back to contiguous
    expectSameImage(back, base, 'channels-last disabled');
  }, 120_000);

  it('VAE slicing decodes a batch of 2 to the same images', async () => {
    const opts = { ...BASE, numImagesPerPrompt: 2 };
    const plain = await pipe.generate(opts);
    pipe.enableVaeSlicing();
    const sliced = await pipe.generate(opts);
    pipe.disableVaeSlicing();
    expect(sliced.images.length).toBe(2);
    const p = pixelDiff(sliced, plain);
    expect(p.max, 'uint8 difference').toBeLessThanOrEqual(1);
    expect(p.offFraction).toBeLessThan(0.01);
    expect(maxAbsDiff(sliced.latents!, plain.latents!)).toBe(0); // the UNet path is untouched
    measured['VAE slicing (batch 2)'] = `max uint8 diff ${p.max}, ${(p.offFraction * 100).toFixed(3)}% off by one`;
  }, 120_000);

  it('memory-efficient attention: SDPA where libtorch >= 2.0 (forced on and off, both equal the default \'auto\'), else a clear E_UNSUPPORTED_MODEL', async () => {
    expect(pipe.optimizations.sdpa).toBe('auto');
    if (buildInfo().sdpa) {
      pipe.enableMemoryEfficientAttention();
      expect(pipe.optimizations.sdpa).toBe(true);
      const r = await pipe.generate(BASE);
      pipe.setAttentionBackend('math');
      expect(pipe.optimizations.sdpa).toBe(false);
      const m = await pipe.generate(BASE);
      pipe.disableMemoryEfficientAttention(); // back to the default, as diffusers' disable_… does
      expect(pipe.optimizations.sdpa).toBe('auto');
      measured.sdpa = `latents rel ${expectSameImage(r, base, 'sdpa').toExponential(2)}`;
      measured['math'] = `latents rel ${expectSameImage(m, base, 'math').toExponential(2)}`;
    } else {
      expect(() => pipe.enableMemoryEfficientAttention()).toThrow(expect.objectContaining({
        code: 'E_UNSUPPORTED_MODEL', message: expect.stringMatching(/libtorch >= 2\.0.*enableAttentionSlicing/s),
      }));
      expect(pipe.optimizations.sdpa).toBe('auto');
      expect(() => pipe.setAttentionBackend('sdpa')).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_MODEL' }));
    }
    expect(() => pipe.setAttentionBackend('xformers' as any)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });

  it("flash attention (sd-native's CPU kernel) equals the math path and the float32 pipe_ddim golden", async () => {
    pipe.setAttentionBackend('flash');
    expect(pipe.optimizations.sdpa).toBe('flash');
    const f = await pipe.generate(BASE);
    pipe.setAttentionBackend('math');
    const m = await pipe.generate(BASE);
    pipe.setAttentionBackend('auto');
    measured['flash vs math'] = `latents rel ${expectSameImage(f, m, 'flash vs math').toExponential(2)}`;
    expectSameImage(f, base, 'flash vs auto');
    // the fixture's own golden: 10 DDIM steps, parity.test.ts's float32 criteria
    const g = await loadGolden('tiny-sd15', 'pipe_ddim.safetensors');
    pipe.setAttentionBackend('flash');
    const r = await pipe.generate({ ...BASE, numInferenceSteps: 10 });
    pipe.setAttentionBackend('auto');
    const e = rel(r.latents!, g.final_latents);
    measured['flash vs pipe_ddim golden'] = `latents rel ${e.toExponential(2)}`;
    expect(e).toBeLessThan(1e-4);
    let off = 0, max = 0;
    for (let i = 0; i < g.image_uint8.data.length; i++) {
      const d = Math.abs(r.images[0].data[i] - g.image_uint8.data[i]);
      max = Math.max(max, d);
      if (d) off++;
    }
    expect(max).toBeLessThanOrEqual(1);
    expect(off / g.image_uint8.data.length).toBeLessThan(0.01);
  }, 300_000);

  it('CPU offload on a CPU pipeline is a clear E_DEVICE_UNAVAILABLE', () => {
    for (const m of ['enableModelCpuOffload', 'enableSequentialCpuOffload'] as const) {
      expect(() => pipe[m]()).toThrow(expect.objectContaining({
        code: 'E_DEVICE_UNAVAILABLE', message: expect.stringMatching(new RegExp(`${m}.*CUDA.*runs on cpu`)),
      }));
    }
    expect(pipe.optimizations.offload).toBe('');
  });

  it('bad toggle arguments are refused with E_INVALID_ARGUMENT', () => {
    for (const bad of [0, -1, 1.5, 'half']) {
      expect(() => pipe.enableAttentionSlicing(bad as any)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    }
    expect(() => pipe.enableFp8Storage({ format: 'e3m4' as any })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });

  it('img2img shares the toggles of its native model (channels-last + VAE tiling off equals plain)', async () => {
    const img2img = StableDiffusionImg2ImgPipeline.fromPipeline(pipe);
    const image = { data: new Uint8Array(base.images[0].data), width: 64, height: 64, channels: 3 as const };
    const opts = { ...BASE, image, strength: 1.0 };
    const plain = await img2img.generate(opts);
    img2img.enableChannelsLast();
    expect(pipe.optimizations.channelsLast).toBe(true);
    const cl = await img2img.generate(opts);
    img2img.disableChannelsLast();
    img2img.dispose();
    measured['img2img channels-last'] = `latents rel ${expectSameImage(cl, plain, 'img2img channels-last').toExponential(2)}`;
  }, 120_000);

  it('VAE tiling of a 128×128 image (4 latent tiles of 32 with overlap) stays within the stated bound', async () => {
    // sample_size 64 px → 32-latent tiles, stride 24 latents; a 64×64 latent is decoded as a 3×3 grid
    // of overlapping tiles. Tiles differ from the whole decode because each tile's GroupNorm uses its
    // own statistics (diffusers' tiled_decode has the same property); the overlap is blended linearly.
    // Bound: mean |Δ| ≤ 4 uint8 levels and max |Δ| ≤ 64 levels (measured values are in the log).
    const big = { ...BASE, height: 128, width: 128, numInferenceSteps: 1, guidanceScale: 1 };
    const plain = await pipe.generate(big);
    pipe.enableVaeTiling();
    const tiled = await pipe.generate(big);
    pipe.disableVaeTiling();
    expect(maxAbsDiff(tiled.latents!, plain.latents!)).toBe(0);
    const p = pixelDiff(tiled, plain);
    measured['VAE tiling 128²'] = `uint8 max ${p.max}, mean ${p.mean.toFixed(3)}`;
    expect(p.max).toBeGreaterThan(0); // tiling really ran
    expect(p.mean).toBeLessThanOrEqual(4);
    expect(p.max).toBeLessThanOrEqual(64);
  }, 180_000);
});

// -------------------------------------------------------------------------------------------
// fp8 storage
// -------------------------------------------------------------------------------------------

/** Round-to-nearest-even of float32 values to an OCP 8-bit float (saturating), independent of the native encoder. */
function roundFp8(x: number, format: 'e4m3fn' | 'e5m2'): number {
  const [man, emin, max] = format === 'e4m3fn' ? [3, -6, 448] : [2, -14, 57344];
  const a = Math.abs(x);
  if (a === 0 || Number.isNaN(a)) return x;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const step = 2 ** (Math.max(e, emin) - man);
  const v = a / step;
  const f = Math.floor(v);
  const q = (v - f > 0.5 || (v - f === 0.5 && f % 2 === 1) ? f + 1 : f) * step;
  return Math.sign(x) * Math.min(q, max);
}

/** Every value the rounding tests feed: each finite code's value, ±, ±1 ulp, every midpoint (ties) and its ±1 ulp, saturation, NaN, ±0. */
function fp8Probe(format: 'e4m3fn' | 'e5m2'): { values: Float32Array; finite: number[]; max: number } {
  const [man, emin, emax, max] = format === 'e4m3fn' ? [3, -6, 8, 448] : [2, -14, 15, 57344];
  // every non-negative finite value of the format, ascending
  const grid: number[] = [];
  for (let e = emin; e <= emax; e++) {
    for (let m = e === emin ? 0 : 2 ** man; m < 2 ** (man + 1); m++) grid.push(m * 2 ** (e - man));
  }
  const finite = grid.filter((v) => v <= max);
  const f32 = (x: number) => Math.fround(x);
  const ulp = (x: number) => { const b = new Float32Array([x]); const u = new Uint32Array(b.buffer); u[0] += 1; return b[0] - x; };
  const xs: number[] = [0, -0, Number.NaN, Infinity, -Infinity, max * 1.01, max * 4, 1e30, -1e30, 1e-30, -1e-30];
  for (let i = 0; i < finite.length; i++) {
    const v = finite[i];
    xs.push(v, -v, f32(v + ulp(v)), f32(v - ulp(v)));
    if (i + 1 < finite.length) {
      const mid = (v + finite[i + 1]) / 2;
      xs.push(mid, -mid, f32(mid + ulp(mid)), f32(mid - ulp(mid)), -f32(mid + ulp(mid)));
    }
  }
  return { values: Float32Array.from(xs), finite, max };
}

describe('fp8 rounding (sd-native\'s encoder/decoder, and what fp8 storage keeps on this libtorch)', () => {
  const float8 = buildInfo().float8;
  for (const format of ['e4m3fn', 'e5m2'] as const) {
    for (const impl of ['reference', 'storage'] as const) {
      const what = impl === 'reference' ? 'sd-native\'s encoder' : `fp8 storage (${float8 ? 'libtorch float8 dtypes' : 'uint8 codes'})`;
      it(`${format}, ${what}: every code, every midpoint (ties to even), ±1 ulp around them, saturation, NaN and ±0 match the independent rounding`, async () => {
        const { values, finite, max } = fp8Probe(format);
        const q = await addon().fp8Quantize({ data: values, shape: [values.length] }, format, impl);
        let bad = 0;
        values.forEach((x, i) => {
          const want = x === Infinity || x === -Infinity ? Math.sign(x) * max : roundFp8(x, format); // saturating
          const got = q.data[i];
          const ok = Number.isNaN(want) ? Number.isNaN(got) : Object.is(got, want);
          if (!ok && bad++ < 5) console.log(`${format} ${impl}: ${x} → ${got}, expected ${want}`);
        });
        expect(bad).toBe(0);
        expect(values.length).toBeGreaterThan(4 * finite.length);
      });
    }

    it(`${format}: all 256 codes decode to the same values in sd-native's table and in fp8 storage`, async () => {
      const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const ref = await addon().fp8Decode({ data: codes, shape: [256] }, format, 'reference');
      const sto = await addon().fp8Decode({ data: codes, shape: [256] }, format, 'storage');
      let nan = 0;
      for (let i = 0; i < 256; i++) {
        if (Number.isNaN(ref.data[i])) { nan++; expect(sto.data[i], `code ${i}`).toBeNaN(); } else expect(Object.is(sto.data[i], ref.data[i]), `code ${i}: ${sto.data[i]} vs ${ref.data[i]}`).toBe(true);
      }
      expect(nan).toBe(format === 'e4m3fn' ? 2 : 6); // e4m3fn: S.1111.111; e5m2: S.11111.{01,10,11}
      if (format === 'e4m3fn') {
        expect([ref.data[0x7e], ref.data[0xfe]]).toEqual([448, -448]); // the largest finite codes
      } else {
        expect([ref.data[0x7b], ref.data[0x7c], ref.data[0xfc]]).toEqual([57344, Infinity, -Infinity]);
      }
    });
  }

  it(`libtorch's bare float8 cast (${float8 ? 'present' : 'absent before 2.1'}) rounds like sd-native below the saturation point and not above it — why storage clamps first`, async () => {
    if (!float8) {
      await expect(addon().fp8Quantize({ data: new Float32Array([1]), shape: [1] }, 'e4m3fn', 'cast'))
        .rejects.toMatchObject({ code: 'E_UNSUPPORTED_MODEL' });
      return;
    }
    for (const format of ['e4m3fn', 'e5m2'] as const) {
      const { values } = fp8Probe(format);
      // up to here libtorch rounds to the largest finite value (448 + half a step, a tie to even for e4m3fn);
      // beyond it the cast overflows: NaN for e4m3fn (no infinity), ±inf for e5m2 (61440 ties up to 2^16)
      const [limit, inclusive] = format === 'e4m3fn' ? [464, true] : [61440, false];
      const q = await addon().fp8Quantize({ data: values, shape: [values.length] }, format, 'cast');
      let below = 0, above = 0;
      values.forEach((x, i) => {
        const got = q.data[i];
        if (Number.isNaN(x) || Math.abs(x) < limit || (inclusive && Math.abs(x) === limit)) {
          const want = roundFp8(x, format);
          expect(Number.isNaN(want) ? Number.isNaN(got) : Object.is(got, want), `${format} cast ${x} → ${got}`).toBe(true);
          below++;
        } else {
          if (format === 'e4m3fn') expect(got, `${format} cast ${x}`).toBeNaN(); else expect(got, `${format} cast ${x}`).toBe(Math.sign(x) * Infinity);
          above++;
        }
      });
      expect(below).toBeGreaterThan(1000);
      expect(above).toBeGreaterThan(3); // ±inf, max·4, ±1e30: storage saturates these to ±max instead
    }
  });

  it('a large random tensor (several parallel chunks) rounds like the independent rounding', async () => {
    const n = 300_000;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.fround(Math.sin(i * 12.9898) * 43758.5453 % 1 * 3);
    for (const format of ['e4m3fn', 'e5m2'] as const) {
      for (const impl of ['reference', 'storage'] as const) {
        const q = await addon().fp8Quantize({ data, shape: [300, 1000] }, format, impl);
        expect(q.shape).toEqual([300, 1000]);
        let bad = 0;
        for (let i = 0; i < n; i++) if (!Object.is(q.data[i], roundFp8(data[i], format))) bad++;
        expect(bad).toBe(0);
      }
    }
  });
});

describe('fp8 storage (UNet Linear/Conv weights in 8 bits)', () => {
  let pipe: StableDiffusionPipeline;
  let base: GenerateResult;
  let floatBytes: number;
  let matrixElements = 0;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-opt-fp8-'));
  beforeAll(async () => {
    pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    pipe.setScheduler('DDIMScheduler');
    base = await pipe.generate(BASE);
    floatBytes = pipe.info.components.find((c) => c.name === 'unet')!.bytes;
    const header = await readSafetensorsHeader(path.join(modelDir, 'unet', 'diffusion_pytorch_model.safetensors'));
    for (const t of header.tensors) if (t.shape.length >= 2) matrixElements += t.shape.reduce((a, b) => a * b, 1);
  }, 120_000);
  afterAll(() => {
    pipe?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** The same model folder with its UNet ≥2-d weights rounded to `format` in TS and stored as float32. */
  async function roundedModel(format: 'e4m3fn' | 'e5m2'): Promise<string> {
    const dir = path.join(tmp, format);
    fs.mkdirSync(path.join(dir, 'unet'), { recursive: true });
    for (const entry of ['model_index.json', 'scheduler', 'text_encoder', 'tokenizer', 'vae']) {
      fs.symlinkSync(path.join(modelDir, entry), path.join(dir, entry));
    }
    fs.symlinkSync(path.join(modelDir, 'unet', 'config.json'), path.join(dir, 'unet', 'config.json'));
    const w = await readSafetensors(path.join(modelDir, 'unet', 'diffusion_pytorch_model.safetensors'));
    const out: Record<string, TensorData> = {};
    for (const [name, t] of Object.entries(w)) {
      const data = new Float32Array(t.data as Float32Array);
      if (t.shape.length >= 2) for (let i = 0; i < data.length; i++) data[i] = roundFp8(data[i], format);
      out[name] = { data, shape: t.shape };
    }
    await writeSafetensors(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), out);
    return dir;
  }

  for (const [format, u] of [['e4m3fn', 2 ** -4], ['e5m2', 2 ** -3]] as const) {
    it(`${format}: equals float32 weights rounded to ${format}, ≈¼ of the UNet matrix bytes, and stays within the rounding bound`, async () => {
      pipe.enableFp8Storage({ format });
      const r = await pipe.generate(BASE);
      // 1. memory: each ≥2-d weight went from 4 bytes to 1 per element; 1-d parameters unchanged
      const fp8Bytes = pipe.info.components.find((c) => c.name === 'unet')!.bytes;
      expect(fp8Bytes).toBe(floatBytes - 3 * matrixElements);
      const matrixShare = (4 * matrixElements) / floatBytes;
      // 2. exactness of storage: the same as a float32 model whose weights were rounded independently
      const oracle = await StableDiffusionPipeline.fromPretrained(await roundedModel(format));
      oracle.setScheduler('DDIMScheduler');
      const o = await oracle.generate(BASE);
      oracle.dispose();
      const eOracle = rel(r.latents!, o.latents!);
      expect(eOracle, 'fp8 storage vs float32-rounded weights').toBeLessThan(1e-5);
      // 3. effect of the rounding: every weight moved by at most u = 2^-(mantissa bits + 1) relative
      //    (half an ulp: 2^-4 for e4m3fn, 2^-3 for e5m2). The output error is first order in the
      //    weight perturbation and independent per-weight roundings add in quadrature, not
      //    linearly, so the final latents must move by less than u relative: bound u. Measured on
      //    this fixture: ≈0.4u for both formats (e5m2's error is twice e4m3fn's, as u is).
      const e = rel(r.latents!, base.latents!);
      expect(e).toBeGreaterThan(0); // the rounding really happened
      expect(e, `latents relative error vs float32 (bound u = ${u})`).toBeLessThan(u);
      const p = pixelDiff(r, base);
      measured[`fp8 ${format}`] = `latents rel ${e.toExponential(2)} (bound ${u}), vs rounded-float oracle ${eOracle.toExponential(2)}, ` +
        `uint8 max ${p.max} mean ${p.mean.toFixed(3)}; UNet bytes ${floatBytes} → ${fp8Bytes} ` +
        `(matrices ${(matrixShare * 100).toFixed(1)}% of float32 bytes, now ¼)`;
      // 4. disable re-reads the float weights from the file: back to the plain result exactly
      pipe.disableFp8Storage();
      const back = await pipe.generate(BASE);
      expect(maxAbsDiff(back.latents!, base.latents!)).toBe(0);
      expect(pipe.info.components.find((c) => c.name === 'unet')!.bytes).toBe(floatBytes);
    }, 240_000);
  }

  it('toggles apply from the next call: a call queued before enableFp8Storage keeps float weights', async () => {
    const first = pipe.generate(BASE); // queued with the plain settings
    pipe.enableFp8Storage();
    const second = pipe.generate(BASE);
    pipe.disableFp8Storage();
    const third = pipe.generate(BASE);
    const [a, b, c] = await Promise.all([first, second, third]);
    expect(maxAbsDiff(a.latents!, base.latents!)).toBe(0);
    expect(maxAbsDiff(b.latents!, base.latents!)).toBeGreaterThan(0);
    expect(maxAbsDiff(c.latents!, base.latents!)).toBe(0);
  }, 240_000);
});

// -------------------------------------------------------------------------------------------
// Precision
// -------------------------------------------------------------------------------------------

describe('precision (dtype at load)', () => {
  it('bfloat16 reproduces the pipe_ddim golden within the bfloat16 bound', async () => {
    // bfloat16 keeps 8 significant bits: unit round-off u = 2^-8 ≈ 3.9e-3 on every weight and
    // activation. Over 10 DDIM steps with CFG 7.5 (which amplifies the cond−uncond difference
    // 7.5×) these errors compound; bound: final latents max|Δ|/max|ref| < 16u = 2^-4 and the
    // decoded uint8 image within a mean of 2 levels. (float32 meets 1e-4 in parity.test.ts.)
    const g = await loadGolden('tiny-sd15', 'pipe_ddim.safetensors');
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'bfloat16' });
    expect(pipe.info.dtype).toBe('bfloat16');
    pipe.setScheduler('DDIMScheduler');
    const r = await pipe.generate({ ...BASE, numInferenceSteps: 10 });
    pipe.dispose();
    const e = rel(r.latents!, g.final_latents);
    const ref = g.image_uint8;
    let sum = 0, max = 0;
    for (let i = 0; i < ref.data.length; i++) {
      const d = Math.abs(r.images[0].data[i] - ref.data[i]);
      sum += d;
      max = Math.max(max, d);
    }
    const mean = sum / ref.data.length;
    measured['bfloat16 vs pipe_ddim golden'] = `latents rel ${e.toExponential(2)} (bound ${2 ** -4}), uint8 max ${max} mean ${mean.toFixed(3)}`;
    expect(e).toBeLessThan(2 ** -4);
    expect(mean).toBeLessThan(2);
  }, 300_000);

  it('bfloat16 with flash attention reproduces the pipe_ddim golden within the same bfloat16 bound', async () => {
    const g = await loadGolden('tiny-sd15', 'pipe_ddim.safetensors');
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'bfloat16' });
    pipe.setScheduler('DDIMScheduler');
    pipe.setAttentionBackend('flash');
    const r = await pipe.generate({ ...BASE, numInferenceSteps: 10 });
    pipe.dispose();
    const e = rel(r.latents!, g.final_latents);
    measured['bfloat16 + flash vs pipe_ddim golden'] = `latents rel ${e.toExponential(2)} (bound ${2 ** -4})`;
    expect(e).toBeLessThan(2 ** -4);
  }, 300_000);

  it('bfloat16 with channels-last equals bfloat16 contiguous within the bfloat16 bound (libtorch kernel quirks routed around)', async () => {
    // Debian's libtorch 1.13 computes bfloat16 group_norm on channels-last input wrongly and 2.6
    // bfloat16 3×3 convs with out_channels % 16 != 0 (runtime/kernel_quirks.h); both are routed around.
    const quirks = buildInfo().cpuKernelQuirks.bfloat16;
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'bfloat16' });
    try {
      const plain = await pipe.generate(BASE);
      pipe.enableChannelsLast();
      const cl = await pipe.generate(BASE);
      const e = rel(cl.latents!, plain.latents!);
      measured['bfloat16 channels-last vs contiguous'] = `latents rel ${e.toExponential(2)} (quirks: ${quirks.join(', ') || 'none'})`;
      expect(e).toBeLessThan(2 ** -4);
    } finally {
      pipe.dispose();
    }
  }, 300_000);

  it('float16 on this CPU build is a clear E_UNSUPPORTED_MODEL (libtorch < 2) or works', async () => {
    const load = StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'float16' });
    if (libtorchMajor < 2) {
      await expect(load).rejects.toMatchObject({ code: 'E_UNSUPPORTED_MODEL', message: expect.stringMatching(/float16/) });
    } else {
      const pipe = await load.catch((e) => e);
      if (pipe instanceof StableDiffusionPipeline) pipe.dispose();
      else expect(pipe).toMatchObject({ code: 'E_UNSUPPORTED_MODEL', message: expect.stringMatching(/float16/) });
    }
  });

  it('NaN/inf in the decoded image is E_NUMERICAL, not a black image', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    try {
      // latents at the float32 limit overflow inside the UNet/VAE convolutions → inf → NaN
      const latents = { data: new Float32Array(1 * 4 * 32 * 32).fill(3e38), shape: [1, 4, 32, 32] };
      await expect(pipe.generate({ ...BASE, numInferenceSteps: 1, guidanceScale: 1, latents })).rejects.toMatchObject({
        code: 'E_NUMERICAL', message: expect.stringMatching(/NaN or infinity/),
      });
      // the pipeline stays usable
      const ok = await pipe.generate({ ...BASE, numInferenceSteps: 1, guidanceScale: 1 });
      expect(ok.images.length).toBe(1);
    } finally {
      pipe.dispose();
    }
  }, 120_000);
});
