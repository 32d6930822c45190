// The TypeScript side of the pipelines (lib/pipeline.ts) against a fake addon and a fake
// tokenizer: request building, defaults, queueing, cancellation, progress, scheduler switching,
// disposal and model sharing. The real native pipeline is tested against the fixtures elsewhere.
import { describe, it, expect, vi, beforeEach, afterAll } from 'vitest';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import type { NativeXLGenerateRequest, NativePipelineInfo } from '../types/native.js';
import type { SdError as SdErrorType } from '../lib/errors.js';

const fake = vi.hoisted(() => {
  type Token = { aborted: boolean };
  const state = {
    loads: [] as { path: string; opts: unknown }[],
    requests: [] as NativeXLGenerateRequest[],
    disposed: [] as unknown[],
    tokens: [] as Token[],
    active: 0,
    maxActive: 0,
    order: [] as string[],
    stepDelayMs: 2,
  };
  function info(p: string): NativePipelineInfo {
    const xl = p.includes('sdxl');
    return {
      family: xl ? 'sdxl' : 'sd1',
      className: xl ? 'StableDiffusionXLPipeline' : 'StableDiffusionPipeline',
      modelPath: p, vaeScaleFactor: 2, sampleSize: 32,
      tokenizerDirs: xl ? ['tok1', 'tok2'] : ['tok1'],
      schedulerName: 'PNDMScheduler',
      schedulerConfig: { _class_name: 'PNDMScheduler', beta_start: 0.00085, skip_prk_steps: true, steps_offset: 1 },
      device: 'cpu', dtype: 'float32',
      components: [{ name: 'unet', className: 'UNet2DConditionModel', dtype: 'float32', parameters: 1000, bytes: 4000 }],
      forceZerosForEmptyPrompt: xl, requiresAestheticsScore: false,
    };
  }
  const addon = {
    async loadPipeline(p: string, opts: unknown) {
      state.loads.push({ path: p, opts });
      return { path: p };
    },
    pipelineInfo: (h: { path: string }) => info(h.path),
    pipelineComponents: (h: { path: string }) => info(h.path).components,
    pipelineSetOptimizations: () => undefined,
    createAbortToken: (): Token => { const t = { aborted: false }; state.tokens.push(t); return t; },
    abortToken: (t: Token) => { t.aborted = true; },
    disposePipeline: (h: unknown) => { state.disposed.push(h); },
    async generate(_h: unknown, req: NativeXLGenerateRequest, onStep?: (s: { step: number; numSteps: number; timestep: number }) => void, abort?: Token) {
      state.requests.push(req);
      state.order.push(`start:${req.seed}`);
      state.active++;
      state.maxActive = Math.max(state.maxActive, state.active);
      try {
        if (req.width > 1000) throw Object.assign(new Error('CUDA out of memory (fake)'), { code: 'E_OUT_OF_MEMORY' });
        const n = req.image ? Math.floor(req.numInferenceSteps * (req.strength ?? 1)) : req.numInferenceSteps;
        for (let i = 1; i <= n; i++) {
          await new Promise((r) => setTimeout(r, state.stepDelayMs));
          if (abort?.aborted) throw Object.assign(new Error('aborted at step ' + i), { code: 'E_ABORTED' });
          onStep?.({ step: i, numSteps: n, timestep: 1000 - i * 100 });
        }
        const b = req.inputIds.shape[0] * req.numImagesPerPrompt;
        const lat = { data: new Float32Array(b * 4 * (req.height / 2) * (req.width / 2)), shape: [b, 4, req.height / 2, req.width / 2] };
        const img = new Uint8Array(b * req.height * req.width * 3).map((_, i) => (i * 31) & 0xff);
        return {
          images: req.outputType === 'image' ? { data: img, shape: [b, req.height, req.width, 3] } : undefined,
          latents: req.outputType === 'latent' ? lat : undefined,
          initialLatents: lat,
          timesteps: Array.from({ length: n }, (_, i) => 1000 - (i + 1) * 100),
          timings: { encodeMs: 1, denoiseMs: 2, decodeMs: 3, totalMs: 6 },
        };
      } finally {
        state.active--;
        state.order.push(`end:${req.seed}`);
      }
    },
  };
  class FakeTokenizer {
    constructor(readonly dir: string) {}
    static async fromPretrained(dir: string) { return new FakeTokenizer(dir); }
    /** bos, one id per word (its length + 100), eos, padded with the tokenizer's pad id. */
    encode(text: string, o: { padding?: 'max_length' | false; maxLength?: number; truncation?: boolean } = {}): number[] {
      const ids = [49406, ...text.split(/\s+/).filter(Boolean).map((w) => 100 + w.length), 49407];
      if (o.truncation === false && o.padding === false) return ids;
      const out = ids.slice(0, 76);
      if (out.length === 76) out.push(49407);
      while (out.length < 77) out.push(this.dir === 'tok2' ? 0 : 49407);
      return out;
    }
  }
  return { state, addon, FakeTokenizer };
});

