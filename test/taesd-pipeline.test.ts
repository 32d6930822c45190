// TAESD in the pipelines: AutoencoderTiny as the pipeline's VAE (goldens/tiny-taesd pipeline cases,
// diffusers 0.30.3 with vae=AutoencoderTiny), swapping the VAE (`pipe.vae = …`) and back, SDXL,
// the latent-channel check, and live previews ('taesd' and 'latent2rgb') with their errors.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  AutoencoderKL, AutoencoderTiny, SdError, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline,
  readSafetensors, writeSafetensors,
} from '../lib/index.js';
import type { StepProgress } from '../lib/index.js';
import type { TensorData } from '../types/native.js';
import {
  fixture, goldenGenerateOptions, loadCases, loadGolden, maxAbs, maxAbsDiff, rejection, uint8Report,
} from './helpers/fixtures.js';

const GOLDEN = 'tiny-taesd';
const { raw, cases } = loadCases(GOLDEN);
const taesdDir = fixture('models', 'tiny-taesd');
const sd15 = path.resolve(fixture('goldens', GOLDEN), raw.pipeline_model_dir);
const sdxl = fixture('models', 'tiny-sdxl');

/** VaeImageProcessor.postprocess of float [B, 3, H, W] in [-1, 1] → uint8 HWC per image (as the pipeline does it, in float32). */
function postprocess(t: TensorData<any>): Buffer[] {
  const [b, c, h, w] = t.shape;
  const out: Buffer[] = [];
  for (let i = 0; i < b; i++) {
    const img = Buffer.alloc(h * w * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) {
      const v = Math.fround(Math.min(1, Math.max(0, Math.fround(Math.fround(t.data[((i * c + k) * h + y) * w + x] / 2) + 0.5))));
      img[(y * w + x) * 3 + k] = Math.round(Math.fround(v * 255));
    }
    out.push(img);
  }
  return out;
}

/** Largest |a − b| over two uint8 buffers of one size. */
function maxByteDiff(a: Buffer, b: Buffer): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let taesd: AutoencoderTiny;
beforeAll(async () => { taesd = await AutoencoderTiny.fromPretrained(taesdDir); });
afterAll(() => taesd?.dispose());

describe('goldens/tiny-taesd pipeline cases: tiny-sd15 with vae = AutoencoderTiny', () => {
  for (const c of cases.filter((k) => k.kind === 'pipeline')) {
    it(`${c.name}: latents and pixels equal diffusers'`, async () => {
      const p = c.params;
      const g = await loadGolden(GOLDEN, c.file);
      const Cls = p.pipeline === 'StableDiffusionImg2ImgPipeline' ? StableDiffusionImg2ImgPipeline : StableDiffusionPipeline;
      const pipe = await Cls.fromPretrained(sd15, { vae: taesd });
      try {
        expect(pipe.vae).toBe(taesd);
        expect(pipe.info.vaeScaleFactor).toBe(p.vae_scale_factor); // 8, as diffusers' __init__ computes it from the vae given
        pipe.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
        const opts = goldenGenerateOptions(p, g);
        const lat = await (pipe as any).generate({ ...opts, outputType: 'latent' });
        const rel = maxAbsDiff(lat.latents, g.final_latents) / maxAbs(g.final_latents);
        expect(rel, `final latents relative error ${rel}`).toBeLessThan(1e-4);
        const out = await (pipe as any).generate(opts);
        const r = uint8Report(out.images[0].data, { data: g.image_uint8.data, shape: g.image_uint8.shape.slice(1) });
        console.log(`${c.name}: final latents rel ${rel.toExponential(2)}, uint8 worst ${r.worst}, fraction off ${r.fraction}`);
        expect(r.worst).toBeLessThanOrEqual(1);
        expect(r.fraction).toBeLessThan(0.01);
      } finally {
        pipe.dispose();
      }
    });
  }
});

