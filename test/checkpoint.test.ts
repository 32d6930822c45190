import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  readModelIndex, loadStateDict, compareCheckpoints, readSafetensors, writeSafetensors, SdError,
} from '../lib/index.js';
import { fixture, rejection } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-ckpt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const models = (...p: string[]) => fixture('models', ...p);


function readJson(p: string): any {
  return JSON.parse(fs.readFileSync(p, 'utf8'));
}

describe('model_index.json', () => {
  it('reads the pipeline class and components of tiny-sd15', async () => {
    const mi = await readModelIndex(models('tiny-sd15'));
    const raw = readJson(models('tiny-sd15', 'model_index.json'));
    expect(mi.className).toBe('StableDiffusionPipeline');
    expect(mi.className).toBe(raw._class_name);
    expect(mi.diffusersVersion).toBe(raw._diffusers_version);
    expect(mi.components.unet).toEqual(['diffusers', 'UNet2DConditionModel']);
    expect(mi.components.text_encoder).toEqual(['transformers', 'CLIPTextModel']);
    expect(mi.components.safety_checker).toBeNull();   // [null, null]
    expect('requires_safety_checker' in mi.components).toBe(false);
    expect(mi.forceZerosForEmptyPrompt).toBeUndefined();
  });

  it('reads SDXL and inpainting indexes', async () => {
    const xl = await readModelIndex(models('tiny-sdxl'));
    expect(xl.className).toBe('StableDiffusionXLPipeline');
    expect(xl.forceZerosForEmptyPrompt).toBe(true);
    expect(xl.components.text_encoder_2).toEqual(['transformers', 'CLIPTextModelWithProjection']);
    const inpaint = await readModelIndex(models('tiny-sd15-inpaint'));
    expect(inpaint.className).toBe('StableDiffusionInpaintPipeline');
  });

  it('reports a missing folder or model_index.json as E_MODEL_NOT_FOUND naming it', async () => {
    const missing = path.join(tmp, 'no-such-model');
    let e = await rejection(readModelIndex(missing));
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain(missing);
    const empty = path.join(tmp, 'empty-model');
    fs.mkdirSync(empty, { recursive: true });
    e = await rejection(readModelIndex(empty));
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain(path.join(empty, 'model_index.json'));
  });

  it('refuses a malformed component entry with E_BAD_CONFIG', async () => {
    const dir = path.join(tmp, 'bad-index');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers'] }));
    const e = await rejection(readModelIndex(dir));
    expect(e.code).toBe('E_BAD_CONFIG');
    expect(e.message).toMatch(/component "unet"/);
  });
});

