/**
 * The ControlNet pipelines' refusals (typed SdError with a code, nothing run, the pipeline fine on
 * the next call), the per-pipeline default scale, and scale 0 ≡ the plain pipeline.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionControlNetImg2ImgPipeline, StableDiffusionPipeline,
  StableDiffusionXLControlNetPipeline, InvalidArgumentError, DEFAULTS, parseControlNetOptions, readSafetensors, writeSafetensors,
  formatA1111Parameters,
} from '../lib/index.js';
import { fixture, maxAbsDiff, rejection } from './helpers/fixtures.js';

const SD = fixture('models', 'tiny-sd15');
const SDXL = fixture('models', 'tiny-sdxl');
const CN = fixture('models', 'tiny-sd15-controlnet');
const CN_XL = fixture('models', 'tiny-sdxl-controlnet');
const W = 32, H = 24;
const control = { data: new Uint8Array(W * H * 3).map((_, i) => (i * 53) % 256), width: W, height: H, channels: 3 as const };
const base = { prompt: 'a cat', numInferenceSteps: 2, seed: 5, height: H, width: W, outputType: 'latent' as const };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-cn-'));

let cn: ControlNetModel, cn2: ControlNetModel, cnXl: ControlNetModel;
let pipe: StableDiffusionControlNetPipeline;
beforeAll(async () => {
  cn = await ControlNetModel.fromPretrained(CN);
  cn2 = await ControlNetModel.fromPretrained(CN);
  cnXl = await ControlNetModel.fromPretrained(CN_XL);
  pipe = await StableDiffusionControlNetPipeline.fromPretrained(SD, { controlnet: [cn, cn2] });
});
afterAll(() => {
  pipe?.dispose();
  for (const c of [cn, cn2, cnXl]) c?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('ControlNet argument checks (diffusers check_inputs)', () => {
  it('a control image count that is not the number of ControlNets is E_INVALID_ARGUMENT', async () => {
    const e = await rejection(pipe.generate({ ...base, image: control }));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toMatch(/2 ControlNet\(s\) need 2 control image\(s\).*received 1/);
    expect((await rejection(pipe.generate({ ...base, image: [control, control, control] }))).code).toBe('E_INVALID_ARGUMENT');
  });

  it('a scale / start / end list of the wrong length is E_INVALID_ARGUMENT naming the field', async () => {
    for (const [field, v] of [['controlnetConditioningScale', [1, 0.5, 0.2]], ['controlGuidanceStart', [0]], ['controlGuidanceEnd', [1, 1, 1]]] as const) {
      const e = await rejection(pipe.generate({ ...base, image: [control, control], [field]: v }));
      expect(e.code).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toContain(field);
    }
  });

  it('start >= end is E_INVALID_ARGUMENT (per net too); out-of-range values are refused by the schema', async () => {
    let e = await rejection(pipe.generate({ ...base, image: [control, control], controlGuidanceStart: 0.5, controlGuidanceEnd: 0.5 }));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('controlGuidanceStart (0.5) must be smaller than controlGuidanceEnd (0.5)');
    e = await rejection(pipe.generate({ ...base, image: [control, control], controlGuidanceStart: [0, 0.8], controlGuidanceEnd: [1, 0.3] }));
    expect(e.message).toContain('for ControlNet 1');
    e = await rejection(pipe.generate({ ...base, image: [control, control], controlGuidanceEnd: 1.5 }));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('controlGuidanceEnd');
  });

  it('the pipeline still generates after the refusals, and the A1111 text names both units', async () => {
    const r = await pipe.generate({ ...base, outputType: 'image', image: [control, control], controlnetConditioningScale: [1, 0.5], controlGuidanceStart: [0, 0.5] });
    expect(r.latents!.shape).toEqual([1, 4, H / 2, W / 2]);
    const text = formatA1111Parameters(r.images[0].parameters);
    expect(text).toContain('ControlNet 0: "Module: none, Model: tiny-sd15-controlnet, Weight: 1.0, Resize Mode: Just Resize, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"');
    expect(text).toContain('ControlNet 1: "Module: none, Model: tiny-sd15-controlnet, Weight: 0.5, Resize Mode: Just Resize, Guidance Start: 0.5, Guidance End: 1.0');
  });

  it('the default conditioning scale is diffusers\' per pipeline: 1.0 / 0.8 img2img / 0.5 inpaint / 1.0 SDXL', () => {
    expect(parseControlNetOptions({ prompt: 'x', image: control }, 'txt2img', 1).control.scales).toEqual([1]);
    expect(parseControlNetOptions({ prompt: 'x', image: control, controlImage: control }, 'img2img', 1).control.scales).toEqual([0.8]);
    expect(parseControlNetOptions({ prompt: 'x', image: control, maskImage: control, controlImage: control }, 'inpaint', 1).control.scales).toEqual([0.5]);
    expect(parseControlNetOptions({ prompt: 'x', image: control }, 'xl', 1).control.scales).toEqual([1]);
    expect(DEFAULTS.controlnetConditioningScale).toEqual({ txt2img: 1, img2img: 0.8, inpaint: 0.5, xl: 1 });
  });

  it('scale 0 gives the plain pipeline\'s latents bit for bit (the ControlNet runs, its residuals are 0)', async () => {
    const single = StableDiffusionControlNetPipeline.fromPipeline(pipe, { controlnet: cn });
    const plain = StableDiffusionPipeline.fromPipeline(pipe);
    try {
      const a = await single.generate({ ...base, image: control, controlnetConditioningScale: 0 });
      const b = await plain.generate(base);
      expect(maxAbsDiff(a.latents!, b.latents!)).toBe(0);
      const c = await single.generate({ ...base, image: control });
      expect(maxAbsDiff(c.latents!, b.latents!)).toBeGreaterThan(0);
    } finally {
      single.dispose();
      plain.dispose();
    }
  });
});

describe('ControlNet / UNet mismatches', () => {
  it('an SDXL ControlNet on an SD 1.x model (and the reverse) is E_INVALID_ARGUMENT at load', async () => {
    let e = await rejection(StableDiffusionControlNetPipeline.fromPretrained(SD, { controlnet: cnXl }));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('an SDXL ControlNet but the model is SD 1.x/2.x');
    e = await rejection(StableDiffusionXLControlNetPipeline.fromPretrained(SDXL, { controlnet: cn }));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('an SD 1.x/2.x ControlNet but the model is SDXL');
    expect(() => StableDiffusionControlNetImg2ImgPipeline.fromPipeline(pipe, { controlnet: cnXl })).toThrow(InvalidArgumentError);
  });

  it('fromSingleFile takes { controlnet } too and generates with it', async () => {
    const p4 = await StableDiffusionControlNetPipeline.fromSingleFile(fixture('models', 'tiny-sd15.safetensors'), { configDir: SD, controlnet: cn });
    try {
      expect(p4.controlnet).toEqual([cn]);
      const r = await p4.generate({ ...base, image: control });
      expect(r.latents!.shape).toEqual([1, 4, H / 2, W / 2]);
    } finally {
      p4.dispose();
    }
  });

  it('no controlnet at load is E_INVALID_ARGUMENT', async () => {
    const e = await rejection(StableDiffusionControlNetPipeline.fromPretrained(SD, {} as any));
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('controlnet must be a ControlNetModel');
  });

  it('a ControlNet whose cross_attention_dim differs from the UNet\'s is refused by the core (E_INVALID_ARGUMENT), then the pipeline works', async () => {
    // the SDXL ControlNet without its text_time embedding: an "SD" ControlNet of cross_attention_dim 64 (tiny-sd15: 32)
    const dir = path.join(tmp, 'cn-dim64');
    fs.mkdirSync(dir);
    const config = JSON.parse(fs.readFileSync(path.join(CN_XL, 'config.json'), 'utf8'));
    Object.assign(config, { addition_embed_type: null, addition_time_embed_dim: null, projection_class_embeddings_input_dim: null });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    const w = await readSafetensors(path.join(CN_XL, 'diffusion_pytorch_model.safetensors'));
    for (const k of Object.keys(w)) if (k.startsWith('add_embedding.')) delete w[k];
    await writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), w);
    const odd = await ControlNetModel.fromPretrained(dir);
    const p2 = StableDiffusionControlNetPipeline.fromPipeline(pipe, { controlnet: odd });
    try {
      expect(odd.info).toMatchObject({ sdxl: false, crossAttentionDim: 64 });
      const e = await rejection(p2.generate({ ...base, image: control }));
      expect(e.code).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toContain('cross_attention_dim 64 vs the UNet\'s 32');
      p2.setControlNets(cn);
      const ok = await p2.generate({ ...base, image: control });
      expect(ok.latents!.shape).toEqual([1, 4, H / 2, W / 2]);
    } finally {
      p2.dispose();
      odd.dispose();
    }
  });

  it('a disposed ControlNet is E_DISPOSED when used', async () => {
    const tmpNet = await ControlNetModel.fromPretrained(CN);
    const p3 = StableDiffusionControlNetPipeline.fromPipeline(pipe, { controlnet: tmpNet });
    tmpNet.dispose();
    try {
      expect((await rejection(p3.generate({ ...base, image: control }))).code).toBe('E_DISPOSED');
    } finally {
      p3.dispose();
    }
  });
});
