/**
 * Per-image seeds (issue 18 item 4; the base of issue 15's dynamic batching): `seed: number[]`
 * gives each image its own CPU generator, diffusers' list-of-generators semantics
 * (`randn_tensor` draws row i from generator i; img2img encodes row i with generator i). So
 * image i of a batch made with a list equals the same prompt run alone with `seed: seeds[i]`,
 * with a scheduler that draws noise at every step (EulerAncestral, DDIM with eta) as well as a
 * deterministic one, on SD 1.x txt2img and img2img and on SDXL: every random draw exactly (the
 * initial latents are compared bit for bit), the images within one uint8 level — the fixture
 * tolerance — because a UNet run on a batch of 2B rows rounds its matmuls differently from a
 * run on 2 rows (CPU GEMM blocking depends on the row count; measured: ≤ 1.7e-4 on the final
 * latents of the tiny model, the same in diffusers on the same libtorch). Inpainting follows diffusers (its one image is encoded with the first generator), so
 * there only image 0 equals its seed run alone. A list of the wrong length is a typed error and
 * the pipeline works on the next call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
  StableDiffusionXLPipeline, type GenerateResult,
} from '../lib/index.js';
import { fixture, rejection } from './helpers/fixtures.js';

const size = { width: 32, height: 32 };
const steps = { numInferenceSteps: 3 };

/** The rows of `[B, …]` latents, one Float32Array per image. */
function rows(l: GenerateResult['initialLatents']): Float32Array[] {
  if (!l) throw new Error('no latents');
  const per = l.data.length / l.shape[0];
  return Array.from({ length: l.shape[0] }, (_, i) => l.data.subarray(i * per, (i + 1) * per));
}

/** A 32×32 RGB test image: a diagonal gradient. */
function gradient() {
  const data = new Uint8Array(32 * 32 * 3);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) data.set([x * 8, y * 8, (x + y) * 4], (y * 32 + x) * 3);
  return { width: 32, height: 32, channels: 3 as const, data };
}

/** The largest difference between two images' bytes (they must be the same size). */
function maxLevelDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('per-image seeds: SD 1.x', () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15')); });
  afterAll(() => pipe?.dispose());

  for (const scheduler of ['EulerAncestralDiscreteScheduler', 'DDIMScheduler'] as const) {
    it(`image i of a batch with seeds [s0, s1, s2] equals seed s_i alone (${scheduler})`, async () => {
      pipe.setScheduler(scheduler);
      const prompts = ['a red fox', 'a blue lake', 'a green hill'];
      const seeds = [7, 123456789, 2 ** 40 + 3];
      const batch = await pipe.generate({ prompt: prompts, seed: seeds, ...size, ...steps, eta: 0.5 });
      expect(batch.seeds).toEqual(seeds);
      expect(batch.seed).toBe(seeds[0]);
      const batchLatents = rows(batch.initialLatents);
      for (let i = 0; i < prompts.length; i++) {
        const alone = await pipe.generate({ prompt: prompts[i], seed: seeds[i], ...size, ...steps, eta: 0.5 });
        expect(batchLatents[i]).toEqual(rows(alone.initialLatents)[0]);
        expect(maxLevelDiff(batch.images[i].data, alone.images[0].data)).toBeLessThanOrEqual(1);
        // the image's parameters name its own seed and no batch position: it is reproduced alone
        expect(batch.images[i].parameters.seed).toBe(seeds[i]);
        expect(batch.images[i].parameters.batchSize).toBeUndefined();
      }
    });
  }

  it('numImagesPerPrompt 2 with two seeds: the second image is the second seed alone', async () => {
    pipe.setScheduler('EulerAncestralDiscreteScheduler');
    const batch = await pipe.generate({ prompt: 'a castle', numImagesPerPrompt: 2, seed: [31, 32], ...size, ...steps });
    const alone = await pipe.generate({ prompt: 'a castle', seed: 32, ...size, ...steps });
    expect(maxLevelDiff(batch.images[1].data, alone.images[0].data)).toBeLessThanOrEqual(1);
    // and one seed for the batch still means one generator for all rows (diffusers' default)
    const one = await pipe.generate({ prompt: 'a castle', numImagesPerPrompt: 2, seed: 31, ...size, ...steps });
    expect(rows(one.initialLatents)[0]).toEqual(rows(batch.initialLatents)[0]);
    expect(rows(one.initialLatents)[1]).not.toEqual(rows(batch.initialLatents)[1]);
    expect(one.seeds).toEqual([31, 31]);
    expect(one.images[1].parameters.batchIndex).toBe(1);
  });

  it('a list of the wrong length, an empty list or a bad entry is E_INVALID_ARGUMENT; the next call works', async () => {
    const e1 = await rejection(pipe.generate({ prompt: ['a', 'b'], seed: [1, 2, 3], ...size, ...steps }));
    expect(e1).toBeInstanceOf(InvalidArgumentError);
    expect((e1 as InvalidArgumentError).message).toMatch(/3 seeds was given for 2 images/);
    const e2 = await rejection(pipe.generate({ prompt: 'a', seed: [], ...size, ...steps }));
    expect(e2).toBeInstanceOf(InvalidArgumentError);
    expect((e2 as InvalidArgumentError).message).toMatch(/seed/);
    const e3 = await rejection(pipe.generate({ prompt: 'a', seed: [-1], ...size, ...steps }));
    expect((e3 as InvalidArgumentError).code).toBe('E_INVALID_ARGUMENT');
    const e4 = await rejection(pipe.generate({ prompt: 'a', seed: [1.5], ...size, ...steps }));
    expect((e4 as InvalidArgumentError).code).toBe('E_INVALID_ARGUMENT');
    const ok = await pipe.generate({ prompt: 'a', seed: [9], ...size, ...steps });
    expect(ok.images).toHaveLength(1);
  });
});