vi.mock('../lib/native.js', () => ({ addon: () => fake.addon }));
// Keep the module's other exports (index.ts may re-export them); replace only the class.
vi.mock('../lib/tokenizer.js', async (importOriginal) => ({
  ...(await importOriginal<Record<string, unknown>>()), CLIPTokenizer: fake.FakeTokenizer,
}));

const {
  StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionXLPipeline, GeneratedImage, readPngText, SdError,
} = await import('../lib/index.js');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-pipe-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const modelDir = path.join(tmp, 'tiny-sd15');
const sdxlDir = path.join(tmp, 'tiny-sdxl');
fs.mkdirSync(modelDir);
fs.mkdirSync(sdxlDir);
const singleFile = path.join(tmp, 'model.safetensors');
fs.writeFileSync(singleFile, 'x');

beforeEach(() => {
  Object.assign(fake.state, { loads: [], requests: [], disposed: [], tokens: [], active: 0, maxActive: 0, order: [], stepDelayMs: 2 });
});

const ids = (t: { data: BigInt64Array; shape: number[] }, row: number) =>
  Array.from(t.data.subarray(row * t.shape[1], (row + 1) * t.shape[1]), Number);

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, message?: RegExp): Promise<SdErrorType> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) { err = e; }
  expect(err, `expected ${code}`).toBeInstanceOf(SdError);
  expect((err as SdErrorType).code).toBe(code);
  if (message) expect((err as SdErrorType).message).toMatch(message);
  return err as SdErrorType;
}

describe('loading', () => {
  it('fromPretrained: resolved options, absolute path, info with the default size', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(path.relative(process.cwd(), modelDir), { threads: 2 });
    expect(fake.state.loads).toEqual([{ path: modelDir, opts: { device: 'cpu', dtype: 'float32', variant: undefined, singleFile: false, configDir: undefined, threads: 2, xl: false } }]);
    expect(pipe.info.family).toBe('sd1');
    expect(pipe.info.defaultWidth).toBe(64);
    expect(pipe.scheduler).toEqual({
      name: 'PNDMScheduler', samplerName: 'PLMS',
      config: { _class_name: 'PNDMScheduler', beta_start: 0.00085, skip_prk_steps: true, steps_offset: 1 },
    });
    pipe.dispose();
  });

  it('fromSingleFile passes singleFile and configDir', async () => {
    const pipe = await StableDiffusionPipeline.fromSingleFile(singleFile, { configDir: modelDir, dtype: 'float16' });
    expect(fake.state.loads[0].opts).toMatchObject({ singleFile: true, configDir: modelDir, dtype: 'float16' });
    pipe.dispose();
  });

  it('errors before any native work: missing folder, pickle, folder/file mix-up, bad options', async () => {
    await expectCode(StableDiffusionPipeline.fromPretrained(path.join(tmp, 'nope')), 'E_MODEL_NOT_FOUND', /model folder not found: .*nope/);
    const ckpt = path.join(tmp, 'model.ckpt');
    fs.writeFileSync(ckpt, 'x');
    await expectCode(StableDiffusionPipeline.fromSingleFile(ckpt), 'E_BAD_CHECKPOINT', /pickle/);
    await expectCode(StableDiffusionPipeline.fromPretrained(singleFile), 'E_INVALID_ARGUMENT', /is a file; use fromSingleFile/);
    await expectCode(StableDiffusionPipeline.fromSingleFile(modelDir), 'E_INVALID_ARGUMENT', /is a folder/);
    await expectCode(StableDiffusionPipeline.fromPretrained(modelDir, { device: 'gpu' }), 'E_INVALID_ARGUMENT', /^device must be/);
    await expectCode(StableDiffusionPipeline.fromPretrained(modelDir, { configDir: modelDir }), 'E_INVALID_ARGUMENT', /^configDir is for single-file/);
    expect(fake.state.loads).toEqual([]);
  });
});

