/**
 * CUDA parity (issue 7): every fixture pipeline case (txt2img + img2img of goldens/tiny-sd15 and,
 * where present, goldens/tiny-sd2-v) run with `device: 'cuda'` against the diffusers goldens
 * (made on CPU in float32), in float32, float16 and bfloat16. Skipped — and named so — in a build
 * without CUDA (CI, the 2-core machine); scripts/gpu-check.sh runs it on the lent GPU.
 *
 * Bounds (images compared as float in [0, 1] against the golden `image`; latents as
 * max|Δ| / max|ref| against `final_latents`; `initial` = the latents entering the loop against
 * `initial_latents_scaled`):
 * - float32, TF32 off: the fixture tolerance — latents < 1e-4, images ≤ 1e-2 (uint8 rounding of
 *   our output alone is ≤ 0.002), initial latents equal up to one float32 rounding (1e-6).
 *   libtorch enables TF32 for cuDNN convolutions by default; the test switches it off through
 *   `backends` (issue 5's global flags) when the build has them and says so when it cannot.
 * - float16 (unit roundoff u = 2⁻¹¹ ≈ 4.9e-4) and bfloat16 (u = 2⁻⁸ ≈ 3.9e-3): weights and
 *   activations rounded at every op over 10 steps of a UNet with random weights. Bounds: latents
 *   < 40·u (fp16 0.02, bf16 0.16), images mean |Δ| < 10·u (fp16 0.005, bf16 0.04) and max |Δ| <
 *   100·u capped at 0.25 (fp16 0.05, bf16 0.25); the VAE decodes in float32 for float16
 *   (force_upcast). initial latents: see `initialBound` — two roundings, not one.
 *   These are first bounds: the measured errors go to SD_GPU_REPORT (JSON) so a GPU session can
 *   state tighter ones from data.
 * - Seeds: `new Generator(seed).randn` equals diffusers' `initial_latents_randn` exactly (CPU
 *   generator semantics, independent of the device).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import * as sd from '../lib/index.js';
import { StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, Generator, buildInfo } from '../lib/index.js';
import { goldenGenerateOptions, loadCases, loadGolden, maxAbs, maxAbsDiff, fixture } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

const CUDA = buildInfo().cuda;
const DEVICE = process.env.SD_GPU_DEVICE ?? 'cuda';
type Dtype = 'float32' | 'float16' | 'bfloat16';
const DTYPES: Dtype[] = (process.env.SD_GPU_DTYPES?.split(',') as Dtype[] | undefined) ?? ['float32', 'float16', 'bfloat16'];

const U: Record<Dtype, number> = { float32: 2 ** -24, float16: 2 ** -11, bfloat16: 2 ** -8 };
/**
 * The initial latents bound in a reduced dtype (issue 13). prepare_latents computes
 * `randn(float32, CPU).to(device, dtype) * init_noise_sigma`, and the product is taken in `dtype`:
 * that is two roundings to the dtype, not one —
 *   1. the float32 draw x rounded to the dtype: x₁ = x(1 + δ₁), |δ₁| ≤ u;
 *   2. the product rounded: y = x₁·σ(1 + δ₂) = xσ(1 + δ₁)(1 + δ₂), |δ₂| ≤ u
 *      (σ itself: init_noise_sigma is a double, exact enough; σ = 1 for most schedulers, where
 *      step 2 is exact, but Euler/Euler-a/LMS/Heun/DPM-SDE have σ = √(σ_max² + 1) ≈ 14.6).
 * So |y − xσ| ≤ ((1 + u)² − 1)·|xσ| = (2u + u²)·|xσ| ≤ (2u + u²)·max|ref| per element (elements in
 * the dtype's subnormal range err by at most an absolute half-ulp, far below this relative to
 * max|ref|). The golden `initial_latents_scaled` is diffusers' float32 product, one float32
 * rounding u₃₂ off the exact xσ, which adds (1 + u₃₂) as a factor. One rounding (u) is not enough:
 * measured on the float16 Euler-a goldens, 5.05e-4 > u = 4.88e-4 (≤ 2u = 9.77e-4).
 */
