/**
 * End-to-end parity with diffusers: every txt2img / img2img case of goldens/tiny-sd15 and
 * goldens/tiny-sd2-v, from the seed to the uint8 pixels (fixtures/README.md tolerances:
 * final latents max|diff| / max|ref| < 1e-4, image atol 2e-3, uint8 off by ≤ 1 on < 1% of pixels).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import path from 'node:path';
import { StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, Generator } from '../lib/index.js';
import { goldenGenerateOptions, loadCases, loadGolden, maxAbs, maxAbsDiff, fixture, uint8Report } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

for (const model of ['tiny-sd15', 'tiny-sd2-v']) {
  const { modelDir, cases } = loadCases(model);
  const pipelineCases = cases.filter((c) => c.kind === 'pipeline');

  describe(`pipeline parity: ${model}`, () => {
    let pipe: StableDiffusionPipeline;
    let img2img: StableDiffusionImg2ImgPipeline;
    beforeAll(async () => {
      pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
      img2img = await StableDiffusionImg2ImgPipeline.fromPretrained(modelDir);
    });
    afterAll(() => {
      pipe?.dispose();
      img2img?.dispose();
    });

    for (const c of pipelineCases) {
      it(`${c.name}: latents and pixels equal diffusers'`, async () => {
        const p = c.params;
        const g = await loadGolden(model, c.file);
        const isImg2img = p.pipeline === 'StableDiffusionImg2ImgPipeline';
        const target = isImg2img ? img2img : pipe;
        target.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
        const opts = goldenGenerateOptions(p, g);
        if (!isImg2img) {
          // The seed alone reproduces diffusers' initial latents (CPU generator semantics).
          const init = g.initial_latents_randn;
          const drawn = new Generator(opts.seed).randn(init.shape);
          expect(maxAbsDiff(drawn, init)).toBe(0);
        }
        const lat = await (target as any).generate({ ...opts, outputType: 'latent' });
        const ref = g.final_latents;
        const rel = maxAbsDiff(lat.latents, ref) / maxAbs(ref);
        expect(rel, `final latents relative error ${rel}`).toBeLessThan(1e-4);

        const out = await (target as any).generate(opts);
        const expected = g.image_uint8;
        const batch = expected.shape[0];
        expect(out.images.length).toBe(batch);
        const per = expected.data.length / batch;
        for (let b = 0; b < batch; b++) {
          const img = out.images[b];
          expect([img.height, img.width]).toEqual([expected.shape[1], expected.shape[2]]);
          const r = uint8Report(img.data, { data: expected.data.subarray(b * per, (b + 1) * per), shape: expected.shape.slice(1) });
          expect(r.worst, `image ${b}: max uint8 difference`).toBeLessThanOrEqual(1);
          expect(r.fraction, `image ${b}: fraction of pixels off by one`).toBeLessThan(0.01);
        }
      });
    }
  });
}

describe('single file equals folder', () => {
  it('tiny-sd15.safetensors gives the same image as the diffusers folder', async () => {
    const dir = fixture('models', 'tiny-sd15');
    const a = await StableDiffusionPipeline.fromPretrained(dir);
    const b = await StableDiffusionPipeline.fromSingleFile(fixture('models', 'tiny-sd15.safetensors'), { configDir: dir });
    const opts = { prompt: 'a red sports car', numInferenceSteps: 4, seed: 7, height: 64, width: 64 };
    const [ia, ib] = [await a.generate(opts), await b.generate(opts)];
    expect(Buffer.compare(ia.images[0].data, ib.images[0].data)).toBe(0);
    a.dispose();
    b.dispose();
  });
});