describe('generate', () => {
  it('builds the native request: tokenized prompts, "" negative default, model scheduler, defaults', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const r = await pipe.generate({ prompt: ['a cat', 'a big dog'], numInferenceSteps: 3, seed: 42, numImagesPerPrompt: 2 });
    const req = fake.state.requests[0];
    expect(req.inputIds.shape).toEqual([2, 77]);
    expect(req.inputIds.data).toBeInstanceOf(BigInt64Array);
    expect(ids(req.inputIds, 0).slice(0, 5)).toEqual([49406, 101, 103, 49407, 49407]);
    expect(ids(req.inputIds, 1).slice(0, 5)).toEqual([49406, 101, 103, 103, 49407]);
    expect(req.negativeInputIds!.shape).toEqual([2, 77]);
    expect(ids(req.negativeInputIds!, 1).slice(0, 3)).toEqual([49406, 49407, 49407]); // "" encodes to bos, eos, pad
    expect(req).toMatchObject({
      numImagesPerPrompt: 2, numInferenceSteps: 3, guidanceScale: 7.5, height: 64, width: 64, seed: 42, eta: 0,
      outputType: 'image', schedulerName: 'PNDMScheduler',
    });
    expect(req.schedulerConfig).toMatchObject({ skip_prk_steps: true });
    expect(req.latents).toBeUndefined();
    expect(req.inputIds2).toBeUndefined();

    expect(r.images).toHaveLength(4);
    expect(r.images[0]).toBeInstanceOf(GeneratedImage);
    expect(r.seed).toBe(42);
    expect(r.seeds).toEqual([42, 42, 42, 42]);
    expect(r.timesteps).toEqual([900, 800, 700]);
    expect(r.timings).toMatchObject({ encodeMs: 1, denoiseMs: 2, decodeMs: 3, totalMs: 6 });
    expect(r.timings.wallMs).toBeGreaterThan(0);
    // diffusers' order p0, p0, p1, p1; parameters per image
    expect(r.images.map((i) => i.parameters.prompt)).toEqual(['a cat', 'a cat', 'a big dog', 'a big dog']);
    expect(r.images[3].parameters).toMatchObject({ seed: 42, width: 64, height: 64, model: 'tiny-sd15', batchSize: 4, batchIndex: 3 });
    expect(r.images[1].data.length).toBe(64 * 64 * 3);
    expect(r.images[1].data[0]).toBe(((64 * 64 * 3) * 31) & 0xff); // the second image's first byte
    const png = await r.images[2].toPNG();
    expect(readPngText(png).parameters).toBe(
      'a big dog\nSteps: 3, Sampler: PLMS, CFG scale: 7.5, Seed: 42, Size: 64x64, Model: tiny-sd15, Batch size: 4, Batch pos: 2');
    pipe.dispose();
  });

  it('guidanceScale ≤ 1: no negative ids; a random seed is returned; latents pass through', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const latents = { data: new Float32Array(4 * 32 * 32).fill(0.5), shape: [1, 4, 32, 32] };
    const r = await pipe.generate({ prompt: 'x', negativePrompt: 'blurry', guidanceScale: 1, numInferenceSteps: 1, latents });
    const req = fake.state.requests[0];
    expect(req.negativeInputIds).toBeUndefined();
    expect(req.latents!.shape).toEqual([1, 4, 32, 32]);
    expect(req.latents!.data).toBe(latents.data);
    expect(Number.isInteger(r.seed) && r.seed >= 0 && r.seed < 2 ** 32).toBe(true);
    expect(req.seed).toBe(r.seed);
    pipe.dispose();
  });

  it('invalid options reject with E_INVALID_ARGUMENT before native work', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    await expectCode(pipe.generate({ prompt: 'x', width: 7 }), 'E_INVALID_ARGUMENT', /^width /);
    await expectCode(pipe.generate({ prompt: 'x', latents: { data: new Float32Array(4), shape: [1, 4, 1, 1] } }), 'E_INVALID_ARGUMENT', /^latents must have shape \[1, 4, 32, 32\]/);
    expect(fake.state.requests).toHaveLength(0);
    pipe.dispose();
  });

  it("outputType 'latent' returns latents and no images", async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const r = await pipe.generate({ prompt: 'x', numInferenceSteps: 1, outputType: 'latent', seed: 1 });
    expect(r.images).toEqual([]);
    expect(r.latents!.shape).toEqual([1, 4, 32, 32]);
    pipe.dispose();
  });

  it('SDXL: second tokenizer ids; negativePromptIsNone follows diffusers (None vs "")', async () => {
    const pipe = await StableDiffusionXLPipeline.fromPretrained(sdxlDir);
    await pipe.generate({ prompt: 'a cat', prompt2: 'oil painting on canvas', numInferenceSteps: 1, seed: 1 });
    let req = fake.state.requests[0];
    expect(ids(req.inputIds2!, 0).slice(0, 6)).toEqual([49406, 103, 108, 102, 106, 49407]);
    expect(ids(req.inputIds2!, 0)[6]).toBe(0); // tokenizer_2 pads with "!" (0)
    expect(ids(req.negativeInputIds2!, 0).slice(0, 3)).toEqual([49406, 49407, 0]);
    expect(req.negativePromptIsNone).toBe(true);
    await pipe.generate({ prompt: 'a cat', negativePrompt: '', numInferenceSteps: 1, seed: 1 });
    req = fake.state.requests[1];
    expect(req.negativePromptIsNone).toBe(false);
    expect(ids(req.inputIds2!, 0).slice(0, 4)).toEqual([49406, 101, 103, 49407]); // prompt_2 defaults to prompt
    pipe.dispose();
  });

  it('onStep gets step, numSteps, timestep and elapsedMs', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const steps: { step: number; numSteps: number; timestep: number; elapsedMs: number }[] = [];
    await pipe.generate({ prompt: 'x', numInferenceSteps: 4, onStep: (s) => steps.push(s) });
    expect(steps.map((s) => [s.step, s.numSteps, s.timestep])).toEqual([[1, 4, 900], [2, 4, 800], [3, 4, 700], [4, 4, 600]]);
    expect(steps.every((s, i) => s.elapsedMs >= 0 && (i === 0 || s.elapsedMs >= steps[i - 1].elapsedMs))).toBe(true);
    pipe.dispose();
  });

  it('a throwing onStep stops the call with its own error; the pipeline stays usable', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const boom = new Error('boom');
    await expect(pipe.generate({ prompt: 'x', numInferenceSteps: 10, onStep: (s) => { if (s.step === 2) throw boom; } })).rejects.toBe(boom);
    expect(fake.state.tokens.at(-1)!.aborted).toBe(true);
    await expect(pipe.generate({ prompt: 'x', numInferenceSteps: 1 })).resolves.toBeDefined();
    pipe.dispose();
  });
});