function initialBound(u: number): number {
  return (1 + u) ** 2 * (1 + U.float32) - 1;
}
const BOUNDS: Record<Dtype, { latents: number; imageMax: number; imageMean: number; initial: number }> = {
  float32: { latents: 1e-4, imageMax: 1e-2, imageMean: 1e-2, initial: 1e-6 },
  float16: { latents: 40 * U.float16, imageMax: 100 * U.float16, imageMean: 10 * U.float16, initial: initialBound(U.float16) },
  bfloat16: { latents: 40 * U.bfloat16, imageMax: Math.min(0.25, 100 * U.bfloat16), imageMean: 10 * U.bfloat16, initial: initialBound(U.bfloat16) },
};

/** issue 5's torch.backends-style flags, when this build has them (feature-detected). */
function setTf32(allow: boolean): boolean {
  const b = (sd as any).backends;
  if (!b?.cudnn || !b?.cuda?.matmul) return false;
  b.cudnn.allowTf32 = allow;
  b.cuda.matmul.allowTf32 = allow;
  return true;
}

interface Row { model: string; case: string; dtype: Dtype; latentsRel: number; imageMax: number; imageMean: number; initialRel: number | null; tf32Off: boolean }
const report: Row[] = [];

function imageErrors(images: { data: Uint8Array | Buffer }[], ref: TensorData<any>) {
  const per = ref.data.length / images.length;
  let max = 0, sum = 0;
  images.forEach((img, b) => {
    for (let i = 0; i < per; i++) {
      const d = Math.abs(img.data[i] / 255 - Number(ref.data[b * per + i]));
      sum += d;
      if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
    }
  });
  return { max, mean: sum / ref.data.length };
}

const models = ['tiny-sd15', 'tiny-sd2-v'].filter((m) => fs.existsSync(fixture('goldens', m, 'cases.json')));

describe.skipIf(!CUDA)(`GPU parity on ${DEVICE}${CUDA ? '' : ' (skipped: no CUDA in this build)'}`, () => {
  let tf32Off = false;
  beforeAll(() => { tf32Off = setTf32(false); });
  afterAll(() => {
    if (process.env.SD_GPU_REPORT) fs.writeFileSync(process.env.SD_GPU_REPORT, JSON.stringify({ device: DEVICE, tf32Off, bounds: BOUNDS, rows: report }, null, 2));
  });

  it('seeds draw diffusers\' CPU-generator noise on any device', async () => {
    const { cases } = loadCases('tiny-sd15');
    const c = cases.find((x) => x.kind === 'pipeline' && x.params.pipeline === 'StableDiffusionPipeline')!;
    const g = await loadGolden('tiny-sd15', c.file);
    expect(maxAbsDiff(new Generator(42).randn(g.initial_latents_randn.shape), g.initial_latents_randn)).toBe(0);
  });

  for (const model of models) {
    const { modelDir, cases } = loadCases(model);
    const pipelineCases = cases.filter((c) => c.kind === 'pipeline');
    for (const dtype of DTYPES) {
      describe(`${model} ${dtype}`, () => {
        let pipe: StableDiffusionPipeline;
        let img2img: StableDiffusionImg2ImgPipeline;
        beforeAll(async () => {
          pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { device: DEVICE, dtype });
          img2img = StableDiffusionImg2ImgPipeline.fromPipeline(pipe);
        });
        afterAll(() => { img2img?.dispose(); pipe?.dispose(); });

        for (const c of pipelineCases) {
          it(`${c.name}: latents, pixels and initial latents within the ${dtype} bounds`, async () => {
            const p = c.params;
            const g = await loadGolden(model, c.file);
            const isImg2img = p.pipeline === 'StableDiffusionImg2ImgPipeline';
            const target: any = isImg2img ? img2img : pipe;
            target.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
            const opts = goldenGenerateOptions(p, g);
            const bound = BOUNDS[dtype];

            const lat = await target.generate({ ...opts, outputType: 'latent' });
            const latentsRel = maxAbsDiff(lat.latents, g.final_latents) / maxAbs(g.final_latents);
            let initialRel: number | null = null;
            if (!isImg2img && g.initial_latents_scaled && lat.initialLatents) {
              initialRel = maxAbsDiff(lat.initialLatents, g.initial_latents_scaled) / maxAbs(g.initial_latents_scaled);
            }
            const out = await target.generate(opts);
            const img = imageErrors(out.images, g.image);
            report.push({ model, case: c.name, dtype, latentsRel, imageMax: img.max, imageMean: img.mean, initialRel, tf32Off });

            const tf32Note = dtype === 'float32' && !tf32Off ? ' (TF32 could not be switched off: this build has no backends flags)' : '';
            if (initialRel !== null) expect(initialRel, `initial latents relative error ${initialRel}`).toBeLessThanOrEqual(bound.initial);
            expect(latentsRel, `final latents relative error ${latentsRel}${tf32Note}`).toBeLessThan(bound.latents);
            expect(img.max, `image max |Δ| ${img.max}${tf32Note}`).toBeLessThanOrEqual(bound.imageMax);
            expect(img.mean, `image mean |Δ| ${img.mean}`).toBeLessThanOrEqual(bound.imageMean);
          });
        }
      });
    }
  }
});