describe('diffusers component folders', () => {
  it('loads each component of tiny-sd15 by diffusers name', async () => {
    const unet = await loadStateDict(models('tiny-sd15'), { component: 'unet' });
    const cfg = readJson(models('tiny-sd15', 'unet', 'config.json'));
    expect(unet['conv_in.weight'].shape).toEqual([cfg.block_out_channels[0], cfg.in_channels, 3, 3]);
    expect(unet['conv_in.weight'].dtype).toBe('float32');
    const te = await loadStateDict(models('tiny-sd15', 'text_encoder'));  // base name "model" from config.json
    const tcfg = readJson(models('tiny-sd15', 'text_encoder', 'config.json'));
    expect(te['text_model.embeddings.token_embedding.weight'].shape).toEqual([tcfg.vocab_size, tcfg.hidden_size]);
  });

  it('reports a missing component folder as E_MODEL_NOT_FOUND', async () => {
    const e = await rejection(loadStateDict(models('tiny-sd15'), { component: 'nope' }));
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain(models('tiny-sd15', 'nope'));
  });

  describe('variants', () => {
    const dir = path.join(tmp, 'variant', 'vae');
    let reference: Record<string, unknown>;
    beforeAll(async () => {
      fs.mkdirSync(dir, { recursive: true });
      fs.copyFileSync(models('tiny-sd15', 'vae', 'config.json'), path.join(dir, 'config.json'));
      const tensors = await readSafetensors(models('tiny-sd15', 'vae', 'diffusion_pytorch_model.safetensors'));
      // The variant file holds the real weights; the default file a single marker tensor.
      await writeSafetensors(path.join(dir, 'diffusion_pytorch_model.fp16.safetensors'), tensors);
      await writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), { marker: { data: new Float32Array([1]), shape: [1] } });
      reference = await loadStateDict(models('tiny-sd15', 'vae'));
    });

    it("selects <base>.fp16.safetensors for variant 'fp16'", async () => {
      const sd = await loadStateDict(dir, { variant: 'fp16' });
      expect(Object.keys(sd).sort()).toEqual(Object.keys(reference).sort());
      expect(sd).toEqual(reference);
      const plain = await loadStateDict(dir);
      expect(Object.keys(plain)).toEqual(['marker']);
    });

    it('reports a missing variant as E_MODEL_NOT_FOUND naming the file and listing what exists', async () => {
      const e = await rejection(loadStateDict(dir, { variant: 'bf16' }));
      expect(e.code).toBe('E_MODEL_NOT_FOUND');
      expect(e.message).toContain(path.join(dir, 'diffusion_pytorch_model.bf16.safetensors'));
      expect(e.message).toContain('diffusion_pytorch_model.fp16.safetensors');
      expect(e.message).toContain('diffusion_pytorch_model.safetensors');
    });

    it('only variant weights present: the not-found message names the variant option that loads them', async () => {
      const only = path.join(tmp, 'variant-only', 'vae');
      fs.mkdirSync(only, { recursive: true });
      fs.copyFileSync(path.join(dir, 'config.json'), path.join(only, 'config.json'));
      fs.copyFileSync(path.join(dir, 'diffusion_pytorch_model.fp16.safetensors'), path.join(only, 'diffusion_pytorch_model.fp16.safetensors'));
      const e = await rejection(loadStateDict(only));
      expect(e.code).toBe('E_MODEL_NOT_FOUND');
      expect(e.message).toContain("pass variant: 'fp16'");
      expect(Object.keys(await loadStateDict(only, { variant: 'fp16' })).sort()).toEqual(Object.keys(reference).sort());
    });

    it('refuses a variant name that could escape the folder', async () => {
      const e = await rejection(loadStateDict(dir, { variant: '../x' }));
      expect(e.code).toBe('E_INVALID_ARGUMENT');
    });
  });

  describe('sharded weights', () => {
    const dir = path.join(tmp, 'sharded', 'vae');
    const write = (index: unknown) => fs.writeFileSync(path.join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify(index));
    let names: string[];
    let weightMap: Record<string, string>;
    beforeAll(async () => {
      fs.mkdirSync(dir, { recursive: true });
      fs.copyFileSync(models('tiny-sd15', 'vae', 'config.json'), path.join(dir, 'config.json'));
      const tensors = await readSafetensors(models('tiny-sd15', 'vae', 'diffusion_pytorch_model.safetensors'));
      names = Object.keys(tensors).sort();
      const half = Math.floor(names.length / 2);
      const shards = [names.slice(0, half), names.slice(half)];
      weightMap = {};
      for (let s = 0; s < 2; s++) {
        const file = `diffusion_pytorch_model-0000${s + 1}-of-00002.safetensors`;
        await writeSafetensors(path.join(dir, file), Object.fromEntries(shards[s].map((n) => [n, tensors[n]])));
        for (const n of shards[s]) weightMap[n] = file;
      }
    });

    it('loads every tensor through the index weight_map', async () => {
      write({ metadata: { total_size: 0 }, weight_map: weightMap });
      const sd = await loadStateDict(dir);
      expect(Object.keys(sd).sort()).toEqual(names);
      expect(sd).toEqual(await loadStateDict(models('tiny-sd15', 'vae')));
    });

    it('refuses an index that lies about a shard or points outside the folder', async () => {
      const first = names[0];
      write({ weight_map: { ...weightMap, [first]: weightMap[names[names.length - 1]] } });
      let e = await rejection(loadStateDict(dir));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toContain(first);
      write({ weight_map: { ...weightMap, [first]: '../../etc/passwd' } });
      e = await rejection(loadStateDict(dir));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toMatch(/is not a file name/);
      const { [first]: _dropped, ...partial } = weightMap;
      write({ weight_map: partial });
      e = await rejection(loadStateDict(dir));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toMatch(/does not list/);
      write({ weight_map: weightMap });
    });
  });
});