describe('swapping the VAE (pipe.vae = …)', () => {
  let pipe: StableDiffusionPipeline;
  // 64×64: TAESD latents 8×8 (at 4×4 latents the tiny UNet intermittently gives NaN on this branch's
  // base — an open issue reported separately, not TAESD's)
  const opts = { prompt: 'a red sports car', negativePrompt: 'blurry', numInferenceSteps: 4, seed: 7, height: 64, width: 64 };
  beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(sd15); });
  afterAll(() => pipe?.dispose());

  it('TAESD decodes what the pipeline denoised; swapping back restores the image bit for bit', async () => {
    const own = pipe.vae;
    expect(own).toBeInstanceOf(AutoencoderKL);
    expect(pipe.info.vaeScaleFactor).toBe(2);
    const original = (await pipe.generate(opts)).images[0];

    pipe.vae = taesd;
    expect(pipe.vae).toBe(taesd);
    expect(pipe.info.vaeScaleFactor).toBe(8); // follows the VAE: 64×64 → 8×8 latents
    const lat = await pipe.generate({ ...opts, outputType: 'latent' });
    expect(lat.latents!.shape).toEqual([1, 4, 8, 8]);
    const viaTaesd = (await pipe.generate(opts)).images[0];
    expect([viaTaesd.width, viaTaesd.height]).toEqual([64, 64]);
    const byHand = postprocess(await taesd.decode(lat.latents!))[0]; // scaling_factor 1.0: decode(latents / 1)
    expect(maxByteDiff(viaTaesd.data, byHand)).toBe(0);

    pipe.vae = null;
    expect(pipe.vae).toBe(own);
    expect(pipe.info.vaeScaleFactor).toBe(2);
    const back = (await pipe.generate(opts)).images[0];
    expect(Buffer.compare(back.data, original.data)).toBe(0);

    await pipe.setVae(taesd);
    await pipe.setVae(own as AutoencoderKL); // the object pipe.vae returned puts the own VAE back too
    expect(Buffer.compare((await pipe.generate(opts)).images[0].data, original.data)).toBe(0);
  });

  it('vae given as a folder: AutoencoderTiny by _class_name, AutoencoderKL otherwise (same weights → same image)', async () => {
    const ref = (await pipe.generate(opts)).images[0];
    const a = await StableDiffusionPipeline.fromPretrained(sd15, { vae: path.join(sd15, 'vae') });
    const b = await StableDiffusionPipeline.fromPretrained(sd15, { vae: taesdDir });
    try {
      expect(a.vae).toBeInstanceOf(AutoencoderKL);
      expect(Buffer.compare((await a.generate(opts)).images[0].data, ref.data)).toBe(0);
      expect(b.vae).toBeInstanceOf(AutoencoderTiny);
      const lat = await b.generate({ ...opts, outputType: 'latent' });
      expect(maxByteDiff((await b.generate(opts)).images[0].data, postprocess(await taesd.decode(lat.latents!))[0])).toBe(0);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('vae given as a civitai-style original-layout VAE file (with or without first_stage_model.): same weights → same image', async () => {
    const ref = (await pipe.generate(opts)).images[0];
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-vaefile-'));
    try {
      const all = await readSafetensors(fixture('models', 'tiny-sd15.safetensors'));
      const prefixed = Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith('first_stage_model.')));
      const bare = Object.fromEntries(Object.entries(prefixed).map(([k, v]) => [k.slice('first_stage_model.'.length), v]));
      expect(Object.keys(bare).length).toBeGreaterThan(20);
      for (const [name, tensors] of [['bare.safetensors', bare], ['prefixed.safetensors', prefixed]] as const) {
        const file = path.join(tmp, name);
        await writeSafetensors(file, tensors);
        const p = await StableDiffusionPipeline.fromPretrained(sd15, { vae: file });
        try {
          expect(p.vae).toBeInstanceOf(AutoencoderKL);
          expect(Buffer.compare((await p.generate(opts)).images[0].data, ref.data), name).toBe(0);
        } finally {
          p.dispose();
        }
      }
      const bogus = path.join(tmp, 'bogus.safetensors');
      await writeSafetensors(bogus, { ...bare, 'decoder.extra.weight': bare['decoder.conv_in.bias'] });
      const e = await rejection(AutoencoderKL.fromSingleFile(bogus, { configDir: path.join(sd15, 'vae') }));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toMatch(/decoder\.extra\.weight/);
      expect((await rejection(AutoencoderKL.fromSingleFile(path.join(tmp, 'x.ckpt'), { configDir: path.join(sd15, 'vae') }))).code).toBe('E_BAD_CHECKPOINT');
      expect((await rejection(AutoencoderKL.fromSingleFile(bogus, {} as any))).code).toBe('E_INVALID_ARGUMENT');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('img2img with TAESD encodes deterministically (the seed gives the same image twice)', async () => {
    const img2img = StableDiffusionImg2ImgPipeline.fromPipeline(pipe);
    await img2img.setVae(taesd);
    try {
      const image = { data: new Uint8Array(64 * 64 * 3).map((_, i) => (i * 37) % 256), width: 64, height: 64, channels: 3 as const };
      const a = await img2img.generate({ ...opts, image, strength: 0.75 });
      const b = await img2img.generate({ ...opts, image, strength: 0.75 });
      expect(Buffer.compare(a.images[0].data, b.images[0].data)).toBe(0);
    } finally {
      await img2img.setVae(null);
      img2img.dispose();
    }
  });

  it('refuses a VAE with other latent channels (typed), a non-VAE, a disposed VAE; the pipeline keeps working', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-taesd8-'));
    try {
      // an AutoencoderTiny with 8 latent channels: the tiny-taesd weights with the two latent convs widened
      const w = await readSafetensors(path.join(taesdDir, 'diffusion_pytorch_model.safetensors'));
      const widen = (t: TensorData<any>, dim: 0 | 1): TensorData => {
        const s = [...t.shape];
        s[dim] *= 2;
        const data = new Float32Array(s.reduce((x, y) => x * y, 1));
        if (dim === 0) { data.set(t.data as Float32Array); data.set(t.data as Float32Array, t.data.length); }
        else {
          const inner = t.shape[2] * t.shape[3], cin = t.shape[1];
          for (let o = 0; o < t.shape[0]; o++) for (let k = 0; k < 2; k++)
            data.set((t.data as Float32Array).subarray(o * cin * inner, (o + 1) * cin * inner), (o * 2 + k) * cin * inner);
        }
        return { data, shape: s };
      };
      w['encoder.layers.14.weight'] = widen(w['encoder.layers.14.weight'], 0);
      w['encoder.layers.14.bias'] = widen({ ...w['encoder.layers.14.bias'], shape: [4, 1, 1, 1] }, 0);
      w['encoder.layers.14.bias'].shape = [8];
      w['decoder.layers.0.weight'] = widen(w['decoder.layers.0.weight'], 1);
      await writeSafetensors(path.join(tmp, 'diffusion_pytorch_model.safetensors'), w);
      const cfg = JSON.parse(fs.readFileSync(path.join(taesdDir, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify({ ...cfg, latent_channels: 8 }));
      const wide = await AutoencoderTiny.fromPretrained(tmp);
      expect(wide.latentChannels).toBe(8);
      let e: any;
      try { pipe.vae = wide; } catch (x) { e = x; }
      expect(e).toBeInstanceOf(SdError);
      expect(e.code).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toMatch(/8 latent channels .* have 4 .*latent-channel mismatch/);
      expect((await rejection(StableDiffusionPipeline.fromPretrained(sd15, { vae: wide }))).code).toBe('E_INVALID_ARGUMENT');
      expect((await rejection(pipe.setPreviewDecoder(wide))).code).toBe('E_INVALID_ARGUMENT');
      wide.dispose();
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    expect(() => { (pipe as any).vae = { decode() {} }; }).toThrow(/AutoencoderKL, an AutoencoderTiny or null/);
    expect((await rejection(StableDiffusionPipeline.fromPretrained(sd15, { vae: 42 as any }))).code).toBe('E_INVALID_ARGUMENT');
    expect((await rejection(StableDiffusionPipeline.fromPretrained(sd15, { vae: path.join(sd15, 'nothing') }))).code).toBe('E_MODEL_NOT_FOUND');
    const gone = await AutoencoderTiny.fromPretrained(taesdDir);
    gone.dispose();
    expect(() => { pipe.vae = gone; }).toThrow(/disposed/);
    expect(pipe.vae).toBeInstanceOf(AutoencoderKL);
    expect((await pipe.generate(opts)).images[0].width).toBe(64);
  });
});

describe('SDXL with TAESD as its VAE', () => {
  it('tiny-sdxl (4 latent channels) decodes through AutoencoderTiny; swapping back restores the image', async () => {
    const pipe = await StableDiffusionXLPipeline.fromPretrained(sdxl);
    try {
      const opts = { prompt: 'a lighthouse', numInferenceSteps: 3, seed: 3, height: 64, width: 64 };
      const original = (await pipe.generate(opts)).images[0];
      await pipe.setVae(taesd);
      const lat = await pipe.generate({ ...opts, outputType: 'latent' });
      const img = (await pipe.generate(opts)).images[0];
      expect(maxByteDiff(img.data, postprocess(await taesd.decode(lat.latents!))[0])).toBe(0);
      pipe.vae = null;
      expect(Buffer.compare((await pipe.generate(opts)).images[0].data, original.data)).toBe(0);
    } finally {
      pipe.dispose();
    }
  });
});

// A1111 modules/sd_vae_approx.py cheap_approximation, SD 1.x coefficients (latent channel × RGB).
const SD1_RGB = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];
// … and the SDXL ones (its `is_sdxl` branch).
const SDXL_RGB = [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163], [-0.3730, -0.2499, -0.2088]];

/** The preview A1111's "Approx cheap" gives for image 0 of latents [B, 4, h, w]: einsum then (x/2 + 0.5)·255. */
function latent2rgb(lat: TensorData<any>, m: number[][]): Buffer {
  const [, , h, w] = lat.shape;
  const want = Buffer.alloc(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let r = 0; r < 3; r++) {
    let v = 0;
    for (let c = 0; c < 4; c++) v += lat.data[(c * h + y) * w + x] * m[c][r];
    want[(y * w + x) * 3 + r] = Math.round(Math.min(1, Math.max(0, v / 2 + 0.5)) * 255);
  }
  return want;
}

describe('previews', () => {
  let pipe: StableDiffusionPipeline;
  const opts = { prompt: 'a red sports car', negativePrompt: 'blurry', numInferenceSteps: 6, seed: 11, height: 32, width: 32 };
  beforeAll(async () => {
    pipe = await StableDiffusionPipeline.fromPretrained(sd15, { previewDecoder: taesdDir });
    pipe.setScheduler('EulerDiscreteScheduler'); // one UNet step per step (PNDM, the model's own, runs 7 for 6)
  });
  afterAll(() => pipe?.dispose());

  it('never change the final image; arrive every previewEvery steps at the right size; the last one shows the final latents', async () => {
    const plain = await pipe.generate(opts);
    const lat = await pipe.generate({ ...opts, outputType: 'latent' });
    for (const [kind, every, size] of [['taesd', 2, 128], ['latent2rgb', 3, 16], ['taesd', 1, 128]] as const) {
      const seen: StepProgress[] = [];
      const out = await pipe.generate({ ...opts, previews: kind, previewEvery: every, onStep: (p) => { seen.push(p); } });
      expect(Buffer.compare(out.images[0].data, plain.images[0].data), `${kind}: final image`).toBe(0);
      expect(seen.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(seen.filter((p) => p.previewImages).map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6].filter((s) => s % every === 0));
      for (const p of seen.filter((q) => q.previewImages)) {
        expect(p.previewImages!.length).toBe(1);
        const im = p.previewImages![0];
        expect([im.width, im.height, im.channels, im.data.length]).toEqual([size, size, 3, size * size * 3]);
      }
      const last = seen[5].previewImages![0].data; // step 6 = the final latents
      if (kind === 'taesd') {
        expect(maxByteDiff(last, postprocess(await taesd.decode(lat.latents!))[0])).toBe(0);
      } else {
        expect(maxByteDiff(last, latent2rgb(lat.latents!, SD1_RGB))).toBeLessThanOrEqual(1); // float32 vs float64 rounding
      }
    }
  });

  it('SDXL previews use the SDXL latent2rgb matrix (not the SD 1.x one)', async () => {
    const xl = await StableDiffusionXLPipeline.fromPretrained(sdxl);
    try {
      xl.setScheduler('EulerDiscreteScheduler');
      const o = { prompt: 'a lighthouse', numInferenceSteps: 2, seed: 3, height: 32, width: 32 };
      const seen: StepProgress[] = [];
      await xl.generate({ ...o, previews: 'latent2rgb', onStep: (p) => { seen.push(p); } });
      expect(seen.map((p) => p.previewImages?.[0].width)).toEqual([16, 16]);
      const lat = (await xl.generate({ ...o, outputType: 'latent' })).latents!;
      const last = seen[1].previewImages![0].data;
      expect(maxByteDiff(last, latent2rgb(lat, SDXL_RGB))).toBeLessThanOrEqual(1);
      expect(maxByteDiff(last, latent2rgb(lat, SD1_RGB))).toBeGreaterThan(1);
    } finally {
      xl.dispose();
    }
  });

  it('bad previews options are typed errors before any native work; the pipeline keeps working', async () => {
    const onStep = () => {};
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ previews: 'taesd', previewEvery: 0, onStep }, /previewEvery/],
      [{ previews: 'taesd', previewEvery: 1.5, onStep }, /previewEvery/],
      [{ previews: 'latent2rgb', previewEvery: '2', onStep }, /previewEvery/],
      [{ previewEvery: 2, onStep }, /previewEvery needs previews/],
      [{ previews: 'latent2rgb' }, /pass onStep/],
      [{ previews: 'full', onStep }, /previews/],
    ];
    for (const [o, re] of bad) {
      const e = await rejection(pipe.generate({ ...opts, ...o } as any));
      expect(e, JSON.stringify(o)).toBeInstanceOf(SdError);
      expect(e.code, JSON.stringify(o)).toBe('E_INVALID_ARGUMENT');
      expect(e.message, JSON.stringify(o)).toMatch(re);
    }
    const bare = StableDiffusionPipeline.fromPipeline(pipe); // the scheduler is copied
    try {
      await pipe.setPreviewDecoder(null); // shared model: no decoder any more
      const e = await rejection(bare.generate({ ...opts, previews: 'taesd', onStep }));
      expect(e.code).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toMatch(/preview decoder/);
      await expect(pipe.setPreviewDecoder(path.join(sd15, 'vae'))).rejects.toThrow(/must be an AutoencoderTiny/);
      await pipe.setPreviewDecoder(taesd);
      const seen: number[] = [];
      await bare.generate({ ...opts, numInferenceSteps: 2, previews: 'taesd', onStep: (p) => { if (p.previewImages) seen.push(p.step); } });
      expect(seen).toEqual([1, 2]);
    } finally {
      bare.dispose();
    }
  });
});
