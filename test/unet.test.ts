/**
 * UNet2DConditionModel (native/core/models/unet_2d_condition) against the diffusers 0.30.3
 * goldens of tiny-sd15 (SD 1.x: conv proj, 8 heads), tiny-sd2-v (SD 2.x: linear proj, per-block
 * heads) and tiny-sdxl (text_time add_embedding, transformer_layers_per_block [1, 2]).
 */
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testingAddon as addon } from '../lib/native.js';
import { native, nativeSync, SdError } from '../lib/errors.js';
import { readSafetensors, writeSafetensors } from '../lib/safetensors.js';
import type { UNetHandle, TensorData, UNetForwardInputs } from '../types/native.js';
import { loadCases, loadGolden, allClose, maxAbsDiff, maxAbs, type GoldenCase } from './helpers/fixtures.js';

const ATOL = 1e-4;
const RTOL = 1e-4;
const MODELS = ['tiny-sd15', 'tiny-sd2-v', 'tiny-sdxl'] as const;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-unet-'));
const handles: UNetHandle[] = [];
afterAll(() => {
  for (const h of handles) addon().disposeUNet(h);
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function load(dir: string, options?: Parameters<ReturnType<typeof addon>['loadUNet']>[1]): Promise<UNetHandle> {
  const h = await native(() => addon().loadUNet(dir, options));
  handles.push(h);
  return h;
}
const forward = (h: UNetHandle, inputs: UNetForwardInputs): Promise<TensorData> =>
  native(() => addon().unetForward(h, inputs));

/** The inputs of one golden timestep entry. */
function inputsOf(c: GoldenCase, g: Record<string, TensorData<any>>, t: { timestep_tensor: string }): UNetForwardInputs {
  const inputs: UNetForwardInputs = { sample: g.sample, timestep: g[t.timestep_tensor], encoderHiddenStates: g.encoder_hidden_states };
  if (g.added_cond_text_embeds) {
    inputs.textEmbeds = g.added_cond_text_embeds;
    inputs.timeIds = g.added_cond_time_ids;
  }
  return inputs;
}

const unetCases = (model: string) => loadCases(model).cases.filter((c) => c.kind === 'unet');
const modelDir = (model: string) => path.join(loadCases(model).modelDir, 'unet');
const largest: Record<string, number> = {};

describe('UNet2DConditionModel vs diffusers goldens (float32, atol=rtol=1e-4)', () => {
  for (const model of MODELS) {
    for (const c of unetCases(model)) {
      it(`${model} ${c.name}: every timestep (0-d and [B])`, async () => {
        const h = await load(modelDir(model));
        const g = await loadGolden(model, c.file);
        let worst = 0;
        expect(c.params.timesteps.length).toBeGreaterThanOrEqual(3);
        for (const t of c.params.timesteps) {
          const out = await forward(h, inputsOf(c, g, t));
          const ref = g[t.output];
          expect(out.shape).toEqual(ref.shape);
          const r = allClose(out, ref, ATOL, RTOL);
          largest[`${model}/${c.name}/${t.output}`] = r.maxAbsDiff;
          worst = Math.max(worst, r.maxAbsDiff);
          expect(r.ok, `${t.output}: max|diff| ${r.maxAbsDiff} (max|ref| ${maxAbs(ref)})`).toBe(true);
        }
        console.log(`${model} ${c.name}: largest |diff| ${worst.toExponential(2)}`);
      });
    }
  }

  it('a timestep given as a JS number, or as float32, equals the int64 tensor', async () => {
    const c = unetCases('tiny-sd15').find((x) => x.name === 'unet_b2_8x8')!;
    const g = await loadGolden('tiny-sd15', c.file);
    const h = await load(modelDir('tiny-sd15'));
    const t = c.params.timesteps.find((x: any) => x.timestep === 500);
    const viaNumber = await forward(h, { ...inputsOf(c, g, t), timestep: 500 });
    const viaFloat = await forward(h, { ...inputsOf(c, g, t), timestep: { data: new Float32Array([500]), shape: [] } });
    expect(maxAbsDiff(viaNumber, g.out_t500)).toBeLessThan(ATOL);
    expect(maxAbsDiff(viaFloat, viaNumber)).toBe(0);
  });
});

describe('first UNet call of every pipeline golden (float32 Euler timesteps, CFG batches, 9-channel inpainting)', () => {
  // LoRA goldens are left out: their unet0_out includes the LoRA, which is not this module's job.
  for (const model of ['tiny-sd15', 'tiny-sd2-v', 'tiny-sdxl', 'tiny-sd15-inpaint', 'tiny-sd15-ti'] as const) {
    const { modelDir: dir, cases } = loadCases(model);
    const pipes = cases.filter((c) => c.kind === 'pipeline' && c.tensors.unet0_out);
    it(`${model}: ${pipes.length} pipeline cases`, async () => {
      expect(pipes.length).toBeGreaterThan(0);
      const h = await load(path.join(dir, 'unet'));
      for (const c of pipes) {
        const g = await loadGolden(model, c.file);
        const inputs: UNetForwardInputs = { sample: g.unet0_sample, timestep: g.unet0_timestep, encoderHiddenStates: g.unet0_encoder_hidden_states };
        if (g.unet0_added_text_embeds) {
          inputs.textEmbeds = g.unet0_added_text_embeds;
          inputs.timeIds = g.unet0_added_time_ids;
        }
        const out = await forward(h, inputs);
        const r = allClose(out, g.unet0_out, ATOL, RTOL);
        largest[`${model}/${c.name}/unet0_out`] = r.maxAbsDiff;
        expect(r.ok, `${c.name}: max|diff| ${r.maxAbsDiff}`).toBe(true);
      }
    });
  }
});

describe('attention options', () => {
  for (const model of ['tiny-sd15', 'tiny-sdxl'] as const) {
    it(`${model}: sliced attention ('auto', 'max', 3) equals the unsliced path`, async () => {
      const c = unetCases(model).find((x) => x.name === 'unet_b2_8x8')!;
      const g = await loadGolden(model, c.file);
      const h = await load(modelDir(model));
      const t = c.params.timesteps.find((x: any) => x.timestep === 500);
      const base = await forward(h, inputsOf(c, g, t));
      for (const sliceSize of ['auto', 'max', 3] as const) {
        expect(nativeSync(() => addon().unetSetAttention(h, { sliceSize })).sliceSize).toBe(sliceSize);
        const out = await forward(h, inputsOf(c, g, t));
        const d = maxAbsDiff(out, base);
        console.log(`${model} slice ${sliceSize}: max|diff| vs unsliced ${d.toExponential(2)}`);
        expect(d).toBeLessThanOrEqual(1e-5);
        expect(allClose(out, g.out_t500, ATOL, RTOL).ok).toBe(true);
      }
      const off = nativeSync(() => addon().unetSetAttention(h, { sliceSize: 0, sdpa: true }));
      expect(off.sliceSize).toBe(0);
      expect(off.sdpa).toBe(addon().buildInfo().sdpa);  // SDPA needs libtorch >= 2.0; else the math path
      const sdpa = await forward(h, inputsOf(c, g, t));
      expect(maxAbsDiff(sdpa, base)).toBeLessThanOrEqual(1e-5);
      expect(nativeSync(() => addon().unetSetAttention(h, { sdpa: false })).sdpa).toBe(false);
      const math = await forward(h, inputsOf(c, g, t));
      expect(maxAbsDiff(math, base)).toBeLessThanOrEqual(1e-5);
      // the default: SDPA for a float32 CPU model where libtorch has it (the faster kernel there)
      expect(nativeSync(() => addon().unetSetAttention(h, { sdpa: 'auto' })).sdpa).toBe(addon().buildInfo().sdpa);
    });
  }

  it('rejects a bad slice size with E_INVALID_ARGUMENT', async () => {
    const h = await load(modelDir('tiny-sd15'));
    for (const sliceSize of [-1, 1.5, 'half'] as any[]) {
      let err: any;
      try { nativeSync(() => addon().unetSetAttention(h, { sliceSize })); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(SdError);
      expect(err.code).toBe('E_INVALID_ARGUMENT');
      expect(err.message).toMatch(/sliceSize/);
    }
  });
});

describe('sizes that are not a multiple of the upsampling factor (forward_upsample_size)', () => {
  it('tiny-sd15 on a 7×9 and a 5×6 latent keeps the input size', async () => {
    const h = await load(modelDir('tiny-sd15'));
    const g = await loadGolden('tiny-sd15', 'unet_b1_16x16.safetensors');
    for (const [hh, ww] of [[7, 9], [5, 6]]) {
      const sample = { data: new Float32Array(4 * hh * ww).map((_, i) => Math.sin(i)), shape: [1, 4, hh, ww] };
      const out = await forward(h, { sample, timestep: 10, encoderHiddenStates: g.encoder_hidden_states });
      expect(out.shape).toEqual([1, 4, hh, ww]);
      expect(Array.from(out.data as Float32Array).every(Number.isFinite)).toBe(true);
    }
  });
});

describe('reduced precision on CPU', () => {
  const c = () => unetCases('tiny-sd15').find((x) => x.name === 'unet_b2_8x8')!;

  it('bfloat16 works within 5% of max|out| of float32 (about 2% seen)', async () => {
    const g = await loadGolden('tiny-sd15', c().file);
    const h = await load(modelDir('tiny-sd15'), { dtype: 'bfloat16' });
    for (const t of c().params.timesteps) {
      const out = await forward(h, inputsOf(c(), g, t));
      const ref = g[t.output];
      const rel = maxAbsDiff(out, ref) / maxAbs(ref);
      console.log(`bfloat16 ${t.output}: max|diff| / max|ref| = ${rel.toExponential(2)}`);
      expect(rel).toBeLessThan(0.05);
    }
    // 'auto' attention keeps the math path for bfloat16 on the CPU (SDPA is the slower kernel there)
    expect(nativeSync(() => addon().unetSetAttention(h, { sdpa: 'auto' })).sdpa).toBe(false);
    console.log(`CPU kernel quirks routed around: ${JSON.stringify(addon().buildInfo().cpuKernelQuirks)}`);
  });

  it('float16: works within 1% of max|out|, or is refused up front with E_UNSUPPORTED_MODEL', async () => {
    const g = await loadGolden('tiny-sd15', c().file);
    const r = await native(() => addon().loadUNet(modelDir('tiny-sd15'), { dtype: 'float16' })).then(
      (h) => ({ h }), (e) => ({ e }));
    if ('e' in r) {
      console.log(`float16 on CPU refused: ${(r.e as Error).message}`);
      expect(r.e).toBeInstanceOf(SdError);
      expect((r.e as SdError).code).toBe('E_UNSUPPORTED_MODEL');
      expect((r.e as SdError).message).toMatch(/float16 compute on cpu is not supported.*use float32 or bfloat16/);
    } else {
      handles.push(r.h);
      const t = c().params.timesteps[0];
      const out = await forward(r.h, inputsOf(c(), g, t));
      const rel = maxAbsDiff(out, g[t.output]) / maxAbs(g[t.output]);
      console.log(`float16 ${t.output}: max|diff| / max|ref| = ${rel.toExponential(2)}`);
      expect(rel).toBeLessThan(0.01);
    }
  });
});

describe('errors', () => {
  /** A copy of a tiny model's unet folder under /tmp, with config and tensors editable. */
  async function copyUNet(model: string, name: string,
    edit: { config?: (c: any) => void; tensors?: (t: Record<string, TensorData<any>>) => void }): Promise<string> {
    const src = modelDir(model);
    const dst = path.join(tmp, name);
    fs.mkdirSync(dst, { recursive: true });
    const config = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
    edit.config?.(config);
    fs.writeFileSync(path.join(dst, 'config.json'), JSON.stringify(config, null, 2));
    const weights = path.join(dst, 'diffusion_pytorch_model.safetensors');
    if (edit.tensors) {
      const t = await readSafetensors(path.join(src, 'diffusion_pytorch_model.safetensors'));
      edit.tensors(t);
      await writeSafetensors(weights, t);
    } else {
      fs.copyFileSync(path.join(src, 'diffusion_pytorch_model.safetensors'), weights);
    }
    return dst;
  }
  async function loadError(dir: string, options?: any): Promise<SdError> {
    const err = await native(() => addon().loadUNet(dir, options)).then((h) => { addon().disposeUNet(h); return undefined; }, (e) => e);
    expect(err).toBeInstanceOf(SdError);
    return err as SdError;
  }

  it('an unsupported down block type is E_UNSUPPORTED_MODEL naming field and value', async () => {
    const dir = await copyUNet('tiny-sd15', 'bad-block', { config: (c) => { c.down_block_types[1] = 'AttnDownBlock2D'; } });
    const err = await loadError(dir);
    expect(err.code).toBe('E_UNSUPPORTED_MODEL');
    expect(err.message).toContain('down_block_types');
    expect(err.message).toContain('AttnDownBlock2D');
    expect(err.message).toContain(path.join(dir, 'config.json'));
  });

  it('class embeddings and a set num_attention_heads are E_UNSUPPORTED_MODEL', async () => {
    const a = await loadError(await copyUNet('tiny-sd15', 'class-emb', { config: (c) => { c.class_embed_type = 'timestep'; } }));
    expect(a.code).toBe('E_UNSUPPORTED_MODEL');
    expect(a.message).toMatch(/class_embed_type.*timestep/);
    const b = await loadError(await copyUNet('tiny-sd15', 'heads', { config: (c) => { c.num_attention_heads = 8; } }));
    expect(b.code).toBe('E_UNSUPPORTED_MODEL');
    expect(b.message).toContain('num_attention_heads');
  });

  it('a malformed config field is E_BAD_CONFIG naming it', async () => {
    const err = await loadError(await copyUNet('tiny-sd15', 'bad-heads', { config: (c) => { c.attention_head_dim = [8, 8, 8]; } }));
    expect(err.code).toBe('E_BAD_CONFIG');
    expect(err.message).toMatch(/attention_head_dim.*3 entries, expected 2/);
  });

  it('a weight with the wrong shape is E_BAD_CHECKPOINT naming key and both shapes', async () => {
    const key = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';
    const dir = await copyUNet('tiny-sd15', 'bad-shape', {
      tensors: (t) => { expect(t[key].shape).toEqual([32, 32]); t[key] = { data: new Float32Array(32 * 16), shape: [32, 16] }; },
    });
    const err = await loadError(dir);
    expect(err.code).toBe('E_BAD_CHECKPOINT');
    expect(err.message).toContain(`"${key}"`);
    expect(err.message).toContain('[32, 16]');
    expect(err.message).toContain('[32, 32]');
  });

  it('a missing weight is E_BAD_CHECKPOINT naming it', async () => {
    const key = 'mid_block.resnets.1.conv2.bias';
    const err = await loadError(await copyUNet('tiny-sd15', 'missing', { tensors: (t) => { delete t[key]; } }));
    expect(err.code).toBe('E_BAD_CHECKPOINT');
    expect(err.message).toContain(`missing weight "${key}"`);
  });

  it('an unexpected extra weight is E_BAD_CHECKPOINT listing it', async () => {
    const dir = await copyUNet('tiny-sd15', 'extra', {
      tensors: (t) => { t['class_embedding.linear_1.weight'] = { data: new Float32Array(4), shape: [2, 2] }; },
    });
    const err = await loadError(dir);
    expect(err.code).toBe('E_BAD_CHECKPOINT');
    expect(err.message).toMatch(/1 weight\(s\) that the config does not use: class_embedding\.linear_1\.weight/);
  });

  it('a missing folder or weights file is E_MODEL_NOT_FOUND; a .bin-only folder is refused', async () => {
    expect((await loadError(path.join(tmp, 'nope'))).code).toBe('E_MODEL_NOT_FOUND');
    const dir = await copyUNet('tiny-sd15', 'variant', {});
    const v = await loadError(dir, { variant: 'fp16' });
    expect(v.code).toBe('E_MODEL_NOT_FOUND');
    expect(v.message).toContain('diffusion_pytorch_model.fp16.safetensors');
    fs.renameSync(path.join(dir, 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.bin'));
    const b = await loadError(dir);
    expect(b.code).toBe('E_BAD_CHECKPOINT');
    expect(b.message).toMatch(/pickle/);
  });

  it('a variant file loads (diffusion_pytorch_model.<variant>.safetensors)', async () => {
    const dir = await copyUNet('tiny-sd15', 'variant-ok', {});
    fs.renameSync(path.join(dir, 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.fp16.safetensors'));
    const h = await load(dir, { variant: 'fp16' });
    const c = unetCases('tiny-sd15').find((x) => x.name === 'unet_b2_8x8')!;
    const g = await loadGolden('tiny-sd15', c.file);
    const out = await forward(h, inputsOf(c, g, c.params.timesteps[0]));
    expect(allClose(out, g[c.params.timesteps[0].output], ATOL, RTOL).ok).toBe(true);
  });

  it('bad forward inputs are E_INVALID_ARGUMENT; SDXL without added conditions too', async () => {
    const h = await load(modelDir('tiny-sd15'));
    const g = await loadGolden('tiny-sd15', 'unet_b2_8x8.safetensors');
    const bad: Array<[Partial<UNetForwardInputs>, RegExp]> = [
      [{ sample: { data: new Float32Array(3 * 64), shape: [1, 3, 8, 8] } }, /sample must be \[B, 4, h, w\]/],
      [{ timestep: { data: new BigInt64Array(3), shape: [3] } }, /timestep must be 0-d, \[1\] or \[2\]/],
      [{ encoderHiddenStates: { data: new Float32Array(2 * 77 * 16), shape: [2, 77, 16] } }, /cross_attention_dim is 32/],
    ];
    for (const [patch, msg] of bad) {
      const err = await forward(h, { sample: g.sample, timestep: 1, encoderHiddenStates: g.encoder_hidden_states, ...patch } as UNetForwardInputs)
        .catch((e) => e);
      expect(err).toBeInstanceOf(SdError);
      expect(err.code).toBe('E_INVALID_ARGUMENT');
      expect(err.message).toMatch(msg);
    }
    const x = await load(modelDir('tiny-sdxl'));
    const gx = await loadGolden('tiny-sdxl', 'unet_b2_8x8.safetensors');
    const err = await forward(x, { sample: gx.sample, timestep: 1, encoderHiddenStates: gx.encoder_hidden_states }).catch((e) => e);
    expect(err.code).toBe('E_INVALID_ARGUMENT');
    expect(err.message).toMatch(/text_time.*text_embeds and time_ids/);
  });

  it('bad load options are E_INVALID_ARGUMENT; CUDA without CUDA is E_DEVICE_UNAVAILABLE', async () => {
    const d = await loadError(modelDir('tiny-sd15'), { dtype: 'float8' });
    expect(d.code).toBe('E_INVALID_ARGUMENT');
    expect(d.message).toMatch(/dtype must be 'float32', 'float16' or 'bfloat16', got 'float8'/);
    const v = await loadError(modelDir('tiny-sd15'), { device: 'tpu' });
    expect(v.code).toBe('E_INVALID_ARGUMENT');
    if (!addon().buildInfo().cuda) {
      const c = await loadError(modelDir('tiny-sd15'), { device: 'cuda' });
      expect(c.code).toBe('E_DEVICE_UNAVAILABLE');
    }
  });

  it('a disposed UNet is E_DISPOSED', async () => {
    const h = await native(() => addon().loadUNet(modelDir('tiny-sd15')));
    addon().disposeUNet(h);
    const g = await loadGolden('tiny-sd15', 'unet_b2_8x8.safetensors');
    let err: any;
    try { await forward(h, { sample: g.sample, timestep: 1, encoderHiddenStates: g.encoder_hidden_states }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(SdError);
    expect(err.code).toBe('E_DISPOSED');
  });
});

afterAll(() => {
  const rows = Object.entries(largest).map(([k, v]) => `${k}: ${v.toExponential(2)}`);
  if (rows.length) console.log('largest |diff| per golden output:\n' + rows.join('\n'));
});