describe('pickle checkpoints are refused', () => {
  const expectPickleRefusal = (e: SdError, file: string) => {
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/execute arbitrary code/);
    expect(e.message).toMatch(/save_file/);                       // how to convert a single file
    expect(e.message).toMatch(/save_pretrained\(.*safe_serialization=True\)/);  // how to convert a folder
  };

  it('refuses a .ckpt single file', async () => {
    const p = path.join(tmp, 'model.ckpt');
    fs.writeFileSync(p, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0]));
    const e = await rejection(loadStateDict(p, { singleFile: true, configDir: models('tiny-sd15'), component: 'unet' }));
    expectPickleRefusal(e, p);
  });

  it('refuses a torch.save archive even when it is named .safetensors', async () => {
    const p = path.join(tmp, 'renamed.safetensors');
    fs.writeFileSync(p, Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(64)]));
    const e = await rejection(loadStateDict(p, { singleFile: true, configDir: models('tiny-sd15'), component: 'unet' }));
    expectPickleRefusal(e, p);
  });

  it('refuses a component folder holding only a .bin', async () => {
    const dir = path.join(tmp, 'pickle-folder', 'unet');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(models('tiny-sd15', 'unet', 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'diffusion_pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    const e = await rejection(loadStateDict(dir));
    expectPickleRefusal(e, path.join(dir, 'diffusion_pytorch_model.bin'));
  });

  it('refuses a transformers text_encoder folder holding only pytorch_model.fp16.bin, also when the variant is asked for', async () => {
    const dir = path.join(tmp, 'pickle-folder', 'text_encoder');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(models('tiny-sd15', 'text_encoder', 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'pytorch_model.fp16.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    for (const variant of ['fp16', undefined]) {
      const e = await rejection(loadStateDict(dir, { variant }));
      expectPickleRefusal(e, path.join(dir, 'pytorch_model.fp16.bin'));
    }
  });

  it('reports a folder with no weights at all as E_MODEL_NOT_FOUND listing its files', async () => {
    const dir = path.join(tmp, 'no-weights', 'unet');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(models('tiny-sd15', 'unet', 'config.json'), path.join(dir, 'config.json'));
    const e = await rejection(loadStateDict(dir));
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.message).toContain('diffusion_pytorch_model.safetensors');
    expect(e.message).toContain('config.json');
  });
});

