/**
 * SDXL parity with diffusers v0.30.3 (goldens/tiny-sdxl: every StableDiffusionXLPipeline case,
 * final latents max|diff|/max|ref| < 1e-4, uint8 pixels off by ≤ 1 on < 1%), the base → refiner
 * hand-off split (denoisingEnd / denoisingStart, computed here with diffusers' formula), and the
 * errors that point SD and SDXL folders at the right class.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import {
  StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline, Generator,
} from '../lib/index.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon } from '../lib/native.js';
import { goldenGenerateOptions, loadCases, loadGolden, maxAbs, maxAbsDiff, fixture, uint8Report } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

const MODEL = 'tiny-sdxl';
const { modelDir, cases } = loadCases(MODEL);
const pipelineCases = cases.filter((c) => c.kind === 'pipeline');

describe('StableDiffusionXLPipeline parity: tiny-sdxl', () => {
  let pipe: StableDiffusionXLPipeline;
  beforeAll(async () => {
    pipe = await StableDiffusionXLPipeline.fromPretrained(modelDir);
  });
  afterAll(() => pipe?.dispose());

  it('has every pipeline case of the goldens', () => {
    expect(pipelineCases.map((c) => c.name).sort()).toEqual(['pipe_dpmpp_2m_karras', 'pipe_euler', 'pipe_euler_a', 'pipe_euler_zero_neg']);
  });

  it('reports the SDXL model', () => {
    const info = pipe.info;
    expect(info.family).toBe('sdxl');
    expect(info.className).toBe('StableDiffusionXLPipeline');
    expect(info.tokenizerDirs.map((d) => d.split('/').pop())).toEqual(['tokenizer', 'tokenizer_2']);
    expect(info.components.map((c) => c.name)).toEqual(['text_encoder', 'text_encoder_2', 'unet', 'vae']);
    expect(info.components[1].className).toBe('CLIPTextModelWithProjection');
  });

  for (const c of pipelineCases) {
    it(`${c.name}: latents and pixels equal diffusers'`, async () => {
      const p = c.params;
      const g = await loadGolden(MODEL, c.file);
      pipe.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
      const opts = goldenGenerateOptions(p, g);
      const drawn = new Generator(opts.seed).randn(g.initial_latents_randn.shape);
      expect(maxAbsDiff(drawn, g.initial_latents_randn)).toBe(0);
      const out = await pipe.generate(opts);
      expect(out.timesteps).toEqual(Array.from(g.timesteps.data, Number));
      const ref = g.final_latents;
      const rel = maxAbsDiff(out.latents!, ref) / maxAbs(ref);
      console.log(`${c.name}: final latents relative error ${rel.toExponential(3)}`);
      expect(rel, `final latents relative error ${rel}`).toBeLessThan(1e-4);
      const expected = g.image_uint8;
      expect(out.images.length).toBe(1);
      const img = out.images[0];
      expect([img.height, img.width]).toEqual([expected.shape[1], expected.shape[2]]);
      const r = uint8Report(img.data, expected);
      console.log(`${c.name}: uint8 worst ${r.worst}, fraction off ${r.fraction}`);
      expect(r.worst).toBeLessThanOrEqual(1);
      expect(r.fraction).toBeLessThan(0.01);
    });
  }

  it('base (denoisingEnd 0.8) → refiner (denoisingStart 0.8) splits the timesteps where diffusers does', async () => {
    pipe.setScheduler('EulerDiscreteScheduler');
    const refiner = StableDiffusionXLImg2ImgPipeline.fromPipeline(pipe);
    try {
      const steps = 10;
      const full = (await pipe.generate({ prompt: 'a cat', numInferenceSteps: steps, height: 32, width: 32, seed: 3, guidanceScale: 1, outputType: 'latent' })).timesteps;
      expect(full.length).toBe(steps);
      // diffusers: discrete_timestep_cutoff = int(round(T - f·T)); base keeps t >= cutoff, refiner t < cutoff
      const T = Number(pipe.scheduler.config.num_train_timesteps ?? 1000);
      const cutoff = Math.round(T - 0.8 * T);
      const baseExpected = full.filter((t) => t >= cutoff);
      const refinerExpected = full.slice(full.length - full.filter((t) => t < cutoff).length);
      expect(baseExpected.length).toBeGreaterThan(0);
      expect(refinerExpected.length).toBeGreaterThan(0);

      const base = await pipe.generate({
        prompt: 'a cat', numInferenceSteps: steps, height: 32, width: 32, seed: 3, denoisingEnd: 0.8, outputType: 'latent',
      });
      expect(base.timesteps).toEqual(baseExpected);
      expect(base.images).toEqual([]);
      expect(base.latents!.shape).toEqual([1, 4, 16, 16]);
      const seen: number[] = [];
      const refined = await refiner.generate({
        prompt: 'a cat', numInferenceSteps: steps, image: base.latents!, denoisingStart: 0.8, seed: 3,
        onStep: (s) => seen.push(s.timestep),
      });
      expect(refined.timesteps).toEqual(refinerExpected);
      expect(seen).toEqual(refinerExpected);
      expect([...base.timesteps, ...refined.timesteps]).toEqual(full);
      // no noise is added with denoisingStart: the refiner starts from the base latents as they are
      expect(maxAbsDiff(refined.initialLatents!, base.latents!)).toBe(0);
      expect(refined.images.length).toBe(1);
      expect([refined.images[0].width, refined.images[0].height]).toEqual([32, 32]);
    } finally {
      refiner.dispose();
    }
  });

  it('img2img from pixels with strength runs int(steps × strength) steps', async () => {
    const img2img = StableDiffusionXLImg2ImgPipeline.fromPipeline(pipe);
    try {
      img2img.setScheduler('EulerDiscreteScheduler');
      const data = new Uint8Array(32 * 32 * 3).map((_, i) => (i * 37) % 256);
      const r = await img2img.generate({ prompt: 'a cat', image: { data, width: 32, height: 32, channels: 3 }, numInferenceSteps: 10, seed: 1 });
      expect(r.timesteps.length).toBe(3); // diffusers' SDXL img2img default strength 0.3
      expect(r.images[0].width).toBe(32);
    } finally {
      img2img.dispose();
    }
  });

  it('does not share an SDXL model with the SD 1.x/2.x classes', () => {
    expect(() => StableDiffusionPipeline.fromPipeline(pipe as any)).toThrow(/StableDiffusionXLPipeline.fromPipeline/);
  });

  it('validates the SDXL options', async () => {
    await expect(pipe.generate({ prompt: 'x', denoisingEnd: 1.5 } as any)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringContaining('denoisingEnd') });
    await expect(pipe.generate({ prompt: 'x', originalSize: [64] } as any)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringContaining('originalSize') });
    await expect(pipe.generate({ prompt: 'x', denoisingStart: 0.5 } as any)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringContaining('StableDiffusionXLImg2ImgPipeline') });
  });

  it('originalSize / targetSize change the conditioning (and so the result)', async () => {
    pipe.setScheduler('EulerDiscreteScheduler');
    const o = { prompt: 'a cat', numInferenceSteps: 2, height: 32, width: 32, seed: 5, outputType: 'latent' as const };
    const a = await pipe.generate(o);
    const b = await pipe.generate({ ...o, originalSize: [32, 32], cropsCoordsTopLeft: [0, 0], targetSize: [32, 32] });
    const c = await pipe.generate({ ...o, originalSize: [1024, 1024] });
    expect(maxAbsDiff(a.latents!, b.latents!)).toBe(0); // the defaults are (H, W), (0, 0), (H, W)
    expect(maxAbsDiff(a.latents!, c.latents!)).toBeGreaterThan(0);
  });
});

describe('refiner-style model (requires_aesthetics_score, text_encoder_2 only)', () => {
  it('runs with one tokenizer; aestheticScore enters add_time_ids', async () => {
    // tiny-sdxl's components with the refiner's layout: no text_encoder/tokenizer, a UNet whose
    // add_embedding takes 5 time ids (orig h, w, crop top, left, aesthetic score): 5·8 + 32 = 72
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-refiner-'));
    try {
      const src = fixture('models', 'tiny-sdxl');
      for (const d of ['scheduler', 'text_encoder_2', 'tokenizer_2', 'vae']) fs.cpSync(path.join(src, d), path.join(tmp, d), { recursive: true });
      const index = JSON.parse(fs.readFileSync(path.join(src, 'model_index.json'), 'utf8'));
      index._class_name = 'StableDiffusionXLImg2ImgPipeline';
      index.text_encoder = [null, null];
      index.tokenizer = [null, null];
      index.requires_aesthetics_score = true;
      index.force_zeros_for_empty_prompt = false;
      fs.writeFileSync(path.join(tmp, 'model_index.json'), JSON.stringify(index));
      const unetCfg = JSON.parse(fs.readFileSync(path.join(src, 'unet', 'config.json'), 'utf8'));
      unetCfg.cross_attention_dim = 32; // text_encoder_2 alone
      unetCfg.projection_class_embeddings_input_dim = 72;
      fs.mkdirSync(path.join(tmp, 'unet'));
      fs.writeFileSync(path.join(tmp, 'unet', 'config.json'), JSON.stringify(unetCfg));
      await addon().createRandomWeights({
        component: 'unet', configPath: path.join(tmp, 'unet', 'config.json'), seed: 1,
        out: path.join(tmp, 'unet', 'diffusion_pytorch_model.safetensors'),
      });
      await using refiner = await StableDiffusionXLImg2ImgPipeline.fromPretrained(tmp);
      expect(refiner.info.tokenizerDirs.map((d) => path.basename(d))).toEqual(['tokenizer_2']);
      expect(refiner.info.components.map((c) => c.name)).toEqual(['text_encoder_2', 'unet', 'vae']);
      const latents = new Generator(9).randn([1, 4, 16, 16]);
      const o = { prompt: 'a cat', image: latents, numInferenceSteps: 10, denoisingStart: 0.5, seed: 1, outputType: 'latent' as const };
      const a = await refiner.generate(o);
      const b = await refiner.generate({ ...o, aestheticScore: 6.0, negativeAestheticScore: 2.5 });
      const c = await refiner.generate({ ...o, aestheticScore: 9.0 });
      expect(a.timesteps.length).toBeGreaterThan(0);
      expect(maxAbsDiff(a.latents!, b.latents!)).toBe(0); // diffusers' defaults 6.0 / 2.5
      expect(maxAbsDiff(a.latents!, c.latents!)).toBeGreaterThan(0);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('the right class for each family', () => {
  it('StableDiffusionPipeline on an SDXL folder names StableDiffusionXLPipeline', async () => {
    await expect(StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sdxl')))
      .rejects.toMatchObject({ code: 'E_UNSUPPORTED_MODEL', message: expect.stringContaining('StableDiffusionXLPipeline') });
  });
  it('StableDiffusionXLPipeline on an SD 1.5 folder names StableDiffusionPipeline', async () => {
    await expect(StableDiffusionXLPipeline.fromPretrained(fixture('models', 'tiny-sd15')))
      .rejects.toMatchObject({ code: 'E_UNSUPPORTED_MODEL', message: expect.stringContaining('load it with StableDiffusionPipeline') });
  });
});