describe('queueing', () => {
  it('runs calls one at a time in call order; a failed call does not break the queue', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const a = pipe.generate({ prompt: 'x', numInferenceSteps: 3, seed: 1 });
    const b = pipe.generate({ prompt: 'x', numInferenceSteps: 1, seed: 2, width: 1024 }); // fake OOM
    const c = pipe.generate({ prompt: 'x', numInferenceSteps: 1, seed: 3 });
    expect(pipe.pendingCalls).toBe(3);
    const oom = await expectCode(b, 'E_OUT_OF_MEMORY', /out of memory/);
    expect(oom.constructor.name).toBe('OutOfMemoryError');
    await Promise.all([a, c]);
    expect(fake.state.maxActive).toBe(1);
    expect(fake.state.order).toEqual(['start:1', 'end:1', 'start:2', 'end:2', 'start:3', 'end:3']);
    expect(pipe.pendingCalls).toBe(0);
    pipe.dispose();
  });
});

describe('queueing order and snapshots', () => {
  it('an img2img call keeps its place while its image decodes; bad input rejects without waiting', async () => {
    const txt = await StableDiffusionPipeline.fromPretrained(modelDir);
    const img = StableDiffusionImg2ImgPipeline.fromPipeline(txt);
    fake.state.stepDelayMs = 10;
    const big = { data: new Uint8Array(1024 * 1024 * 3).fill(9), width: 1024, height: 1024, channels: 3 as const };
    const first = txt.generate({ prompt: 'x', numInferenceSteps: 5, seed: 1 });
    const second = img.generate({ prompt: 'x', image: big, width: 64, height: 64, numInferenceSteps: 2, strength: 1, seed: 2 });
    const third = txt.generate({ prompt: 'x', numInferenceSteps: 1, seed: 3 });
    const t0 = Date.now();
    await expectCode(img.generate({ prompt: 'x', image: Buffer.from('nope') }), 'E_INVALID_ARGUMENT');
    expect(Date.now() - t0).toBeLessThan(40); // did not wait for the ≈50 ms call ahead of it
    await Promise.all([first, second, third]);
    expect(fake.state.requests.map((r) => r.seed)).toEqual([1, 2, 3]);
    img.dispose();
    txt.dispose();
  });

  it('a call keeps the scheduler it was made with', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    pipe.setScheduler('DDIMScheduler');
    const p = pipe.generate({ prompt: 'x', numInferenceSteps: 1 });
    pipe.setScheduler('LCMScheduler');
    const r = await p;
    expect(fake.state.requests[0].schedulerName).toBe('DDIMScheduler');
    expect(r.images[0].parameters.scheduler).toBe('DDIMScheduler');
    pipe.dispose();
  });
});

