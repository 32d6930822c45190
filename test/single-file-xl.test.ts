/**
 * Original single-file checkpoints, SDXL and the inverse mapping: saveSingleFile writes a diffusers
 * folder in the original LDM/sgm layout (after diffusers v0.30.3
 * scripts/convert_diffusers_to_original_{stable_diffusion,sdxl}.py), loadSingleFile maps it back,
 * and every tensor of every component must come back identical. The stored SD 1.x / 2.x fixture
 * single files (written by diffusers' scripts) must equal our inverse key for key, bit for bit.
 * The SDXL pipeline from the single file must draw the same image as from the folder.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import {
  saveSingleFile, compareCheckpoints, loadStateDict, readSafetensors, writeSafetensors, SdError,
  StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline,
} from '../lib/index.js';
import { fixture, rejection } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-single-xl-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const models = (...p: string[]) => fixture('models', ...p);
const XL = models('tiny-sdxl');
const readJson = (p: string): any => JSON.parse(fs.readFileSync(p, 'utf8'));


const bytes = (t: TensorData<any>) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
function sameTensor(a: TensorData<any>, b: TensorData<any>): boolean {
  return JSON.stringify(a.shape) === JSON.stringify(b.shape) && a.data.constructor === b.data.constructor && bytes(a).equals(bytes(b));
}

/** [R, C] row-major → [C, R]. */
function transpose(t: TensorData<Float32Array>): TensorData<Float32Array> {
  const [r, c] = t.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; ++i) for (let j = 0; j < c; ++j) out[j * r + i] = t.data[i * c + j];
  return { data: out, shape: [c, r] };
}

function cat0(parts: TensorData<Float32Array>[]): TensorData<Float32Array> {
  const n = parts.reduce((s, p) => s + p.data.length, 0);
  const out = new Float32Array(n);
  let o = 0;
  for (const p of parts) { out.set(p.data, o); o += p.data.length; }
  return { data: out, shape: [parts.reduce((s, p) => s + p.shape[0], 0), ...parts[0].shape.slice(1)] };
}

/** Every component of the folder equals the mapped single file: same names, shapes, dtypes, max|diff| 0. */
async function expectRoundTrip(file: string, dir: string, components: string[]) {
  const r = await compareCheckpoints(file, dir, dir) as Record<string, any>;
  expect(Object.keys(r).sort()).toEqual([...components].sort());
  for (const c of components) {
    const folder = await loadStateDict(dir, { component: c });
    expect(r[c].missing, `${c} missing`).toEqual([]);
    expect(r[c].unexpected, `${c} unexpected`).toEqual([]);
    expect(r[c].mismatched, `${c} mismatched`).toEqual([]);
    expect(r[c].maxAbsDiff, `${c} max abs diff`).toBe(0);
    expect(r[c].count, `${c} count`).toBe(Object.keys(folder).length);
    expect(r[c].count).toBeGreaterThan(0);
    // and the key sets through the public single-file loader
    const mapped = await loadStateDict(file, { singleFile: true, configDir: dir, component: c });
    expect(Object.keys(mapped).sort()).toEqual(Object.keys(folder).sort());
  }
}