describe('per-image seeds: img2img and inpainting', () => {
  it('img2img: each row is encoded and noised with its own generator — image i equals seed i alone', async () => {
    const pipe = await StableDiffusionImg2ImgPipeline.fromPretrained(fixture('models', 'tiny-sd15'));
    try {
      pipe.setScheduler('EulerAncestralDiscreteScheduler');
      const image = gradient();
      const seeds = [5, 6];
      const batch = await pipe.generate({ prompt: 'a painting', image, numImagesPerPrompt: 2, seed: seeds, strength: 0.7, ...steps });
      for (let i = 0; i < 2; i++) {
        const alone = await pipe.generate({ prompt: 'a painting', image, seed: seeds[i], strength: 0.7, ...steps });
        expect(maxLevelDiff(batch.images[i].data, alone.images[0].data)).toBeLessThanOrEqual(1);
      }
    } finally {
      pipe.dispose();
    }
  });

  it('inpainting: image 0 equals seed 0 alone; the batch keeps its position in the parameters', async () => {
    const pipe = await StableDiffusionInpaintPipeline.fromPretrained(fixture('models', 'tiny-sd15'));
    try {
      const image = gradient();
      const mask = { width: 32, height: 32, channels: 1 as const, data: new Uint8Array(32 * 32).map((_, k) => (k % 32 < 16 ? 255 : 0)) };
      const batch = await pipe.generate({ prompt: 'a door', image, maskImage: mask, numImagesPerPrompt: 2, seed: [40, 41], strength: 0.8, ...steps });
      const alone = await pipe.generate({ prompt: 'a door', image, maskImage: mask, seed: 40, strength: 0.8, ...steps });
      expect(maxLevelDiff(batch.images[0].data, alone.images[0].data)).toBeLessThanOrEqual(1);
      expect(batch.seeds).toEqual([40, 41]);
      expect(batch.images[1].parameters.seed).toBe(41);
      expect(batch.images[1].parameters.batchIndex).toBe(1);
    } finally {
      pipe.dispose();
    }
  });
});

describe('per-image seeds: SDXL', () => {
  it('image i of an SDXL batch with a list of seeds equals seed i alone', async () => {
    const pipe = await StableDiffusionXLPipeline.fromPretrained(fixture('models', 'tiny-sdxl'));
    try {
      pipe.setScheduler('EulerAncestralDiscreteScheduler');
      const seeds = [100, 200];
      const batch = await pipe.generate({ prompt: ['a cat', 'a dog'], seed: seeds, ...size, ...steps });
      for (let i = 0; i < 2; i++) {
        const alone = await pipe.generate({ prompt: ['a cat', 'a dog'][i], seed: seeds[i], ...size, ...steps });
        expect(rows(batch.initialLatents)[i]).toEqual(rows(alone.initialLatents)[0]);
        expect(maxLevelDiff(batch.images[i].data, alone.images[0].data)).toBeLessThanOrEqual(1);
      }
    } finally {
      pipe.dispose();
    }
  });
});
