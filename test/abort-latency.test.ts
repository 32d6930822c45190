/**
 * Abort latency (issue 19, item 2): an abort is seen inside the UNet forward, the VAE decode and
 * the text encoder (runtime/cancellation.h check points between blocks, resnets, transformer
 * blocks, encoder layers, tiles and slices), not only between denoising steps.
 *
 * Bound: the design target is 100 ms from abort() to the rejection. The latency is the longest
 * run between two check points (plus the hop back to the event loop); on the tiny fixture at
 * 64²–96² that is one unsliced top-resolution self-attention (≈ 100 ms at 64², ≈ 400 ms at 96²
 * here, warm; enableAttentionSlicing adds a check point per slice). The tests assert ≤ 250 ms
 * because this shared 2-core machine runs other builds at once and its timings jitter by 2×.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { StableDiffusionPipeline, SdError, AbortError } from '../lib/index.js';
import { fixture } from './helpers/fixtures.js';

const modelDir = fixture('models', 'tiny-sd15');
const BOUND_MS = 250;
let armed: (() => void) | undefined; // the decode test's timer, started by the last step's event

let pipe: StableDiffusionPipeline;
let fresh: StableDiffusionPipeline; // the reference: never aborted
beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
  fresh = await StableDiffusionPipeline.fromPretrained(modelDir);
});
afterAll(() => { pipe?.dispose(); fresh?.dispose(); });

const check = { prompt: 'a lighthouse at dusk', height: 32, width: 32, seed: 11, numInferenceSteps: 2 } as const;

/** Runs `opts` with a signal aborted by `arm(abort)`; returns the latency or 'completed'. */
async function abortedCall(opts: Record<string, unknown>, arm: (abort: () => void) => void): Promise<number | 'completed'> {
  const c = new AbortController();
  let abortedAt = 0;
  arm(() => { abortedAt = performance.now(); c.abort(new Error('stop')); });
  const err = await pipe.generate({ ...opts, signal: c.signal } as never).then(() => undefined, (e: unknown) => e);
  const end = performance.now();
  if (err === undefined) return 'completed';
  expect(err).toBeInstanceOf(AbortError);
  expect(err).toBeInstanceOf(SdError);
  expect((err as SdError).code).toBe('E_ABORTED');
  expect((err as Error).message).toMatch(/aborted: stop/); // the signal's reason (native_call.ts)
  expect(abortedAt).toBeGreaterThan(0);
  return end - abortedAt;
}

async function expectStillCorrect() {
  const [a, b] = [await pipe.generate(check), await fresh.generate(check)];
  expect(Buffer.compare(a.images[0].data, b.images[0].data)).toBe(0);
}

describe('abort latency', () => {
  it(`aborting during a UNet step rejects within ${BOUND_MS} ms; the next call is correct`, async () => {
    // The smallest size at which one CFG UNet step takes ≥ 300 ms on this libtorch and machine
    // (96² on both lines since the flash/SDPA attention: 0.5–1 s), so that the aborts land
    // inside the step, not in the gap between steps.
    let opts = { prompt: 'a lighthouse at dusk', height: 64, width: 64, seed: 3, numInferenceSteps: 3 };
    let ref: Awaited<ReturnType<StableDiffusionPipeline['generate']>> | undefined;
    let stepMs = 0;
    for (const size of [64, 96, 128]) {
      opts = { ...opts, height: size, width: size };
      await pipe.generate(opts); // warm-up at this size
      ref = await pipe.generate(opts);
      stepMs = ref.timings.denoiseMs / 3;
      if (stepMs >= 300) break;
    }
    const longSteps = stepMs >= 300; // else (a fast machine) steps are shorter than the bound anyway
    const lat: number[] = [];
    for (let i = 0; i < 5; ++i) {
      // The abort is timed from this call's own steps: at the end of step 2, at a random point
      // 15–85 % into step 3, the length of step 2 taken as step 3's. (Timing it from the warm-up
      // call, as before, failed in CI: vitest runs files in parallel, so the warm-up could run
      // under another file's load and the aborted call without it — steps 2–3× shorter than
      // estimated, and the abort landed two steps late.)
      let steps = 0;
      let lastStepAt = 0;
      let abort!: () => void;
      const t = await abortedCall({ ...opts, numInferenceSteps: 6, onStep: () => {
        const now = performance.now();
        if (++steps === 2) setTimeout(abort, (0.15 + 0.7 * Math.random()) * (now - lastStepAt));
        lastStepAt = now;
      } }, (a) => { abort = a; });
      expect(t).not.toBe('completed');
      if (longSteps) expect(steps).toBeLessThanOrEqual(3); // stopped inside step 3 (or, on a slow moment, step 4)
      lat.push(t as number);
    }
    console.log(`UNet-step abort latency ms at ${opts.width}² (step ${stepMs.toFixed(0)} ms): ${lat.map((x) => x.toFixed(0)).join(', ')}`);
    expect(Math.max(...lat)).toBeLessThanOrEqual(BOUND_MS);
    await expectStillCorrect();
  }, 120_000);

  it(`aborting during the VAE decode rejects within ${BOUND_MS} ms; the next call is correct`, async () => {
    // 96², no CFG, 1 step: the abort is fired by the last step's progress event, i.e. once the
    // decode has started, at a random point of its measured duration.
    const opts = { prompt: 'a lighthouse at dusk', height: 96, width: 96, seed: 5, numInferenceSteps: 1, guidanceScale: 1 };
    await pipe.generate(opts); // warm-up
    const ref = await pipe.generate(opts);
    const lat: number[] = [];
    let completed = 0;
    for (let i = 0; i < 5; ++i) {
      const t = await abortedCall({ ...opts, onStep: () => { armed?.(); } }, (abort) => {
        armed = () => setTimeout(abort, Math.random() * 0.7 * ref.timings.decodeMs);
      });
      if (t === 'completed') ++completed; else lat.push(t);
    }
    console.log(`VAE-decode abort latency ms: ${lat.map((x) => x.toFixed(0)).join(', ')} (completed first: ${completed})`);
    expect(lat.length).toBeGreaterThan(0);
    expect(Math.max(...lat)).toBeLessThanOrEqual(BOUND_MS);
    await expectStillCorrect();
  }, 120_000);

  it('an abort leaves the toggles as they were and the pipeline unlocked', async () => {
    pipe.enableAttentionSlicing(1).enableVaeSlicing();
    fresh.enableAttentionSlicing(1).enableVaeSlicing();
    const before = JSON.stringify(pipe.optimizations);
    const t = await abortedCall({ prompt: 'x', height: 64, width: 64, seed: 1, numInferenceSteps: 2 }, (abort) => setTimeout(abort, 200));
    expect(t).not.toBe('completed');
    expect(t as number).toBeLessThanOrEqual(BOUND_MS);
    expect(JSON.stringify(pipe.optimizations)).toBe(before);
    await expectStillCorrect();
    pipe.disableAttentionSlicing().disableVaeSlicing();
    fresh.disableAttentionSlicing().disableVaeSlicing();
  }, 120_000);
});