describe('SDXL single file: saveSingleFile → loadSingleFile round trip (tiny-sdxl)', () => {
  const file = path.join(tmp, 'tiny-sdxl.safetensors');
  let sd: Record<string, TensorData<any>>;
  beforeAll(async () => {
    const summary = await saveSingleFile(XL, file);
    expect(summary).toEqual({ path: file, family: 'sdxl', refiner: false, tensors: expect.any(Number) });
    sd = await readSafetensors(file);
    expect(Object.keys(sd).length).toBe(summary.tensors);
  });

  it('writes the real SDXL layout', async () => {
    const prefixes = ['model.diffusion_model.', 'first_stage_model.', 'conditioner.embedders.0.transformer.text_model.', 'conditioner.embedders.1.model.'];
    for (const k of Object.keys(sd)) expect(prefixes.some((p) => k.startsWith(p)), k).toBe(true);
    for (const p of prefixes) expect(Object.keys(sd).some((k) => k.startsWith(p)), p).toBe(true);

    const te2 = await readSafetensors(path.join(XL, 'text_encoder_2', 'model.safetensors'));
    const h = readJson(path.join(XL, 'text_encoder_2', 'config.json')).hidden_size;
    const p = readJson(path.join(XL, 'text_encoder_2', 'config.json')).projection_dim;
    // OpenCLIP: q/k/v fused, cat on dim 0
    const inProj = sd['conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight'];
    expect(inProj.shape).toEqual([3 * h, h]);
    const attn = 'text_model.encoder.layers.0.self_attn';
    expect(sameTensor(inProj, cat0(['q', 'k', 'v'].map((x) => te2[`${attn}.${x}_proj.weight`])))).toBe(true);
    expect(sameTensor(sd['conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_bias'],
      cat0(['q', 'k', 'v'].map((x) => te2[`${attn}.${x}_proj.bias`])))).toBe(true);
    // text_projection [D, P] = text_projection.weightᵀ (square here, so compare values)
    const proj = sd['conditioner.embedders.1.model.text_projection'];
    expect(proj.shape).toEqual([h, p]);
    expect(sameTensor(proj, transpose(te2['text_projection.weight']))).toBe(true);
    expect(sameTensor(proj, te2['text_projection.weight'])).toBe(false);
    expect(sd['conditioner.embedders.1.model.ln_final.weight']).toBeDefined();
    expect(sd['conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight']).toBeDefined();
    // CLIP ViT-L keeps the transformers names, plus the position_ids buffer of original files
    expect(sd['conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight']).toBeDefined();
    expect(sd['conditioner.embedders.0.transformer.text_model.embeddings.position_ids'].shape).toEqual([1, 77]);

    // UNet: label_emb = add_embedding; transformer_layers_per_block [1, 2] → 2 blocks in input_blocks.4.1
    const unet = await readSafetensors(path.join(XL, 'unet', 'diffusion_pytorch_model.safetensors'));
    expect(sameTensor(sd['model.diffusion_model.label_emb.0.0.weight'], unet['add_embedding.linear_1.weight'])).toBe(true);
    expect(sameTensor(sd['model.diffusion_model.label_emb.0.2.bias'], unet['add_embedding.linear_2.bias'])).toBe(true);
    expect(sd['model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight']).toBeDefined();
    expect(sd['model.diffusion_model.middle_block.1.transformer_blocks.1.ff.net.2.weight']).toBeDefined();
    expect(sd['model.diffusion_model.output_blocks.2.1.transformer_blocks.1.norm3.weight']).toBeDefined();
    expect(sd['model.diffusion_model.output_blocks.2.2.conv.weight']).toBeDefined();  // upsampler after the last layer
    expect(Object.keys(sd).some((k) => k.startsWith('model.diffusion_model.input_blocks.1.1.'))).toBe(false);  // DownBlock2D: no attention
    // VAE attention as 1x1 conv
    const c = readJson(path.join(XL, 'vae', 'config.json')).block_out_channels.at(-1);
    expect(sd['first_stage_model.decoder.mid.attn_1.q.weight'].shape).toEqual([c, c, 1, 1]);
  });

  it('maps back to every tensor of unet, vae, text_encoder and text_encoder_2 exactly', async () => {
    await expectRoundTrip(file, XL, ['unet', 'vae', 'text_encoder', 'text_encoder_2']);
    const te2 = await loadStateDict(file, { singleFile: true, configDir: XL, component: 'text_encoder_2' });
    const p = readJson(path.join(XL, 'text_encoder_2', 'config.json')).projection_dim;
    const h = readJson(path.join(XL, 'text_encoder_2', 'config.json')).hidden_size;
    expect(te2['text_projection.weight']).toEqual({ shape: [p, h], dtype: 'float32' });
  });

  it('skips the known-unused SDXL keys (logit_scale) and refuses blocks the config does not have', async () => {
    const one = { data: new Float32Array([0.5]), shape: [1] };
    const extras = path.join(tmp, 'xl-extras.safetensors');
    await writeSafetensors(extras, { ...sd, 'conditioner.embedders.1.model.logit_scale': one });
    await expectRoundTrip(extras, XL, ['unet', 'vae', 'text_encoder', 'text_encoder_2']);

    // transformer_layers_per_block [1, 2]: a third block in down_blocks.1 maps to nothing
    const layers = readJson(path.join(XL, 'text_encoder_2', 'config.json')).num_hidden_layers;
    const bad = ['model.diffusion_model.input_blocks.4.1.transformer_blocks.2.attn1.to_q.weight',
      'model.diffusion_model.input_blocks.1.1.norm.weight',  // DownBlock2D has no attention
      `conditioner.embedders.1.model.transformer.resblocks.${layers}.ln_1.weight`];  // SDXL uses every bigG layer
    const p = path.join(tmp, 'xl-unknown.safetensors');
    await writeSafetensors(p, { ...sd, ...Object.fromEntries(bad.map((k) => [k, one])) });
    const e = await rejection(loadStateDict(p, { singleFile: true, configDir: XL, component: 'unet' }));
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain(`${bad.length} key(s)`);
    for (const k of bad) expect(e.message).toContain(k);
  });

  it('maps the refiner layout (OpenCLIP bigG alone as conditioner.embedders.0.model) to text_encoder_2', async () => {
    // A refiner-shaped folder: no text_encoder/tokenizer; weights shared with tiny-sdxl by symlink.
    const dir = path.join(tmp, 'tiny-sdxl-refiner');
    fs.mkdirSync(dir);
    for (const c of ['unet', 'vae', 'text_encoder_2', 'tokenizer_2', 'scheduler']) fs.symlinkSync(path.join(XL, c), path.join(dir, c));
    const mi = readJson(path.join(XL, 'model_index.json'));
    fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify({
      ...mi, _class_name: 'StableDiffusionXLImg2ImgPipeline', text_encoder: [null, null], tokenizer: [null, null],
    }));
    const file = path.join(tmp, 'refiner.safetensors');
    const summary = await saveSingleFile(dir, file);
    expect(summary).toMatchObject({ family: 'sdxl', refiner: true });
    const keys = Object.keys(await readSafetensors(file));
    expect(keys).toContain('conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight');
    expect(keys).toContain('conditioner.embedders.0.model.text_projection');
    expect(keys.some((k) => k.startsWith('conditioner.embedders.1.') || k.startsWith('conditioner.embedders.0.transformer.'))).toBe(false);
    await expectRoundTrip(file, dir, ['unet', 'vae', 'text_encoder_2']);
  });

  describe('errors', () => {
    it('an SDXL file with an SD 1.x config folder (and the reverse) is a coded error naming both', async () => {
      let e = await rejection(loadStateDict(file, { singleFile: true, configDir: models('tiny-sd15'), component: 'unet' }));
      expect(e.code).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toContain('Stable Diffusion XL checkpoint');
      expect(e.message).toContain(models('tiny-sd15'));
      expect(e.message).toContain('StableDiffusionXLPipeline');
      // the SDXL pipeline refuses the SD 1.x config folder itself, before reading the file
      e = await rejection(StableDiffusionXLPipeline.fromSingleFile(file, { configDir: models('tiny-sd15') }));
      expect(e.code).toBe('E_UNSUPPORTED_MODEL');
      expect(e.message).toContain(models('tiny-sd15'));
      expect(e.message).toContain('SD 1.x/2.x model');
      e = await rejection(loadStateDict(models('tiny-sd15.safetensors'), { singleFile: true, configDir: XL, component: 'unet' }));
      expect(e.code).toBe('E_INVALID_ARGUMENT');
      expect(e.message).toContain('Stable Diffusion 1.x checkpoint');
    });

    it('a component with no tensors is E_BAD_CHECKPOINT naming it', async () => {
      const p = path.join(tmp, 'xl-no-te2.safetensors');
      await writeSafetensors(p, Object.fromEntries(Object.entries(sd).filter(([k]) => !k.startsWith('conditioner.embedders.1.'))));
      const e = await rejection(loadStateDict(p, { singleFile: true, configDir: XL, component: 'unet' }));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toContain('text_encoder_2 (conditioner.embedders.1.model.*)');
      expect(e.message).toContain('0 text_encoder_2');
    });

    it('a missing tensor is E_BAD_CHECKPOINT naming it (strict load of the pipeline)', async () => {
      const p = path.join(tmp, 'xl-missing.safetensors');
      const { ['model.diffusion_model.label_emb.0.2.weight']: _gone, ...rest } = sd;
      await writeSafetensors(p, rest);
      const e = await rejection(StableDiffusionXLPipeline.fromSingleFile(p, { configDir: XL }));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toContain('add_embedding.linear_2.weight');
      expect(e.message).toContain(p);
    });

    it('a truncated file is E_BAD_CHECKPOINT; no configDir is E_INVALID_ARGUMENT', async () => {
      const p = path.join(tmp, 'xl-truncated.safetensors');
      const buf = fs.readFileSync(file);
      fs.writeFileSync(p, buf.subarray(0, buf.length - 1000));
      const e = await rejection(StableDiffusionXLPipeline.fromSingleFile(p, { configDir: XL }));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toContain(p);
      const e2 = await rejection(StableDiffusionXLPipeline.fromSingleFile(file));
      expect(e2.code).toBe('E_INVALID_ARGUMENT');
      expect(e2.message).toContain('configDir');
    });
  });

  describe('pipelines', () => {
    let fromFolder: StableDiffusionXLPipeline;
    let fromFile: StableDiffusionXLPipeline;
    beforeAll(async () => {
      [fromFolder, fromFile] = await Promise.all([
        StableDiffusionXLPipeline.fromPretrained(XL),
        StableDiffusionXLPipeline.fromSingleFile(file, { configDir: XL }),
      ]);
    });
    afterAll(() => { fromFolder?.dispose(); fromFile?.dispose(); });

    it('StableDiffusionXLPipeline.fromSingleFile draws the bit-identical image', async () => {
      expect(fromFile.info.family).toBe('sdxl');
      expect(fromFile.info.components).toEqual(fromFolder.info.components);
      expect(fromFile.info.tokenizerDirs).toEqual(fromFolder.info.tokenizerDirs);
      const opts = { prompt: 'a lighthouse', negativePrompt: 'blurry', numInferenceSteps: 2, height: 32, width: 32, seed: 7, outputType: 'latent' as const };
      const a = await fromFolder.generate(opts);
      const b = await fromFile.generate(opts);
      expect(sameTensor(b.latents!, a.latents!)).toBe(true);
      const ai = await fromFolder.generate({ ...opts, outputType: 'image' as const });
      const bi = await fromFile.generate({ ...opts, outputType: 'image' as const });
      expect(Buffer.from(bi.images[0].data).equals(Buffer.from(ai.images[0].data))).toBe(true);
    });

    it('fp8 storage on a single-file SDXL pipeline: disabling it re-reads the UNet from the file, exactly', async () => {
      const opts = { prompt: 'a lighthouse', negativePrompt: 'blurry', numInferenceSteps: 2, height: 32, width: 32, seed: 7, outputType: 'latent' as const };
      const before = await fromFile.generate(opts);
      fromFile.enableFp8Storage();
      const fp8 = await fromFile.generate(opts);
      expect(sameTensor(fp8.latents!, before.latents!)).toBe(false);
      fromFile.disableFp8Storage();
      const after = await fromFile.generate(opts);
      expect(sameTensor(after.latents!, before.latents!)).toBe(true);
    });

    it('StableDiffusionXLImg2ImgPipeline.fromSingleFile loads the same file', async () => {
      const img2img = await StableDiffusionXLImg2ImgPipeline.fromSingleFile(file, { configDir: XL });
      try {
        expect(img2img.info.components).toEqual(fromFolder.info.components);
      } finally {
        img2img.dispose();
      }
    });
  });
});

