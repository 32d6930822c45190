/**
 * Schedulers vs diffusers 0.30.3: every `kind: "scheduler"` golden case of tiny-sd15 (32) and
 * tiny-sdxl (16), run exactly as the fixture generator ran them (fixtures/README.md), plus the
 * error paths and the CPU generator.
 */
import { describe, it, expect, afterAll } from 'vitest';
import {
  createScheduler, Generator, SCHEDULER_NAMES, SdError,
  type Scheduler, type TensorData,
} from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';
import { loadCases, loadGolden, allClose, index0, maxAbsDiff, type GoldenCase } from './helpers/fixtures.js';

const ATOL = 1e-5;
const RTOL = 1e-5;

/**
 * Largest |diff| seen per scheduler class (reported at the end), by category: `schedule`
 * (timesteps, sigmas, alphas_cumprod, init_noise_sigma, sample0), `loop` (the free-running loop:
 * scaled_inputs, model_outputs, samples) and `step` (one step from the golden inputs).
 */
type Category = 'schedule' | 'loop' | 'step';
const worst = new Map<string, { maxAbsDiff: number; where: string }>();
function record(cat: Category, cls: string, diff: number, where: string): void {
  const key = `${cls} ${cat}`;
  const w = worst.get(key);
  if (!w || diff > w.maxAbsDiff) worst.set(key, { maxAbsDiff: diff, where });
}

function expectClose(cat: Category, cls: string, actual: TensorData<any>, expected: TensorData<any>, where: string): void {
  const r = allClose(actual, expected, ATOL, RTOL);
  record(cat, cls, r.maxAbsDiff, where);
  expect(r.ok, `${where}: max |diff| ${r.maxAbsDiff} at ${r.worstIndex} (atol=rtol=${ATOL})`).toBe(true);
}

const f32 = Math.fround;
const SIN_CACHE = new Map<number, Float32Array>();
/** 0.05 * sin(arange(n)) in float32, as torch computes it. */
function sinTerm(n: number): Float32Array {
  let s = SIN_CACHE.get(n);
  if (!s) {
    s = new Float32Array(n);
    for (let j = 0; j < n; j++) s[j] = f32(f32(0.05) * f32(Math.sin(j)));
    SIN_CACHE.set(n, s);
  }
  return s;
}

/** The fixture's fake model: 0.1·xin·cos(float(t)/1000) + 0.05·sin(arange(numel)).reshape(shape), float32. */
function fakeModel(xin: TensorData<any>, t: number): TensorData<Float32Array> {
  const n = xin.data.length;
  const c = f32(Math.cos(t / 1000));
  const s = sinTerm(n);
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) out[j] = f32(f32(f32(f32(0.1) * Number(xin.data[j])) * c) + s[j]);
  return { data: out, shape: [...xin.shape] };
}

const numbers = (t: TensorData<any>) => Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
const asTensor = (v: number[]) => ({ data: Float64Array.from(v), shape: [v.length] });

/** Runs the fixture loop on `s` (after setTimesteps) from `sample0`; returns the per-step tensors. */
function runLoop(s: Scheduler, sample0: TensorData<any>, eta: number | null) {
  const gen = new Generator(123);  // created once before the loop
  let x: TensorData<any> = sample0;
  const steps: { xin: TensorData<any>; mo: TensorData<any>; prev: TensorData<any> }[] = [];
  for (const t of s.timesteps) {
    const xin = s.scaleModelInput(x, t);
    const mo = fakeModel(xin, t);
    const prev = s.step(mo, t, x, { generator: gen, ...(eta != null ? { eta } : {}) }).prevSample;
    steps.push({ xin, mo, prev });
    x = prev;
  }
  return steps;
}

for (const model of ['tiny-sd15', 'tiny-sdxl'] as const) {
  const { cases } = loadCases(model);
  const schedCases = cases.filter((c) => c.kind === 'scheduler');

  describe(`schedulers vs diffusers 0.30.3 goldens (${model})`, () => {
    it('covers every scheduler case of the fixture', () => {
      expect(schedCases.length).toBe(model === 'tiny-sd15' ? 32 : 16);
      const classes = new Set(schedCases.map((c) => c.params.scheduler));
      expect([...classes].sort()).toEqual([...SCHEDULER_NAMES].sort());
    });

    for (const c of schedCases) {
      it(`${c.name} (${c.params.scheduler} ${JSON.stringify(c.params.overrides)})`, async () => {
        await checkCase(model, c);
      });
    }
  });
}