describe('single-file (original LDM) checkpoints', () => {
  for (const model of ['tiny-sd15', 'tiny-sd2-v']) {
    it(`${model}.safetensors maps to exactly the tensors of the ${model} folder`, async () => {
      const result = await compareCheckpoints(models(`${model}.safetensors`), models(model), models(model));
      for (const component of ['unet', 'vae', 'text_encoder'] as const) {
        const c = result[component];
        const folder = await loadStateDict(models(model), { component });
        expect(c.missing, `${component} missing`).toEqual([]);
        expect(c.unexpected, `${component} unexpected`).toEqual([]);
        expect(c.mismatched, `${component} mismatched`).toEqual([]);
        expect(c.count).toBe(Object.keys(folder).length);
        expect(c.count).toBeGreaterThan(0);
        expect(c.maxAbsDiff, `${component} max abs diff`).toBe(0);
      }
    });
  }

  it('returns diffusers names and shapes from the configs (SD 1.x)', async () => {
    const opts = { singleFile: true, configDir: models('tiny-sd15') };
    const vae = await loadStateDict(models('tiny-sd15.safetensors'), { ...opts, component: 'vae' });
    const c = readJson(models('tiny-sd15', 'vae', 'config.json')).block_out_channels.at(-1);
    // LDM's 1x1 conv q/k/v/proj_out become Linear weights [C, C]
    for (const n of ['to_q', 'to_k', 'to_v', 'to_out.0'])
      expect(vae[`decoder.mid_block.attentions.0.${n}.weight`].shape).toEqual([c, c]);
    expect(vae['decoder.mid_block.attentions.0.group_norm.weight'].shape).toEqual([c]);
    const unet = await loadStateDict(models('tiny-sd15.safetensors'), { ...opts, component: 'unet' });
    expect(unet['time_embedding.linear_1.weight']).toBeDefined();
    expect(unet['down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight']).toBeDefined();
    expect(unet['up_blocks.0.upsamplers.0.conv.weight']).toBeDefined();
    const te = await loadStateDict(models('tiny-sd15.safetensors'), { ...opts, component: 'text_encoder' });
    expect(te['text_model.embeddings.position_ids']).toBeUndefined();  // known-unused buffer, skipped
  });

  it('splits the OpenCLIP in_proj into q/k/v (SD 2.x)', async () => {
    const te = await loadStateDict(models('tiny-sd2-v.safetensors'), { singleFile: true, configDir: models('tiny-sd2-v'), component: 'text_encoder' });
    const h = readJson(models('tiny-sd2-v', 'text_encoder', 'config.json')).hidden_size;
    for (const n of ['q_proj', 'k_proj', 'v_proj']) {
      expect(te[`text_model.encoder.layers.0.self_attn.${n}.weight`].shape).toEqual([h, h]);
      expect(te[`text_model.encoder.layers.0.self_attn.${n}.bias`].shape).toEqual([h]);
    }
  });

  describe('keys', () => {
    let sd15: Record<string, any>;
    let sd2: Record<string, any>;
    beforeAll(async () => {
      sd15 = await readSafetensors(models('tiny-sd15.safetensors'));
      sd2 = await readSafetensors(models('tiny-sd2-v.safetensors'));
    });
    const one = { data: new Float32Array([0.5]), shape: [1] };

    it('skips known-unused keys (EMA copies, schedule buffers, OpenCLIP extras) and still matches the folder', async () => {
      const p = path.join(tmp, 'sd15-extras.safetensors');
      await writeSafetensors(p, { ...sd15, 'model_ema.decay': one, 'model_ema.diffusion_modelconv_inweight': one, alphas_cumprod: { data: new Float32Array(4), shape: [4] } });
      const r = await compareCheckpoints(p, models('tiny-sd15'), models('tiny-sd15'));
      for (const c of Object.values(r)) expect([c.missing, c.unexpected, c.mismatched, c.maxAbsDiff]).toEqual([[], [], [], 0]);

      // SD 2: text_projection, logit_scale and the unused last resblock (index = num_hidden_layers)
      const layers = readJson(models('tiny-sd2-v', 'text_encoder', 'config.json')).num_hidden_layers;
      const block = `cond_stage_model.model.transformer.resblocks.${layers}`;
      const p2 = path.join(tmp, 'sd2-extras.safetensors');
      await writeSafetensors(p2, { ...sd2, 'cond_stage_model.model.text_projection': one, 'cond_stage_model.model.logit_scale': one, [`${block}.ln_1.weight`]: one });
      const r2 = await compareCheckpoints(p2, models('tiny-sd2-v'), models('tiny-sd2-v'));
      for (const c of Object.values(r2)) expect([c.missing, c.unexpected, c.mismatched, c.maxAbsDiff]).toEqual([[], [], [], 0]);
    });

    it('refuses keys that map to nothing, listing them', async () => {
      const p = path.join(tmp, 'sd15-unknown.safetensors');
      const extra = ['model.diffusion_model.input_blocks.1.0.in_layers.9.weight', 'model.diffusion_model.input_blocks.99.0.op.weight',
        'first_stage_model.encoder.down.0.block.7.conv1.weight', 'cond_stage_model.transformer.text_model.encoder.layers.40.mlp.fc1.weight',
        'something_else.weight'];
      await writeSafetensors(p, { ...sd15, ...Object.fromEntries(extra.map((k) => [k, one])) });
      const e = await rejection(loadStateDict(p, { singleFile: true, configDir: models('tiny-sd15'), component: 'unet' }));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toContain(`${extra.length} key(s)`);
      for (const k of extra) expect(e.message).toContain(k);
    });

    it('refuses an SD 2 file with one more OpenCLIP block than the unused last one', async () => {
      const layers = readJson(models('tiny-sd2-v', 'text_encoder', 'config.json')).num_hidden_layers;
      const p = path.join(tmp, 'sd2-extra-block.safetensors');
      const key = `cond_stage_model.model.transformer.resblocks.${layers + 1}.ln_1.weight`;
      await writeSafetensors(p, { ...sd2, [key]: one });
      const e = await rejection(loadStateDict(p, { singleFile: true, configDir: models('tiny-sd2-v'), component: 'unet' }));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toContain(key);
    });

    it('detects SDXL files (mapped: an incomplete one is E_BAD_CHECKPOINT) and refuses non-SD files as E_UNSUPPORTED_MODEL', async () => {
      const p = path.join(tmp, 'sdxl-like.safetensors');
      await writeSafetensors(p, { 'conditioner.embedders.0.transformer.text_model.final_layer_norm.weight': one, 'model.diffusion_model.out.0.weight': one });
      let e = await rejection(loadStateDict(p, { singleFile: true, configDir: models('tiny-sdxl'), component: 'unet' }));
      expect(e.code).toBe('E_BAD_CHECKPOINT');
      expect(e.message).toMatch(/incomplete Stable Diffusion XL checkpoint/);
      expect(e.message).toContain('vae (first_stage_model.*)');
      expect(e.message).toContain('text_encoder_2 (conditioner.embedders.1.model.*)');
      e = await rejection(loadStateDict(fixture('loras', 'tiny-sd15-kohya.safetensors'), { singleFile: true, configDir: models('tiny-sd15'), component: 'unet' }));
      expect(e.code).toBe('E_UNSUPPORTED_MODEL');
      expect(e.message).toContain('tiny-sd15-kohya.safetensors');
    });

    it('reports a missing checkpoint or config as E_MODEL_NOT_FOUND', async () => {
      let e = await rejection(loadStateDict(path.join(tmp, 'nope.safetensors'), { singleFile: true, configDir: models('tiny-sd15'), component: 'unet' }));
      expect(e.code).toBe('E_MODEL_NOT_FOUND');
      const cfg = path.join(tmp, 'configs-without-text-encoder');
      for (const c of ['unet', 'vae']) {
        fs.mkdirSync(path.join(cfg, c), { recursive: true });
        fs.copyFileSync(models('tiny-sd15', c, 'config.json'), path.join(cfg, c, 'config.json'));
      }
      e = await rejection(loadStateDict(models('tiny-sd15.safetensors'), { singleFile: true, configDir: cfg, component: 'unet' }));
      expect(e.code).toBe('E_MODEL_NOT_FOUND');
      expect(e.message).toContain(path.join(cfg, 'text_encoder', 'config.json'));
    });
  });
});