describe('SD 1.x / 2.x: the inverse equals the stored single files (written by diffusers\' scripts)', () => {
  for (const model of ['tiny-sd15', 'tiny-sd2-v']) {
    it(`${model}: saveSingleFile writes ${model}.safetensors key for key, bit for bit, and maps back exactly`, async () => {
      const file = path.join(tmp, `${model}.safetensors`);
      const summary = await saveSingleFile(models(model), file);
      expect(summary.family).toBe(model === 'tiny-sd15' ? 'sd1' : 'sd2');
      const ours = await readSafetensors(file);
      const ref = await readSafetensors(models(`${model}.safetensors`));
      expect(Object.keys(ours).sort()).toEqual(Object.keys(ref).sort());
      const differ = Object.keys(ref).filter((k) => !sameTensor(ours[k], ref[k]));
      expect(differ).toEqual([]);
      await expectRoundTrip(file, models(model), ['unet', 'vae', 'text_encoder']);
    });
  }
});

describe('CLI: sd-native convert / info on an SDXL single file', () => {
  const root = path.resolve(import.meta.dirname, '..');
  const cli = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });

  it('convert writes the same file as saveSingleFile; info loads it as SDXL with --config-dir', async () => {
    const out = path.join(tmp, 'cli-xl.safetensors');
    const r = await cli('convert', XL, out);
    expect(r.stderr).toContain('sdxl layout');
    expect(r.code).toBe(0);
    const ref = path.join(tmp, 'api-xl.safetensors');
    await saveSingleFile(XL, ref);
    expect(fs.readFileSync(out).equals(fs.readFileSync(ref))).toBe(true);
    const info = await cli('info', out, '--config-dir', XL, '--json');
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ family: 'sdxl', className: 'StableDiffusionXLPipeline' });
    const bad = await cli('convert', path.join(tmp, 'nope'), out);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/error \[E_MODEL_NOT_FOUND\]/);
  }, 120_000);
});