async function checkCase(model: string, c: GoldenCase): Promise<void> {
  const g = await loadGolden(model, c.file);
  const p = c.params;
  const cls: string = p.scheduler;
  const s = createScheduler(cls, p.resolved_config);
  s.setTimesteps(p.num_inference_steps);

  // the schedule
  const tsExpected = numbers(g.timesteps);
  if (g.timesteps.dtype === 'int64' || c.tensors.timesteps.dtype === 'int64') {
    expect(s.timesteps).toEqual(tsExpected);
  } else {
    expect(s.timesteps.length).toBe(tsExpected.length);
    expectClose('schedule', cls, asTensor(s.timesteps), asTensor(tsExpected), `${c.name} timesteps`);
  }
  if (g.sigmas) {
    expect(s.sigmas, 'sigmas').toBeDefined();
    expectClose('schedule', cls, asTensor(s.sigmas!), asTensor(numbers(g.sigmas)), `${c.name} sigmas`);
  } else {
    expect(s.sigmas).toBeUndefined();
  }
  const sigma0 = Number(g.init_noise_sigma.data[0]);
  record('schedule', cls, Math.abs(s.initNoiseSigma - sigma0), `${c.name} init_noise_sigma`);
  expect(Math.abs(s.initNoiseSigma - sigma0), `init_noise_sigma ${s.initNoiseSigma} vs ${sigma0}`)
    .toBeLessThanOrEqual(ATOL + RTOL * Math.abs(sigma0));
  expectClose('schedule', cls, { data: s.alphasCumprod, shape: [s.alphasCumprod.length] }, g.alphas_cumprod, `${c.name} alphas_cumprod`);

  // sample0 = randn([1,4,8,8], seed 0) * init_noise_sigma (stored; our generator must reproduce it)
  const r = new Generator(0).randn([1, 4, 8, 8]);
  const mine0 = { data: r.data.map((v) => f32(v * f32(s.initNoiseSigma))), shape: r.shape };
  expectClose('schedule', cls, mine0, g.sample0, `${c.name} sample0`);

  // the loop, fed with our own outputs (errors accumulate as they would in a pipeline)
  const steps = runLoop(s, g.sample0, p.eta);
  expect(steps.length).toBe(g.samples.shape[0]);
  steps.forEach(({ xin, mo, prev }, i) => {
    expectClose('loop', cls, xin, index0(g.scaled_inputs, i), `${c.name} scaled_inputs[${i}]`);
    expectClose('loop', cls, mo, index0(g.model_outputs, i), `${c.name} model_outputs[${i}]`);
    expectClose('loop', cls, prev, index0(g.samples, i), `${c.name} samples[${i}]`);
  });

  // the scheduler alone: each step from diffusers' own inputs (sample i-1, model_outputs[i]); the
  // loop above also carries the fake model's float32 sin/cos rounding (torch's vs JS's).
  s.setTimesteps(p.num_inference_steps);
  const gen = new Generator(123);
  s.timesteps.forEach((t, i) => {
    const x = i === 0 ? g.sample0 : index0(g.samples, i - 1);
    expectClose('step', cls, s.scaleModelInput(x, t), index0(g.scaled_inputs, i), `${c.name} scaled_inputs[${i}] (golden input)`);
    const prev = s.step(index0(g.model_outputs, i), t, x, { generator: gen, ...(p.eta != null ? { eta: p.eta } : {}) }).prevSample;
    expectClose('step', cls, prev, index0(g.samples, i), `${c.name} samples[${i}] (golden inputs)`);
  });

  // reusable: setTimesteps resets every state, a second run is bit-identical
  s.setTimesteps(p.num_inference_steps);
  const again = runLoop(s, g.sample0, p.eta);
  expect(maxAbsDiff(again[again.length - 1].prev, steps[steps.length - 1].prev)).toBe(0);
}

