/**
 * LoRA and textual inversion against goldens/tiny-sd15-lora and goldens/tiny-sd15-ti
 * (fixtures/README.md "Extension"): fused weight deltas, pipelines at each LoRA scale from the
 * kohya and the diffusers file, load/unload and fuse/unfuse leaving the pipeline bit-identical,
 * errors for foreign keys and shapes; textual inversion from the A1111 and the diffusers file.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StableDiffusionPipeline, writeSafetensors, extractLoraTags, maybeConvertPrompt } from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';
import { goldenGenerateOptions, loadCases, loadGolden, maxAbs, maxAbsDiff, fixture, uint8Report } from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

const handle = (p: StableDiffusionPipeline) => (p as any).model.handle;
const weightOf = (p: StableDiffusionPipeline, component: 'unet' | 'text_encoder', name: string): Promise<TensorData> =>
  addon().pipelineWeight(handle(p), component, name);

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

const largest: Record<string, number> = {};
const note = (k: string, v: number) => { largest[k] = Math.max(largest[k] ?? 0, v); };

const lora = loadCases('tiny-sd15-lora');
const loraFiles = {
  kohya: fixture('loras', 'tiny-sd15-kohya.safetensors'),
  diffusers: fixture('loras', 'tiny-sd15-diffusers.safetensors'),
};

describe('LoRA: tiny-sd15', () => {
  let pipe: StableDiffusionPipeline;
  let tmp: string;
  beforeAll(async () => {
    pipe = await StableDiffusionPipeline.fromPretrained(lora.modelDir);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-lora-'));
  });
  afterAll(() => {
    pipe?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
    console.log('largest errors', largest);
  });

  it('loads both files onto the same 102 modules (72 UNet, 30 text encoder)', async () => {
    const k = await pipe.loadLoraWeights(loraFiles.kohya, { adapterName: 'kohya' });
    const d = await pipe.loadLoraWeights(loraFiles.diffusers, { adapterName: 'diffusers' });
    expect(k).toEqual({ adapter: 'kohya', unetModules: 72, textEncoderModules: 30, textEncoder2Modules: 0 });
    expect(d).toEqual({ adapter: 'diffusers', unetModules: 72, textEncoderModules: 30, textEncoder2Modules: 0 });
    expect(await pipe.getAdapters()).toEqual(['kohya', 'diffusers']);
    await expect(pipe.loadLoraWeights(loraFiles.kohya, { adapterName: 'kohya' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await pipe.unloadLoraWeights();
    expect(await pipe.getAdapters()).toEqual([]);
  });

  it('lora_merge: fuseLora gives W + s·(alpha/rank)·(up @ down) for the three layers; unfuseLora restores W bit-exactly', async () => {
    const c = lora.cases.find((x) => x.kind === 'lora_merge')!;
    const g = await loadGolden('tiny-sd15-lora', c.file);
    await pipe.loadLoraWeights(loraFiles.kohya, { adapterName: 'm' });
    for (const [tag, layer] of Object.entries<any>(c.params.layers)) {
      const name = `${layer.module}.weight`;
      const base = await weightOf(pipe, layer.component, name);
      expect(maxAbsDiff(base, g[`${tag}_weight_base`])).toBe(0);
      for (const [s, suffix] of [[1, 's1'], [0.6, 's0p6']] as const) {
        expect(await pipe.fuseLora({ loraScale: s })).toBe(102);
        const fused = await weightOf(pipe, layer.component, name);
        const err = maxAbsDiff(fused, g[`${tag}_weight_fused_${suffix}`]);
        note('lora_merge fused weight', err);
        expect(err, `${tag} fused at ${s}`).toBeLessThanOrEqual(1e-6);
        expect(await pipe.unfuseLora()).toBe(102);
        const restored = await weightOf(pipe, layer.component, name);
        expect(maxAbsDiff(restored, base)).toBe(0);
      }
    }
    await pipe.unloadLoraWeights();
  });

  for (const c of lora.cases.filter((x) => x.kind === 'pipeline')) {
    it(`${c.name}: kohya and diffusers files give diffusers' latents and pixels`, async () => {
      const p = c.params;
      const g = await loadGolden('tiny-sd15-lora', c.file);
      pipe.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
      const opts = goldenGenerateOptions(p, g);
      for (const kind of ['kohya', 'diffusers'] as const) {
        await pipe.loadLoraWeights(loraFiles[kind], { adapterName: kind });
        try {
          const lat = await pipe.generate({ ...opts, outputType: 'latent' });
          const rel = maxAbsDiff(lat.latents!, g.final_latents) / maxAbs(g.final_latents);
          note(`${c.name} final latents rel (${kind})`, rel);
          expect(rel, `${kind}: final latents relative error ${rel}`).toBeLessThan(1e-4);
          if (kind === 'kohya') {
            const out = await pipe.generate(opts);
            const r = uint8Report(out.images[0].data, g.image_uint8);
            note(`${c.name} uint8 fraction off`, r.fraction);
            expect(r.worst).toBeLessThanOrEqual(1);
            expect(r.fraction).toBeLessThan(0.01);
          }
        } finally {
          await pipe.unloadLoraWeights();
        }
      }
    });
  }

  it('load → generate → unload, and fuse → unfuse, leave the images bit-identical', async () => {
    pipe.setScheduler('DDIMScheduler');
    const opts = { prompt: 'a red car', negativePrompt: 'blurry', numInferenceSteps: 2, height: 32, width: 32, seed: 7 };
    const before = (await pipe.generate(opts)).images[0].data;
    await pipe.loadLoraWeights(loraFiles.kohya);
    const withLora = (await pipe.generate(opts)).images[0].data;
    expect(sameBytes(withLora, before)).toBe(false);
    const zero = (await pipe.generate({ ...opts, loraScale: 0 })).images[0].data;
    expect(sameBytes(zero, before)).toBe(true); // scale 0 adds exact zeros
    await pipe.fuseLora({ loraScale: 1 });
    const fused = (await pipe.generate(opts)).images[0].data;
    expect(sameBytes(fused, before)).toBe(false);
    await pipe.unfuseLora();
    expect(sameBytes((await pipe.generate(opts)).images[0].data, withLora)).toBe(true);
    await pipe.unloadLoraWeights();
    expect(sameBytes((await pipe.generate(opts)).images[0].data, before)).toBe(true);
  });

  it('setAdapters: weight w at scale 1 equals weight 1 at loraScale w; inactive adapters do nothing', async () => {
    const opts = { prompt: 'a red car', negativePrompt: 'blurry', numInferenceSteps: 2, height: 32, width: 32, seed: 3, outputType: 'latent' as const };
    const base = await pipe.generate(opts);
    await pipe.loadLoraWeights(loraFiles.kohya, { adapterName: 'a' });
    const scaled = await pipe.generate({ ...opts, loraScale: 0.5 });
    await pipe.setAdapters(['a'], [0.5]);
    const weighted = await pipe.generate(opts);
    expect(maxAbsDiff(weighted.latents!, scaled.latents!)).toBeLessThan(1e-6);
    await pipe.loadLoraWeights(loraFiles.diffusers, { adapterName: 'b' });
    await pipe.setAdapters(['b'], [0]);
    expect(maxAbsDiff((await pipe.generate(opts)).latents!, base.latents!)).toBe(0);
    await expect(pipe.setAdapters(['nope'])).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await pipe.unloadLoraWeights();
  });

  it('keys that match no module are E_BAD_CHECKPOINT listing them; nothing is loaded', async () => {
    const f = path.join(tmp, 'foreign.safetensors');
    const t = (shape: number[]) => ({ data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01), shape });
    await writeSafetensors(f, {
      'lora_unet_mid_block_attentions_0_proj_in.lora_down.weight': t([4, 64, 1, 1]),
      'lora_unet_mid_block_attentions_0_proj_in.lora_up.weight': t([64, 4, 1, 1]),
      'lora_unet_input_blocks_4_1_proj_in.lora_down.weight': t([4, 64]),
      'lora_unet_input_blocks_4_1_proj_in.lora_up.weight': t([64, 4]),
      'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': t([4, 32]),
      'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': t([37, 4]),
    });
    const e = await pipe.loadLoraWeights(f).catch((x) => x);
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain('lora_unet_input_blocks_4_1_proj_in.lora_down.weight');
    expect(e.message).toContain('lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight');
    expect(e.message).toContain('2 LoRA keys match no');
    expect(await pipe.getAdapters()).toEqual([]);

    const g = path.join(tmp, 'unknown-form.safetensors');
    await writeSafetensors(g, { 'lora_unet_mid_block_attentions_0_proj_in.hada_w1_a': t([4, 4]) });
    const e2 = await pipe.loadLoraWeights(g).catch((x) => x);
    expect(e2.code).toBe('E_BAD_CHECKPOINT');
    expect(e2.message).toContain('hada_w1_a');
  });

  it('a shape mismatch is E_BAD_CHECKPOINT naming the key and both shapes', async () => {
    const f = path.join(tmp, 'sdxl-ish.safetensors');
    const t = (shape: number[]) => ({ data: new Float32Array(shape.reduce((a, b) => a * b, 1)), shape });
    await writeSafetensors(f, {
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight': t([4, 768]),
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight': t([64, 4]),
    });
    const e = await pipe.loadLoraWeights(f).catch((x) => x);
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain('unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight');
    expect(e.message).toContain('[4, 768]');
    expect(e.message).toContain('[4, 32]');
    expect(await pipe.getAdapters()).toEqual([]);
  });

  it('<lora:name:weight> tags with loraDir apply the file for that call only', async () => {
    pipe.setScheduler('DDIMScheduler');
    fs.copyFileSync(loraFiles.kohya, path.join(tmp, 'tiny.safetensors'));
    const opts = { negativePrompt: 'blurry', numInferenceSteps: 2, height: 32, width: 32, seed: 5, outputType: 'latent' as const };
    const base = await pipe.generate({ ...opts, prompt: 'a red car' });
    const tagged = await pipe.generate({ ...opts, prompt: 'a red car <lora:tiny:0.6>', loraDir: tmp });
    expect(await pipe.getAdapters()).toEqual(['tiny']);
    await pipe.setAdapters([]);
    await pipe.loadLoraWeights(loraFiles.kohya, { adapterName: 'same' });
    const byScale = await pipe.generate({ ...opts, prompt: 'a red car', loraScale: 0.6 });
    expect(maxAbsDiff(tagged.latents!, byScale.latents!)).toBe(0);
    // the tag's adapter was switched off again after its call; 'same' stayed active
    await pipe.setAdapters([]);
    expect(maxAbsDiff((await pipe.generate({ ...opts, prompt: 'a red car' })).latents!, base.latents!)).toBe(0);
    // without loraDir a tag is plain prompt text
    const plain = await pipe.generate({ ...opts, prompt: 'a red car <lora:tiny:0.6>' });
    expect(maxAbsDiff(plain.latents!, base.latents!)).toBeGreaterThan(0);
    await expect(pipe.generate({ ...opts, prompt: 'x <lora:missing:1>', loraDir: tmp })).rejects.toMatchObject({ code: 'E_MODEL_NOT_FOUND' });
    await pipe.unloadLoraWeights();
  });

  it('a 3×3 conv LoRA (resnet conv1) and a Linear LoRA: unfused output equals the fused weights', async () => {
    const conv = await weightOf(pipe, 'unet', 'down_blocks.0.resnets.0.conv1.weight'); // [out, in, 3, 3]
    const [out, inCh] = conv.shape;
    const r = 2;
    let seed = 1;
    const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => { seed = (seed * 16807) % 2147483647; return (seed / 2147483647 - 0.5) * s; });
    const f = path.join(tmp, 'conv3.safetensors');
    await writeSafetensors(f, {
      'lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight': { data: rnd(r * inCh * 9, 0.2), shape: [r, inCh, 3, 3] },
      'lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight': { data: rnd(out * r, 0.2), shape: [out, r, 1, 1] },
      'lora_unet_down_blocks_0_resnets_0_conv1.alpha': { data: Float32Array.of(1), shape: [] },
      'lora_unet_time_embedding_linear_1.lora_down.weight': { data: rnd(r * 32, 0.2), shape: [r, 32] },
      'lora_unet_time_embedding_linear_1.lora_up.weight': { data: rnd(128 * r, 0.2), shape: [128, r] },
    });
    const base = await weightOf(pipe, 'unet', 'time_embedding.linear_1.weight');
    expect(base.shape).toEqual([128, 32]);
    expect(await pipe.loadLoraWeights(f)).toMatchObject({ unetModules: 2, textEncoderModules: 0 });
    const opts = { prompt: 'a red car', negativePrompt: 'blurry', numInferenceSteps: 2, height: 32, width: 32, seed: 9, outputType: 'latent' as const };
    const unfused = await pipe.generate(opts);
    await pipe.fuseLora();
    const fused = await pipe.generate(opts);
    await pipe.unloadLoraWeights();
    const plain = await pipe.generate(opts);
    const err = maxAbsDiff(fused.latents!, unfused.latents!) / maxAbs(unfused.latents!);
    note('3x3 conv LoRA fused vs unfused rel', err);
    expect(err).toBeLessThan(1e-5);
    expect(maxAbsDiff(plain.latents!, unfused.latents!)).toBeGreaterThan(1e-4);
  });

  it('bad arguments', async () => {
    expect(() => pipe.loadLoraWeights('')).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => pipe.loadLoraWeights(loraFiles.kohya, { weight: NaN })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    await expect(pipe.loadLoraWeights(path.join(tmp, 'missing.safetensors'))).rejects.toMatchObject({ code: 'E_MODEL_NOT_FOUND' });
    await expect(pipe.generate({ prompt: 'x', loraScale: Infinity } as any)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});

describe('A1111 <lora:name:weight> tags', () => {
  it('are removed from the prompt and returned with their weights', () => {
    expect(extractLoraTags('a cat <lora:pixel:0.7>, <lora:style> sitting')).toEqual({
      prompt: 'a cat ,  sitting',
      tags: [{ name: 'pixel', weight: 0.7 }, { name: 'style', weight: 1 }],
    });
    expect(() => extractLoraTags('<lora:x:abc>')).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});

const ti = loadCases('tiny-sd15-ti');

describe('textual inversion: tiny-sd15', () => {
  const pipes: StableDiffusionPipeline[] = [];
  afterAll(() => { for (const p of pipes) p.dispose(); });

  const c = ti.cases.find((x) => x.name === 'ti_pipe_ddim')!;
  const files = {
    diffusers: { file: path.resolve(fixture('goldens', 'tiny-sd15-ti'), c.params.ti_file_diffusers), token: undefined },
    a1111: { file: path.resolve(fixture('goldens', 'tiny-sd15-ti'), c.params.ti_file_a1111), token: c.params.token },
  };
  for (const [kind, { file, token }] of Object.entries(files)) {
    it(`ti_pipe_ddim with the ${kind} file: tokens, prompt rewrite, latents and pixels`, async () => {
      const pipe = await StableDiffusionPipeline.fromPretrained(ti.modelDir);
      pipes.push(pipe);
      const tokens = await pipe.loadTextualInversion(file, token ? { token } : undefined);
      expect(tokens).toEqual(Object.keys(c.params.added_tokens));
      const tok = (pipe as any).model.tokenizers[0];
      expect(tokens.map((t) => tok.tokenToId(t))).toEqual(Object.values(c.params.added_tokens));
      expect(maybeConvertPrompt(tok, c.params.prompt)).toBe(c.params.prompt_after_maybe_convert_prompt);
      const g = await loadGolden('tiny-sd15-ti', c.file);
      pipe.setScheduler(c.params.scheduler);
      const opts = goldenGenerateOptions(c.params, g);
      const lat = await pipe.generate({ ...opts, outputType: 'latent' });
      const rel = maxAbsDiff(lat.latents!, g.final_latents) / maxAbs(g.final_latents);
      console.log(`ti_pipe_ddim (${kind}) final latents rel err ${rel}`);
      expect(rel).toBeLessThan(1e-4);
      const out = await pipe.generate(opts);
      const r = uint8Report(out.images[0].data, g.image_uint8);
      expect(r.worst).toBeLessThanOrEqual(1);
      expect(r.fraction).toBeLessThan(0.01);
      await expect(pipe.loadTextualInversion(file, token ? { token } : undefined)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    });
  }

  it('an embedding of the wrong width is E_BAD_CHECKPOINT and leaves the tokenizer alone', async () => {
    const pipe = pipes[0] ?? await StableDiffusionPipeline.fromPretrained(ti.modelDir);
    if (!pipes.includes(pipe)) pipes.push(pipe);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-ti-'));
    const f = path.join(tmp, 'wide.safetensors');
    await writeSafetensors(f, { emb_params: { data: new Float32Array(2 * 768), shape: [2, 768] } });
    const tok = (pipe as any).model.tokenizers[0];
    const before = tok.length;
    const e = await pipe.loadTextualInversion(f, { token: '<wide>' }).catch((x) => x);
    fs.rmSync(tmp, { recursive: true, force: true });
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain('768');
    expect(e.message).toContain('32');
    expect(tok.length).toBe(before);
    expect(tok.tokenToId('<wide>')).toBeUndefined();
  });
});
