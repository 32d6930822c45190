/**
 * Test access to ../shared/fixtures (the correctness oracle): paths, cases.json, golden
 * tensors, and comparison helpers that report the largest error seen.
 */
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../../lib/safetensors.js';
import type { TensorData } from '../../types/native.js';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** ../shared/fixtures relative to the project root. */
export const FIXTURES = path.resolve(projectRoot, '..', 'shared', 'fixtures');
export const fixture = (...parts: string[]): string => path.join(FIXTURES, ...parts);

export interface GoldenCase {
  name: string;
  kind: string;
  file: string;
  params: Record<string, any>;
  notes?: unknown;
  tensors: Record<string, { shape: number[]; dtype: string }>;
}

/** Parses a cases.json; the strings "-Infinity"/"Infinity"/"NaN" become numbers. */
export function loadCases(model: string): { modelDir: string; cases: GoldenCase[]; raw: any } {
  const file = fixture('goldens', model, 'cases.json');
  const raw = JSON.parse(fs.readFileSync(file, 'utf8'), (_k, v) =>
    v === '-Infinity' ? -Infinity : v === 'Infinity' ? Infinity : v === 'NaN' ? NaN : v);
  const list: GoldenCase[] = Array.isArray(raw.cases) ? raw.cases : Object.values(raw.cases ?? {});
  const modelDir = path.resolve(path.dirname(file), raw.model_dir ?? '');
  return { modelDir, cases: list, raw };
}

const cache = new Map<string, Record<string, TensorData<any>>>();
/** Loads every tensor of goldens/<model>/<file>. */
export async function loadGolden(model: string, file: string): Promise<Record<string, TensorData<any>>> {
  const p = fixture('goldens', model, file);
  let t = cache.get(p);
  if (!t) {
    t = await readSafetensors(p);
    cache.set(p, t);
  }
  return t;
}

/** max |a - b| (shapes must match). */
export function maxAbsDiff(a: TensorData<any>, b: TensorData<any>): number {
  expectSameShape(a, b);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(Number(a.data[i]) - Number(b.data[i]));
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function maxAbs(a: TensorData<any>): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(Number(a.data[i])));
  return m;
}

export function expectSameShape(a: TensorData<any>, b: TensorData<any>): void {
  const sa = JSON.stringify(a.shape), sb = JSON.stringify(b.shape);
  if (sa !== sb) throw new Error(`shape mismatch: ${sa} vs ${sb}`);
}

/**
 * torch.allclose semantics: |a - b| <= atol + rtol·|b| everywhere. Returns the worst excess
 * and max abs diff so a failing test can print them.
 */
export function allClose(actual: TensorData<any>, expected: TensorData<any>, atol: number, rtol: number):
  { ok: boolean; maxAbsDiff: number; worstIndex: number } {
  expectSameShape(actual, expected);
  let ok = true, worst = -Infinity, worstIndex = -1, mad = 0;
  for (let i = 0; i < actual.data.length; i++) {
    const a = Number(actual.data[i]), b = Number(expected.data[i]);
    const d = Math.abs(a - b);
    if (Number.isNaN(d)) { ok = false; worstIndex = i; mad = Infinity; break; }
    mad = Math.max(mad, d);
    const excess = d - (atol + rtol * Math.abs(b));
    if (excess > worst) { worst = excess; worstIndex = i; }
    if (excess > 0) ok = false;
  }
  return { ok, maxAbsDiff: mad, worstIndex };
}

/** Slices the i-th entry along dim 0 of a tensor. */
export function index0(t: TensorData<any>, i: number): TensorData<any> {
  const inner = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const Ctor = (t.data as any).constructor;
  return { data: new Ctor(t.data.slice(i * inner, (i + 1) * inner)), shape: t.shape.slice(1) };
}

/** uint8 image vs a golden uint8 tensor: the largest difference and the fraction of values that differ. */
export function uint8Report(actual: Uint8Array | Buffer, expected: TensorData<any>) {
  let off = 0, worst = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const d = Math.abs(actual[i] - Number(expected.data[i]));
    if (d > 0) off++;
    worst = Math.max(worst, d);
  }
  return { worst, fraction: off / expected.data.length };
}

/**
 * The generate() options a golden pipeline case ran with in diffusers: prompts, negative prompt,
 * steps, guidance, images per prompt, clip skip, LoRA scale, the seed of its
 * `torch.Generator('cpu').manual_seed(N)`, and either height/width (txt2img) or the stored input
 * image with strength (img2img), plus the stored mask (inpainting). Keys the case does not set are
 * left out, so each pipeline's own defaults and checks apply.
 */
export function goldenGenerateOptions(p: Record<string, any>, g: Record<string, TensorData<any>>): { prompt: string; seed: number; [key: string]: any } {
  const seed = /manual_seed\((\d+)\)/.exec(String(p.generator ?? ''));
  if (!seed) throw new Error(`golden case without a manual_seed generator: ${JSON.stringify(p.generator)}`);
  const o: { prompt: string; seed: number; [key: string]: any } = {
    prompt: p.prompt, numInferenceSteps: p.num_inference_steps, guidanceScale: p.guidance_scale, seed: Number(seed[1]),
  };
  if (p.prompt_2 != null) o.prompt2 = p.prompt_2;
  if (p.negative_prompt != null) o.negativePrompt = p.negative_prompt;
  if (p.num_images_per_prompt != null) o.numImagesPerPrompt = p.num_images_per_prompt;
  if (p.clip_skip != null) o.clipSkip = p.clip_skip;
  if (p.lora_scale != null && p.lora_scale !== 1) o.loraScale = p.lora_scale; // diffusers passes no kwargs for 1.0
  const img = g.input_image_uint8_hwc;
  if (img) {
    o.image = { data: new Uint8Array(img.data), width: img.shape[1], height: img.shape[0], channels: 3 as const };
    o.strength = p.strength;
    const mask = g.mask_uint8_hw;
    if (mask) o.maskImage = { data: new Uint8Array(mask.data), width: mask.shape[1], height: mask.shape[0], channels: 1 as const };
  } else {
    o.height = p.height;
    o.width = p.width;
  }
  return o;
}

/** The error `p` rejects with (fails the test when it resolves). */
export async function rejection<E = import('../../lib/errors.js').SdError>(p: Promise<unknown>): Promise<E> {
  try { await p; } catch (e) { return e as E; }
  throw new Error('expected a rejection');
}

/** n deterministic N(0,1)·std + mean values (mulberry32 + Box-Muller): inputs larger than the goldens. */
export function seededRandn(n: number, seed: number, std = 1, mean = 0): Float32Array {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = mean + std * Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return data;
}

/** float32 → bfloat16 → float32 of every element, round to nearest even (c10::BFloat16's rounding; finite values). */
export function roundBf16(x: ArrayLike<number>): Float32Array {
  const out = Float32Array.from(x);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) u[i] = (((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) << 16) >>> 0;
  return out;
}