/**
 * enableCudaGraphs on the GPU (issue 13, item 3): every txt2img case of tiny-sd15, eager then with
 * the UNet replayed from CUDA graphs, same pipeline and seed. A replay launches the kernels the
 * eager warm-up chose, so the latents should be bit-equal; the asserted bound is the dtype's
 * fixture bound against eager (BOUNDS.latents, relative to max|eager|), and whether each case was
 * bit-equal goes to the report (`graphs` rows) so a GPU session can tighten it from data. The CPU
 * bookkeeping (static inputs, signatures, invalidation) is test/cuda-graphs.test.ts.
 */
interface GraphRow { case: string; dtype: Dtype; bitEqual: boolean; latentsRelToEager: number; replays: number }
const graphReport: GraphRow[] = [];
describe.skipIf(!CUDA || !buildInfo().cudaGraphs)(`CUDA graphs vs eager on ${DEVICE}${CUDA ? '' : ' (skipped: no CUDA in this build)'}`, () => {
  afterAll(() => {
    if (process.env.SD_GPU_REPORT) fs.writeFileSync(process.env.SD_GPU_REPORT.replace(/\.json$/, '') + '-graphs.json', JSON.stringify({ device: DEVICE, rows: graphReport }, null, 2));
  });
  const { modelDir, cases } = loadCases('tiny-sd15');
  const txt2img = cases.filter((c) => c.kind === 'pipeline' && c.params.pipeline === 'StableDiffusionPipeline');
  for (const dtype of DTYPES.filter((d) => d !== 'bfloat16')) {
    describe(`tiny-sd15 ${dtype}`, () => {
      let pipe: StableDiffusionPipeline;
      beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { device: DEVICE, dtype }); });
      afterAll(() => pipe?.dispose());
      for (const c of txt2img) {
        it(`${c.name}: graph replays give eager's latents (bit-equal expected; bound ${BOUNDS[dtype].latents.toExponential(1)} relative)`, async () => {
          const g = await loadGolden('tiny-sd15', c.file);
          const opts = { ...goldenGenerateOptions(c.params, g), outputType: 'latent' as const };
          pipe.setScheduler(c.params.scheduler, c.params.scheduler_overrides ?? {});
          pipe.disableCudaGraphs();
          const eager = await pipe.generate(opts);
          pipe.enableCudaGraphs();
          const graphed = await pipe.generate(opts);
          const replays = (await import('../lib/native.js')).testingAddon().pipelineCudaGraphStats((pipe as any).model.handle).replays;
          const rel = maxAbsDiff(graphed.latents!, eager.latents!) / maxAbs(eager.latents!);
          graphReport.push({ case: c.name, dtype, bitEqual: rel === 0, latentsRelToEager: rel, replays });
          expect(replays, 'the UNet calls after the first were replays').toBeGreaterThan(0);
          expect(rel).toBeLessThanOrEqual(BOUNDS[dtype].latents);
        });
      }
    });
  }
});

describe.skipIf(CUDA)('GPU parity (skipped: no CUDA in this build)', () => {
  it('device "cuda" is refused with E_DEVICE_UNAVAILABLE, naming the missing CUDA', async () => {
    await expect(StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15'), { device: 'cuda' }))
      .rejects.toMatchObject({ code: 'E_DEVICE_UNAVAILABLE', message: expect.stringContaining('no CUDA') });
  });
  it('CUDA graphs: not in this build (buildInfo().cudaGraphs is false)', () => {
    expect(buildInfo().cudaGraphs).toBe(false);
  });
});