describe('scheduler API', () => {
  const { cases } = loadCases('tiny-sd15');
  const config = cases.find((c) => c.name === 'sched_dpmpp_2m_10')!.params.resolved_config as Record<string, unknown>;

  it('SCHEDULER_NAMES matches the native list', () => {
    expect([...SCHEDULER_NAMES]).toEqual(addon().schedulerNames());
  });

  it('unknown scheduler → E_UNSUPPORTED_MODEL listing the supported names', () => {
    const e = catchErr(() => createScheduler('KDPM2AncestralDiscreteScheduler', config));
    expect(e.code).toBe('E_UNSUPPORTED_MODEL');
    expect(e.message).toContain('KDPM2AncestralDiscreteScheduler');
    for (const n of SCHEDULER_NAMES) expect(e.message).toContain(n);
  });

  it.each([0, -1, 1001, 2.5, NaN])('setTimesteps(%s) → E_INVALID_ARGUMENT', (n) => {
    for (const name of SCHEDULER_NAMES) {
      const s = createScheduler(name, config);
      const e = catchErr(() => s.setTimesteps(n));
      expect(e.code, name).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toMatch(/numInferenceSteps/);
    }
  });

  it('LCM: more steps than original_inference_steps → E_INVALID_ARGUMENT', () => {
    const e = catchErr(() => createScheduler('LCMScheduler', config).setTimesteps(51));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('original_inference_steps');
  });

  it('bad config values → E_BAD_CONFIG naming the field', () => {
    let e = catchErr(() => createScheduler('DDIMScheduler', config, { beta_schedule: 'cubic' }));
    expect(e.code).toBe('E_BAD_CONFIG');
    expect(e.message).toContain('beta_schedule');
    expect(e.message).toContain('scaled_linear');
    e = catchErr(() => createScheduler('EulerDiscreteScheduler', config, { num_train_timesteps: 'many' }));
    expect(e.code).toBe('E_BAD_CONFIG');
    expect(e.message).toContain('num_train_timesteps');
    e = catchErr(() => createScheduler('EulerDiscreteScheduler', config, { timestep_spacing: 'uniform' }));
    expect(e.code).toBe('E_BAD_CONFIG');
    expect(e.message).toContain('timestep_spacing');
    e = catchErr(() => createScheduler('DPMSolverMultistepScheduler', config, { algorithm_type: 'dpmsolver' }));
    expect(e.code).toBe('E_BAD_CONFIG');  // final_sigmas_type "zero" needs dpmsolver++ (as in diffusers)
    expect(e.message).toContain('final_sigmas_type');
  });

  it('unknown config fields are ignored; missing ones take the class defaults', () => {
    const a = createScheduler('DDIMScheduler', { ...config, _class_name: 'PNDMScheduler', some_future_option: 3 });
    a.setTimesteps(10);
    const d = createScheduler('DDIMScheduler', {});  // diffusers defaults: linear 0.0001..0.02, leading, offset 0
    d.setTimesteps(10);
    expect(d.timesteps).toEqual([900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    expect(d.alphasCumprod[0]).toBeCloseTo(1 - 0.0001, 7);
    // this config (DPMSolver's resolved one) carries timestep_spacing "linspace"
    expect(a.timesteps).toEqual([999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
  });

  it('lambda_min_clipped: -Infinity as a number, the string "-Infinity" or null', () => {
    const runs = [-Infinity, '-Infinity', null].map((v) => {
      const s = createScheduler('DPMSolverMultistepScheduler', { ...config, lambda_min_clipped: v });
      s.setTimesteps(10);
      return [s.timesteps, s.sigmas];
    });
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
  });

  it('step before setTimesteps, a timestep off the schedule, mismatched shapes → E_INVALID_ARGUMENT', () => {
    const x = { data: new Float32Array(16), shape: [1, 4, 2, 2] };
    let e = catchErr(() => createScheduler('DDIMScheduler', config).step(x, 999, x));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('setTimesteps');
    const s = createScheduler('EulerDiscreteScheduler', config);
    s.setTimesteps(10);
    e = catchErr(() => s.step(x, 123.5, x));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('123.5');
    e = catchErr(() => s.step(x, s.timesteps[0], { data: new Float32Array(8), shape: [1, 2, 2, 2] }));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('shape');
  });

  it('img2img: setBeginIndex + addNoise follow diffusers (sigma of the begin index; DDPM formula for DDIM)', () => {
    const original = new Generator(1).randn([1, 4, 4, 4]);
    const noise = new Generator(2).randn([1, 4, 4, 4]);
    // Euler family: x0 + sigma[begin] * noise, in float32
    const e = createScheduler('EulerAncestralDiscreteScheduler', config);
    e.setTimesteps(10);
    const tStart = 10 - Math.trunc(10 * 0.6);
    e.setBeginIndex(tStart * e.order);
    const t0 = e.timesteps[tStart * e.order];
    const sigma = f32(e.sigmas![tStart * e.order]);
    const noisy = e.addNoise(original, noise, t0);
    const expected = original.data.map((v, i) => f32(v + f32(noise.data[i] * sigma)));
    expect(maxAbsDiff(noisy, { data: expected, shape: original.shape })).toBe(0);
    // DDIM: sqrt(acp[t]) * x0 + sqrt(1 - acp[t]) * noise
    const d = createScheduler('DDIMScheduler', config);
    d.setTimesteps(10);
    const t = d.timesteps[tStart];
    const acp = d.alphasCumprod[t];
    const a = f32(Math.sqrt(acp)), b = f32(Math.sqrt(f32(1 - acp)));
    const ddim = d.addNoise(original, noise, t);
    const exp2 = original.data.map((v, i) => f32(f32(a * v) + f32(b * noise.data[i])));
    expect(maxAbsDiff(ddim, { data: exp2, shape: original.shape })).toBe(0);
    // Heun has order 2 (img2img slices timesteps by tStart * order)
    expect(createScheduler('HeunDiscreteScheduler', config).order).toBe(2);
    const bad = catchErr(() => e.setBeginIndex(99));
    expect(bad.code).toBe('E_INVALID_ARGUMENT');
  });

  it('LCM exposes denoised as predOriginalSample', () => {
    const s = createScheduler('LCMScheduler', config);
    s.setTimesteps(4);
    const x = new Generator(5).randn([1, 4, 4, 4]);
    const out = s.step(fakeModel(x, s.timesteps[0]), s.timesteps[0], x, { generator: new Generator(6) });
    expect(out.predOriginalSample).toBeDefined();
    expect(out.predOriginalSample!.shape).toEqual([1, 4, 4, 4]);
  });
});

describe('Generator (torch.Generator("cpu").manual_seed)', () => {
  it('reproduces the pipeline goldens\' initial latents (seed 42, [1,4,32,32])', async () => {
    const g = await loadGolden('tiny-sd15', 'pipe_ddim.safetensors');
    const r = new Generator(42).randn([1, 4, 32, 32]);
    expect(maxAbsDiff(r, g.initial_latents_randn)).toBe(0);
  });

  it('is deterministic per seed, advances with each draw, and accepts bigint and negative seeds', () => {
    const a = new Generator(7), b = new Generator(7n);
    const a1 = a.randn([3, 5]), b1 = b.randn([3, 5]);
    expect(maxAbsDiff(a1, b1)).toBe(0);
    expect(maxAbsDiff(a.randn([3, 5]), a1)).toBeGreaterThan(0);
    expect(new Generator(-1).seed).toBe((1n << 64n) - 1n);
    expect(catchErr(() => new Generator(1.5)).code).toBe('E_INVALID_ARGUMENT');
    expect(catchErr(() => new Generator(1n << 64n)).code).toBe('E_INVALID_ARGUMENT');
    expect(catchErr(() => a.randn([2, -1])).code).toBe('E_INVALID_ARGUMENT');
  });
});

afterAll(() => {
  if (worst.size === 0) return;
  const lines = [...worst.entries()].sort().map(([k, v]) => `  ${k.padEnd(42)} ${v.maxAbsDiff.toExponential(2)}  (${v.where})`);
  console.log(`largest |diff| vs diffusers per scheduler (atol=rtol=${ATOL}):\n${lines.join('\n')}`);
});

function catchErr(fn: () => unknown): SdError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SdError);
    return e as SdError;
  }
  throw new Error('expected an SdError');
}
