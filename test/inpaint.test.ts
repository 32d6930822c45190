/**
 * StableDiffusionInpaintPipeline against goldens/tiny-sd15-inpaint (9-channel UNet; fixtures/README.md
 * "Inpainting"): every case, strength 1 and 0.75, DDIM and Euler a — initial latents, final latents
 * (relative error < 1e-4) and uint8 pixels (±1 on < 1%).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { StableDiffusionInpaintPipeline, StableDiffusionPipeline } from '../lib/index.js';
import { goldenGenerateOptions, loadCases, loadGolden, maxAbs, maxAbsDiff, fixture, uint8Report } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

const { modelDir, cases } = loadCases('tiny-sd15-inpaint');

describe('inpainting parity: tiny-sd15-inpaint', () => {
  let pipe: StableDiffusionInpaintPipeline;
  const largest: Record<string, number> = {};
  beforeAll(async () => { pipe = await StableDiffusionInpaintPipeline.fromPretrained(modelDir); });
  afterAll(() => { pipe?.dispose(); console.log('largest errors', largest); });

  for (const c of cases.filter((x) => x.kind === 'pipeline')) {
    it(`${c.name}: latents and pixels equal diffusers'`, async () => {
      const p = c.params;
      const g = await loadGolden('tiny-sd15-inpaint', c.file);
      pipe.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
      const opts = goldenGenerateOptions(p, g) as any; // image + maskImage from the golden
      const lat = await pipe.generate({ ...opts, outputType: 'latent' });
      const initRel = maxAbsDiff(lat.initialLatents!, g.initial_latents) / maxAbs(g.initial_latents);
      expect(initRel, `initial latents relative error ${initRel}`).toBeLessThan(1e-4);
      const rel = maxAbsDiff(lat.latents!, g.final_latents) / maxAbs(g.final_latents);
      largest[`${c.name} final latents rel`] = rel;
      expect(rel, `final latents relative error ${rel}`).toBeLessThan(1e-4);
      const out = await pipe.generate(opts);
      const r = uint8Report(out.images[0].data, g.image_uint8);
      largest[`${c.name} uint8 off-by-one fraction`] = r.fraction;
      expect(r.worst).toBeLessThanOrEqual(1);
      expect(r.fraction).toBeLessThan(0.01);
    });
  }

  it('enableChannelsLast applies to inpainting: the first golden case still matches diffusers', async () => {
    const c = cases.find((x) => x.kind === 'pipeline')!;
    const p = c.params;
    const g = await loadGolden('tiny-sd15-inpaint', c.file);
    pipe.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
    pipe.enableChannelsLast();
    try {
      const out = await pipe.generate(goldenGenerateOptions(p, g) as any);
      const rel = maxAbsDiff(out.latents!, g.final_latents) / maxAbs(g.final_latents);
      largest[`${c.name} channels-last final latents rel`] = rel;
      expect(rel).toBeLessThan(1e-4);
      expect(uint8Report(out.images[0].data, g.image_uint8).worst).toBeLessThanOrEqual(1);
    } finally {
      pipe.disableChannelsLast();
    }
  });

  it('a mask of the wrong size and a missing mask are E_INVALID_ARGUMENT', async () => {
    const image = { data: new Uint8Array(64 * 64 * 3), width: 64, height: 64, channels: 3 as const };
    await expect(pipe.generate({ prompt: 'x', image, maskImage: { data: new Uint8Array(10), width: 5, height: 2, channels: 1 } }))
      .rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(pipe.generate({ prompt: 'x', image } as any)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });

  it('the text-to-image pipeline refuses a 9-channel model with a clear error', async () => {
    const t2i = StableDiffusionPipeline.fromPipeline(pipe);
    const e = await t2i.generate({ prompt: 'x', numInferenceSteps: 1, height: 32, width: 32 }).catch((x) => x);
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('StableDiffusionInpaintPipeline');
    t2i.dispose();
  });
});

describe('inpainting with a regular 4-channel model (latent blending)', () => {
  it('keeps the unmasked latents equal to the (re-noised) image latents at the end', async () => {
    const pipe = await StableDiffusionInpaintPipeline.fromPretrained(fixture('models', 'tiny-sd15'));
    try {
      const w = 32, h = 32;
      const data = new Uint8Array(w * h * 3).map((_, i) => (i * 37) % 251);
      const mask = new Uint8Array(w * h).map((_, i) => ((i % w) >= 16 ? 255 : 0));
      const r = await pipe.generate({
        prompt: 'a cat', numInferenceSteps: 3, seed: 1, outputType: 'latent',
        image: { data, width: w, height: h, channels: 3 }, maskImage: { data: mask, width: w, height: h, channels: 1 },
      });
      expect(r.latents!.shape).toEqual([1, 4, 16, 16]);
      // same image and seed with an all-black mask: nothing is repainted, so the left half agrees
      const keep = await pipe.generate({
        prompt: 'a dog', numInferenceSteps: 3, seed: 1, outputType: 'latent',
        image: { data, width: w, height: h, channels: 3 }, maskImage: { data: new Uint8Array(w * h), width: w, height: h, channels: 1 },
      });
      const a = r.latents!.data as Float32Array, b = keep.latents!.data as Float32Array;
      let left = 0, right = 0;
      for (let c = 0; c < 4; c++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
        const i = (c * 16 + y) * 16 + x;
        if (x < 8) left = Math.max(left, Math.abs(a[i] - b[i])); else right = Math.max(right, Math.abs(a[i] - b[i]));
      }
      expect(left).toBe(0);
      expect(right).toBeGreaterThan(0);
    } finally {
      pipe.dispose();
    }
  });
});
