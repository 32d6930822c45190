/**
 * Issue 13 item 4: a float16/bfloat16 VAE decode that gives NaN/inf (the SDXL VAE overflows in
 * float16) is decoded again in float32 (diffusers' force_upcast), with one SD_VAE_UPCAST warning
 * per pipeline (the VAE stays in float32 afterwards), and never ends as a black image: a float32
 * decode with NaN/inf is E_NUMERICAL.
 * float16 has no CPU kernels in every libtorch, and a VAE scaled to overflow float16 would need
 * them; instead the test-only binding pipelineTestFaults makes the next n decodes return NaN, the
 * way an overflow does. bfloat16 (a reduced-precision VAE dtype, like float16) runs on the CPU.
 * Removing the re-decode makes the first test fail (E_NUMERICAL instead of an image).
 */
import { describe, it, expect, vi, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoencoderKL, StableDiffusionPipeline, readSafetensors, writeSafetensors } from '../lib/index.js';
import { testingAddon } from '../lib/native.js';
import { fixture, roundBf16 } from './helpers/fixtures.js';

const modelDir = fixture('models', 'tiny-sd15');
const CALL = { prompt: 'a red cube on a table', numInferenceSteps: 2, guidanceScale: 1, seed: 7, height: 64, width: 64 };
const handle = (p: StableDiffusionPipeline) => (p as any).model.handle;
function upcastWarnings(spy: { mock: { calls: unknown[][] } }): unknown[][] {
  return spy.mock.calls.filter((c) => (c[1] as { code?: string } | undefined)?.code === 'SD_VAE_UPCAST');
}

afterEach(() => { vi.restoreAllMocks(); });