describe('cancellation', () => {
  it('an already aborted signal → AbortError without native work', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const err = await expectCode(pipe.generate({ prompt: 'x', signal: AbortSignal.abort() }), 'E_ABORTED');
    expect(err.name).toBe('AbortError');
    expect(fake.state.requests).toHaveLength(0);
    pipe.dispose();
  });

  it('abort during the loop aborts the native token; the next call works', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const ac = new AbortController();
    const p = pipe.generate({ prompt: 'x', numInferenceSteps: 50, signal: ac.signal, onStep: (s) => { if (s.step === 2) ac.abort(new Error('user stop')); } });
    await expectCode(p, 'E_ABORTED', /aborted: user stop/);
    expect(fake.state.tokens[0].aborted).toBe(true);
    expect(fake.state.requests).toHaveLength(1);
    await expect(pipe.generate({ prompt: 'x', numInferenceSteps: 1 })).resolves.toBeDefined();
    pipe.dispose();
  });

  it('abort while queued rejects at once and never reaches native code', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    fake.state.stepDelayMs = 20;
    const first = pipe.generate({ prompt: 'x', numInferenceSteps: 5, seed: 1 });
    const ac = new AbortController();
    const second = pipe.generate({ prompt: 'x', numInferenceSteps: 5, seed: 2, signal: ac.signal });
    const t0 = Date.now();
    ac.abort();
    await expectCode(second, 'E_ABORTED');
    expect(Date.now() - t0).toBeLessThan(50); // did not wait for the first call (≈100 ms)
    await first;
    await new Promise((r) => setTimeout(r, 10));
    expect(fake.state.requests.map((r) => r.seed)).toEqual([1]);
    pipe.dispose();
  });
});

describe('schedulers', () => {
  it('setScheduler merges overrides like from_config(config, **overrides) and they accumulate', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    pipe.setScheduler('DPMSolverMultistepScheduler', { use_karras_sigmas: true, algorithm_type: 'dpmsolver++' });
    expect(pipe.scheduler.samplerName).toBe('DPM++ 2M Karras');
    pipe.setScheduler('EulerDiscreteScheduler');
    expect(pipe.scheduler.config).toEqual({
      _class_name: 'EulerDiscreteScheduler', beta_start: 0.00085, skip_prk_steps: true, steps_offset: 1,
      use_karras_sigmas: true, algorithm_type: 'dpmsolver++',
    });
    await pipe.generate({ prompt: 'x', numInferenceSteps: 1 });
    expect(fake.state.requests[0].schedulerName).toBe('EulerDiscreteScheduler');
    expect(fake.state.requests[0].schedulerConfig).toMatchObject({ use_karras_sigmas: true });
    // the returned config is a copy
    pipe.scheduler.config.beta_start = 1;
    expect(pipe.scheduler.config.beta_start).toBe(0.00085);
    pipe.dispose();
  });

  it('an unknown scheduler lists the supported ones; camelCase keys are refused', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    await expectCode(() => pipe.setScheduler('KarrasVeScheduler'), 'E_UNSUPPORTED_MODEL',
      /^scheduler "KarrasVeScheduler" is not supported; supported schedulers: DDIMScheduler, PNDMScheduler, LMSDiscreteScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler, LCMScheduler$/);
    await expectCode(() => pipe.setScheduler('EulerDiscreteScheduler', { useKarrasSigmas: true }), 'E_INVALID_ARGUMENT', /e\.g\. use_karras_sigmas\); received "useKarrasSigmas"/);
    await expectCode(() => pipe.setScheduler('EulerDiscreteScheduler', { x: NaN }), 'E_INVALID_ARGUMENT', /^scheduler override x must be a JSON value; received NaN/);
    expect(pipe.scheduler.name).toBe('PNDMScheduler');
    pipe.dispose();
  });
});

