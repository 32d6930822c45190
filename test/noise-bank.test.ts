/**
 * The denoising loop draws its scheduler noise up front (issue 13, item 2: no host
 * synchronisation per step): at the first step that draws, every step's draw is made at once from
 * the CPU generator(s) in diffusers' order and copied to the device in one go. That the values
 * are unchanged is proven by the pipeline goldens that draw noise every step (EulerAncestral,
 * LCM, DDIM with eta, DPM-Solver SDE: test/parity.test.ts, sdxl.test.ts, inpaint.test.ts, and
 * test/per-image-seeds.test.ts for lists of generators); this file proves the loops really are
 * served from the bank — one bank per call, one banked draw per drawing step — and that a
 * scheduler that draws nothing fills none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StableDiffusionInpaintPipeline, StableDiffusionPipeline, type SchedulerName } from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';
import { fixture } from './helpers/fixtures.js';

const call = { prompt: 'a lighthouse', width: 32, height: 32, numInferenceSteps: 4, seed: 3 };

/** The counters' change over `run`. */
async function delta(run: () => Promise<unknown>): Promise<{ filled: number; served: number }> {
  const before = addon().noiseBankStats();
  await run();
  const after = addon().noiseBankStats();
  return { filled: after.filled - before.filled, served: after.served - before.served };
}

describe('noise bank', () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15')); });
  afterAll(() => pipe?.dispose());

  const cases: Array<[SchedulerName, Record<string, unknown>, { filled: number; served: number }]> = [
    ['EulerAncestralDiscreteScheduler', {}, { filled: 1, served: 4 }], // one draw every step
    ['EulerDiscreteScheduler', {}, { filled: 1, served: 4 }], // diffusers' unused draw, every step
    ['LCMScheduler', {}, { filled: 1, served: 3 }], // none after the last step
    ['DDIMScheduler', { eta: 0.3 }, { filled: 1, served: 4 }],
    ['DDIMScheduler', {}, { filled: 0, served: 0 }], // eta 0: deterministic, nothing drawn
    ['DPMSolverMultistepScheduler', {}, { filled: 0, served: 0 }],
  ];
  for (const [scheduler, extra, expected] of cases) {
    it(`${scheduler}${Object.keys(extra).length ? ` ${JSON.stringify(extra)}` : ''}: ${expected.served} draws served from ${expected.filled} bank(s)`, async () => {
      pipe.setScheduler(scheduler);
      expect(await delta(() => pipe.generate({ ...call, ...extra }))).toEqual(expected);
    });
  }

  it('a list of generators: one bank for all rows, one banked draw per step', async () => {
    pipe.setScheduler('EulerAncestralDiscreteScheduler');
    expect(await delta(() => pipe.generate({ ...call, prompt: ['a', 'b', 'c'], seed: [1, 2, 3] }))).toEqual({ filled: 1, served: 4 });
  });

  it('the inpainting loop draws from the bank too', async () => {
    const inpaint = await StableDiffusionInpaintPipeline.fromPretrained(fixture('models', 'tiny-sd15'));
    try {
      inpaint.setScheduler('EulerAncestralDiscreteScheduler');
      const image = { width: 32, height: 32, channels: 3 as const, data: new Uint8Array(32 * 32 * 3).fill(128) };
      const maskImage = { width: 32, height: 32, channels: 1 as const, data: new Uint8Array(32 * 32).fill(255) };
      // strength 0.5 of 4 steps: 2 steps run, 2 draws
      expect(await delta(() => inpaint.generate({ ...call, image, maskImage, strength: 0.5 }))).toEqual({ filled: 1, served: 2 });
    } finally {
      inpaint.dispose();
    }
  });
});