describe('reduced-precision VAE decode with NaN/inf → float32 re-decode (force_upcast)', () => {
  it('bfloat16: the NaN decode is redone in float32, warned once, and the image is the float32 decode', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'bfloat16' });
    const clean = await StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'bfloat16' });
    try {
      expect(pipe.info.components.find((c) => c.name === 'vae')!.dtype).toBe('bfloat16');
      const bf16 = await clean.generate(CALL); // the bfloat16 decode of the same latents, no fault
      const spy = vi.spyOn(process, 'emitWarning');
      testingAddon().pipelineTestFaults(handle(pipe), { nonFiniteDecodes: 1 });
      const first = await pipe.generate(CALL);
      expect(upcastWarnings(spy)).toHaveLength(1);
      expect(String(upcastWarnings(spy)[0][0])).toMatch(/float32/);
      const px = first.images[0].data;
      expect(px.length).toBe(64 * 64 * 3);
      expect(px.some((v) => v !== 0), 'not a black image').toBe(true);
      // the VAE stays in float32: the next call decodes there at once, without a second warning
      expect(pipe.info.components.find((c) => c.name === 'vae')!.dtype).toBe('float32');
      const second = await pipe.generate(CALL);
      expect(upcastWarnings(spy)).toHaveLength(1);
      expect(Buffer.from(second.images[0].data).equals(Buffer.from(px))).toBe(true);
      // the same latents as the clean bfloat16 pipeline (same seed and dtype), decoded in float32:
      // close to its bfloat16 decode (bfloat16 rounding, u = 2⁻⁸) but not the same bytes
      let maxDiff = 0, differ = 0;
      for (let i = 0; i < px.length; i++) {
        const d = Math.abs(px[i] - bf16.images[0].data[i]);
        maxDiff = Math.max(maxDiff, d);
        if (d) differ++;
      }
      expect(maxDiff).toBeLessThanOrEqual(40);
      expect(differ).toBeGreaterThan(0);
      // and it is the float32 decode of what the pipeline holds: its VAE was loaded in bfloat16 and
      // upcast (diffusers' upcast_vae: `vae.to(float32)`), so its weights are the bfloat16-rounded
      // file weights, and it decodes z = latents / scaling_factor computed in bfloat16. The same
      // through a float32 AutoencoderKL made from bfloat16-rounded weights, with z rounded the
      // same way and the pipeline's postprocess (x/2 + 0.5, clamp, ·255, round): the same float32
      // computation, so the images agree to one uint8 level (the last rounding). Against the exact
      // float32 weights and z the difference is the bfloat16 rounding of both (≈ 2⁻⁹ relative),
      // not a property of the re-decode.
      const { latents } = await clean.generate({ ...CALL, outputType: 'latent' });
      const vaeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-upcast-'));
      try {
        const src = fixture('models', 'tiny-sd15', 'vae');
        fs.copyFileSync(path.join(src, 'config.json'), path.join(vaeDir, 'config.json'));
        const weights = await readSafetensors(path.join(src, 'diffusion_pytorch_model.safetensors'));
        const rounded: Record<string, { data: Float32Array; shape: number[] }> = {};
        for (const [name, t] of Object.entries(weights)) rounded[name] = { data: roundBf16(t.data as ArrayLike<number>), shape: t.shape };
        await writeSafetensors(path.join(vaeDir, 'diffusion_pytorch_model.safetensors'), rounded);
        const vae = await AutoencoderKL.fromPretrained(vaeDir, { dtype: 'float32' });
        try {
          const sf = Math.fround(vae.scalingFactor);
          const scaled = roundBf16(Float32Array.from(latents!.data, (v) => v / sf)); // float32 division, then bfloat16
          const img = await vae.decode({ data: scaled, shape: latents!.shape }); // [1, 3, 64, 64]
          let far = 0;
          for (let y = 0; y < 64; y++) {
            for (let x = 0; x < 64; x++) {
              for (let c = 0; c < 3; c++) {
                const v = Math.round(Math.min(1, Math.max(0, img.data[c * 64 * 64 + y * 64 + x] / 2 + 0.5)) * 255);
                far = Math.max(far, Math.abs(v - px[(y * 64 + x) * 3 + c]));
              }
            }
          }
          expect(far).toBeLessThanOrEqual(1);
        } finally {
          vae.dispose();
        }
      } finally {
        fs.rmSync(vaeDir, { recursive: true, force: true });
      }
    } finally {
      pipe.dispose();
      clean.dispose();
    }
  }, 120_000);

  it('the native result says vaeUpcast: true on the call that re-decoded', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'bfloat16' });
    try {
      const ids = { data: new BigInt64Array(77).fill(49407n), shape: [1, 77] };
      const req = {
        inputIds: ids, numImagesPerPrompt: 1, numInferenceSteps: 1, guidanceScale: 1, height: 64, width: 64, seed: 0, clipSkip: 0,
        eta: 0, outputType: 'image' as const, schedulerName: 'PNDMScheduler', schedulerConfig: { ...pipe.scheduler.config }, loraScale: 1,
      };
      const plain = await testingAddon().generate(handle(pipe), req, undefined, undefined);
      expect(plain.vaeUpcast).toBeUndefined();
      testingAddon().pipelineTestFaults(handle(pipe), { nonFiniteDecodes: 1 });
      const r = await testingAddon().generate(handle(pipe), req, undefined, undefined);
      expect(r.vaeUpcast).toBe(true);
      expect(r.images!.shape).toEqual([1, 64, 64, 3]);
    } finally {
      pipe.dispose();
    }
  }, 120_000);

  it('NaN in the float32 re-decode too is E_NUMERICAL, not a black image; the pipeline keeps working', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { dtype: 'bfloat16' });
    try {
      testingAddon().pipelineTestFaults(handle(pipe), { nonFiniteDecodes: 2 });
      await expect(pipe.generate(CALL)).rejects.toMatchObject({
        code: 'E_NUMERICAL', message: expect.stringMatching(/NaN or infinity also when decoded again in float32/),
      });
      const ok = await pipe.generate(CALL);
      expect(ok.images[0].data.some((v) => v !== 0)).toBe(true);
    } finally {
      pipe.dispose();
    }
  }, 120_000);

  it('a float32 pipeline has nothing to upcast: NaN is E_NUMERICAL at once, no warning', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    try {
      const spy = vi.spyOn(process, 'emitWarning');
      testingAddon().pipelineTestFaults(handle(pipe), { nonFiniteDecodes: 1 });
      await expect(pipe.generate(CALL)).rejects.toMatchObject({
        code: 'E_NUMERICAL', message: expect.stringMatching(/NaN or infinity in float32/),
      });
      expect(upcastWarnings(spy)).toHaveLength(0);
      expect(pipe.info.components.find((c) => c.name === 'vae')!.dtype).toBe('float32');
    } finally {
      pipe.dispose();
    }
  }, 120_000);
});
