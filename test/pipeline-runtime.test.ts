/**
 * The pipeline as a Node service sees it, on the real native code: a model made by
 * create-model, the event loop kept free, progress, cancellation, queueing, bad input that
 * leaves the pipeline usable, and dispose() freeing the native model.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, createModel, SdError, readSafetensorsHeader,
} from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-runtime-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const modelDir = path.join(tmp, 'tiny');
let pipe: StableDiffusionPipeline;

// 32×32 pixels = 16×16 latents with the tiny preset (VAE factor 2): a few ms per UNet call.
const small = { prompt: 'a lighthouse at dusk', height: 32, width: 32, seed: 3 } as const;

beforeAll(async () => {
  const created = await createModel({ preset: 'sd15', scale: 'tiny', out: modelDir, seed: 5 });
  expect(created.parameters.unet).toBeGreaterThan(1000);
  pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
});
afterAll(() => pipe?.dispose());

describe('create-model', () => {
  it('writes a diffusers folder whose files match the config-built models', async () => {
    for (const [dir, file] of [['unet', 'diffusion_pytorch_model'], ['vae', 'diffusion_pytorch_model'], ['text_encoder', 'model']]) {
      const h = await readSafetensorsHeader(path.join(modelDir, dir, `${file}.safetensors`));
      expect(h.tensors.length).toBeGreaterThan(10);
      expect(h.tensors.every((t) => t.dtype === 'F32')).toBe(true);
    }
    const info = pipe.info;
    expect(info.family).toBe('sd1');
    expect(info.components.map((c) => c.name).sort()).toEqual(['text_encoder', 'unet', 'vae']);
    expect(info.vaeScaleFactor).toBe(2);
  });

  it('is deterministic in its seed and finite in float16 storage', async () => {
    const again = path.join(tmp, 'tiny-again');
    await createModel({ preset: 'sd15', scale: 'tiny', out: again, seed: 5 });
    const a = fs.readFileSync(path.join(modelDir, 'unet', 'diffusion_pytorch_model.safetensors'));
    const b = fs.readFileSync(path.join(again, 'unet', 'diffusion_pytorch_model.safetensors'));
    expect(Buffer.compare(a, b)).toBe(0);
    const half = path.join(tmp, 'tiny-f16');
    await createModel({ preset: 'sd15', scale: 'tiny', out: half, seed: 5, dtype: 'float16' });
    const h = await readSafetensorsHeader(path.join(half, 'unet', 'diffusion_pytorch_model.safetensors'));
    expect(h.tensors.every((t) => t.dtype === 'F16')).toBe(true);
    // A float16 file loads and runs (converted once at load to the float32 compute dtype).
    const p16 = await StableDiffusionPipeline.fromPretrained(half);
    const r = await p16.generate({ ...small, numInferenceSteps: 2 });
    expect(r.images[0].data.length).toBe(32 * 32 * 3);
    p16.dispose();
  });
});

describe('off the event loop', () => {
  it('keeps a setInterval firing while a generation runs, and reports progress per step', async () => {
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 5);
    const steps: Array<{ step: number; numSteps: number; timestep: number; elapsedMs: number }> = [];
    const t0 = performance.now();
    const r = await pipe.generate({ ...small, height: 64, width: 64, numInferenceSteps: 4, onStep: (s) => steps.push(s) });
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(r.images).toHaveLength(1);
    // A blocked loop would fire ~once; a free one ~ms/5 times (allow for a loaded 2-core box).
    expect(ticks).toBeGreaterThan(Math.max(3, ms / 5 / 4));
    // The model's PNDMScheduler (PLMS) runs numInferenceSteps + 1 UNet calls, as diffusers does.
    const n = r.timesteps.length;
    expect(n).toBe(5);
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(steps.every((s) => s.numSteps === n)).toBe(true);
    expect(steps.map((s) => s.timestep)).toEqual(r.timesteps);
    for (let i = 1; i < steps.length; i++) expect(steps[i].elapsedMs).toBeGreaterThanOrEqual(steps[i - 1].elapsedMs);
  });

  it('runs calls on one pipeline in order, each equal to the same call made alone', async () => {
    const alone = await pipe.generate({ ...small, numInferenceSteps: 3, seed: 11 });
    const order: number[] = [];
    const calls = [11, 12, 13].map((seed, i) =>
      pipe.generate({ ...small, numInferenceSteps: 3, seed }).then((r) => { order.push(i); return r; }));
    const results = await Promise.all(calls);
    expect(order).toEqual([0, 1, 2]);
    expect(Buffer.compare(results[0].images[0].data, alone.images[0].data)).toBe(0);
    expect(Buffer.compare(results[0].images[0].data, results[1].images[0].data)).not.toBe(0);
  });
});

describe('cancellation', () => {
  it('an AbortSignal stops within one denoising step with E_ABORTED, and the next call works', async () => {
    const controller = new AbortController();
    const stepTimes: number[] = [];
    let abortedAt = 0;
    const p = pipe.generate({
      ...small, height: 64, width: 64, numInferenceSteps: 50, signal: controller.signal,
      onStep: () => {
        stepTimes.push(performance.now());
        if (stepTimes.length === 2) { abortedAt = performance.now(); controller.abort(); }
      },
    });
    const err = await p.then(() => undefined, (e) => e);
    const stoppedAt = performance.now();
    expect(err).toBeInstanceOf(SdError);
    expect(err.code).toBe('E_ABORTED');
    expect(stepTimes.length).toBeLessThanOrEqual(3);  // at most the step in flight finished
    const stepMs = stepTimes[1] - stepTimes[0];
    expect(stoppedAt - abortedAt).toBeLessThan(stepMs * 2 + 500);
    const ok = await pipe.generate({ ...small, numInferenceSteps: 2 });
    expect(ok.images).toHaveLength(1);
  });

  it('an already-aborted signal rejects at once without native work', async () => {
    const err = await pipe.generate({ ...small, signal: AbortSignal.abort() }).then(() => undefined, (e) => e);
    expect(err.code).toBe('E_ABORTED');
  });
});

describe('bad input gives a typed error and leaves the pipeline working', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['width 7', { width: 7 }, /width/],
    ['steps 0', { numInferenceSteps: 0 }, /numInferenceSteps/],
    ['NaN guidance', { guidanceScale: Number.NaN }, /guidanceScale/],
    ['an empty prompt array', { prompt: [] }, /prompt/],
    ['latents of the wrong shape', { latents: { data: new Float32Array(4 * 8 * 8), shape: [1, 4, 8, 8] } }, /latents/],
  ];
  for (const [what, override, msg] of cases) {
    it(`${what} → E_INVALID_ARGUMENT`, async () => {
      const err = await pipe.generate({ ...small, numInferenceSteps: 2, ...override } as any).then(() => undefined, (e) => e);
      expect(err).toBeInstanceOf(SdError);
      expect(err.code).toBe('E_INVALID_ARGUMENT');
      expect(err.message).toMatch(msg);
    });
  }

  it('an image that is not an image → E_INVALID_ARGUMENT (img2img)', async () => {
    const i2i = StableDiffusionImg2ImgPipeline.fromPipeline(pipe);
    const err = await i2i.generate({ ...small, image: Buffer.from('definitely not a png') }).then(() => undefined, (e) => e);
    expect(err.code).toBe('E_INVALID_ARGUMENT');
    const ok = await i2i.generate({
      ...small, numInferenceSteps: 4, strength: 0.5,
      image: { data: new Uint8Array(32 * 32 * 3).fill(128), width: 32, height: 32, channels: 3 },
    });
    expect(ok.images[0].width).toBe(32);
    i2i.dispose();
  });

  it('a missing model → E_MODEL_NOT_FOUND', async () => {
    const err = await StableDiffusionPipeline.fromPretrained(path.join(tmp, 'nope')).then(() => undefined, (e) => e);
    expect(err.code).toBe('E_MODEL_NOT_FOUND');
  });

  it('after all of that, a normal call still works', async () => {
    const r = await pipe.generate({ ...small, numInferenceSteps: 2 });
    expect(r.images[0].data.length).toBe(32 * 32 * 3);
  });
});

describe('native handles are typed', () => {
  it('a handle of another kind is E_INVALID_ARGUMENT, never a reinterpretation', () => {
    const token = addon().createAbortToken();
    let err: any;
    // the types forbid it (branded handles); the addon checks the kind again at run time
    try { addon().pipelineInfo(token as never); } catch (e) { err = e; }
    expect(err?.code).toBe('E_INVALID_ARGUMENT');
    expect(err?.message).toMatch(/another kind/);
  });
});

describe('dispose', () => {
  it('frees the native pipeline, and later calls throw E_DISPOSED', async () => {
    const before = addon().livePipelines();
    const p = await StableDiffusionPipeline.fromPretrained(modelDir);
    expect(addon().livePipelines()).toBe(before + 1);
    await p[Symbol.asyncDispose]();
    expect(addon().livePipelines()).toBe(before);
    const err = await p.generate({ ...small }).then(() => undefined, (e) => e);
    expect(err).toBeInstanceOf(SdError);
    expect(err.code).toBe('E_DISPOSED');
  });
});