describe('disposal and sharing', () => {
  it('dispose rejects calls not yet started with DisposedError, frees once; later calls throw DisposedError', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const queued = pipe.generate({ prompt: 'x', numInferenceSteps: 3 });
    pipe.dispose();
    pipe.dispose();
    expect(fake.state.disposed).toHaveLength(0);
    await expectCode(queued, 'E_DISPOSED', /StableDiffusionPipeline\.generate: the pipeline was disposed while the call ran or waited/);
    await new Promise((r) => setTimeout(r, 5));
    expect(fake.state.disposed).toHaveLength(1);
    await expectCode(pipe.generate({ prompt: 'x' }), 'E_DISPOSED', /StableDiffusionPipeline\.generate: the pipeline was disposed/);
    await expectCode(() => pipe.setScheduler('DDIMScheduler'), 'E_DISPOSED');
    await expectCode(() => pipe.info, 'E_DISPOSED');
  });

  it('Symbol.asyncDispose resolves after the native model is freed', async () => {
    {
      await using pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
      void pipe;
    }
    expect(fake.state.disposed).toHaveLength(1);
  });

  it('img2img fromPipeline shares the model, the queue and a copy of the scheduler', async () => {
    const txt = await StableDiffusionPipeline.fromPretrained(modelDir);
    txt.setScheduler('DDIMScheduler');
    const img = StableDiffusionImg2ImgPipeline.fromPipeline(txt);
    expect(fake.state.loads).toHaveLength(1);
    expect(img.scheduler.name).toBe('DDIMScheduler');
    img.setScheduler('EulerAncestralDiscreteScheduler');
    expect(txt.scheduler.name).toBe('DDIMScheduler');

    const src = { data: new Uint8Array(45 * 30 * 3).fill(128), width: 45, height: 30, channels: 3 as const };
    const [a, b] = await Promise.all([
      txt.generate({ prompt: 'x', numInferenceSteps: 2, seed: 5 }),
      img.generate({ prompt: 'x', image: src, numInferenceSteps: 10, strength: 0.3, seed: 6 }),
    ]);
    expect(fake.state.maxActive).toBe(1);
    const req = fake.state.requests[1];
    expect(req.image!.shape).toEqual([24, 40, 3]); // rounded down to multiples of 8
    expect(req.image!.data).toBeInstanceOf(Uint8Array);
    expect(req.image!.data.every((v) => v === 128)).toBe(true);
    expect([req.width, req.height, req.strength, req.schedulerName]).toEqual([40, 24, 0.3, 'EulerAncestralDiscreteScheduler']);
    expect(b.images[0].parameters).toMatchObject({ strength: 0.3, width: 40, height: 24 });
    expect(b.images[0].infotext).toContain('Sampler: Euler a');
    expect(a.images[0].infotext).toContain('Sampler: DDIM');

    txt.dispose();
    await new Promise((r) => setTimeout(r, 5));
    expect(fake.state.disposed).toHaveLength(0);
    await expect(img.generate({ prompt: 'x', image: src, numInferenceSteps: 2, strength: 1 })).resolves.toBeDefined();
    await img[Symbol.asyncDispose]();
    expect(fake.state.disposed).toHaveLength(1);
    await expectCode(() => StableDiffusionPipeline.fromPipeline(img), 'E_DISPOSED');
  });

  it('img2img: a non-image buffer is E_INVALID_ARGUMENT before native work', async () => {
    const pipe = await StableDiffusionImg2ImgPipeline.fromPretrained(modelDir);
    await expectCode(pipe.generate({ prompt: 'x', image: Buffer.from('nope') }), 'E_INVALID_ARGUMENT', /^image is not a decodable image: /);
    await expectCode(pipe.generate({ prompt: 'x', image: Buffer.from('nope'), strength: 1.5 }), 'E_INVALID_ARGUMENT', /^strength must be a number in \[0, 1\]; received 1.5/);
    expect(fake.state.requests).toHaveLength(0);
    pipe.dispose();
  });
});
