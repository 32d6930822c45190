/**
 * create-model presets sd21 and sdxl: the full configs carry the real architectures' numbers
 * (SD 2.1: OpenCLIP-H, per-block heads, v-prediction; SDXL base 1.0: two text encoders,
 * text_time conditioning), and the tiny presets load and run in their pipelines.
 */
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  StableDiffusionPipeline, StableDiffusionXLPipeline, createModel, CLIPTokenizer,
} from '../lib/index.js';
import { presetConfigs } from '../lib/create-model.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-presets-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('full preset configs', () => {
  it('sd21 is SD 2.1-768-v', () => {
    const c = presetConfigs('sd21', 'full');
    expect(c.unet).toMatchObject({
      attention_head_dim: [5, 10, 20, 20], block_out_channels: [320, 640, 1280, 1280], cross_attention_dim: 1024,
      use_linear_projection: true, sample_size: 96,
    });
    expect(c.textEncoder).toMatchObject({ hidden_size: 1024, num_hidden_layers: 23, hidden_act: 'gelu', num_attention_heads: 16, intermediate_size: 4096 });
    expect(c.scheduler).toMatchObject({ _class_name: 'DDIMScheduler', prediction_type: 'v_prediction' });
    expect(c.vae).toMatchObject({ scaling_factor: 0.18215 });
  });

  it('sdxl is SDXL base 1.0', () => {
    const c = presetConfigs('sdxl', 'full');
    expect(c.unet).toMatchObject({
      block_out_channels: [320, 640, 1280], transformer_layers_per_block: [1, 2, 10], attention_head_dim: [5, 10, 20],
      cross_attention_dim: 2048, addition_embed_type: 'text_time', addition_time_embed_dim: 256,
      projection_class_embeddings_input_dim: 2816, use_linear_projection: true, sample_size: 128,
      down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
      up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
    });
    expect(c.textEncoder).toMatchObject({ hidden_size: 768, num_hidden_layers: 12, hidden_act: 'quick_gelu' });
    expect(c.textEncoder2).toMatchObject({
      architectures: ['CLIPTextModelWithProjection'], hidden_size: 1280, num_hidden_layers: 32, hidden_act: 'gelu',
      projection_dim: 1280, num_attention_heads: 20, intermediate_size: 5120,
    });
    expect(c.vae).toMatchObject({ scaling_factor: 0.13025, force_upcast: true, block_out_channels: [128, 256, 512, 512] });
    expect(c.scheduler).toMatchObject({ _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'leading' });
  });

  it('rejects an unknown preset', async () => {
    await expect(createModel({ preset: 'sd3' as any, scale: 'tiny', out: path.join(tmp, 'x') }))
      .rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringContaining('sdxl') });
  });
});

describe('tiny presets run', () => {
  it('sd21 tiny: an SD 2.x pipeline with a "!"-padding tokenizer', async () => {
    const dir = path.join(tmp, 'sd21');
    const r = await createModel({ preset: 'sd21', scale: 'tiny', out: dir, seed: 1 });
    expect(Object.keys(r.parameters)).toEqual(['text_encoder', 'vae', 'unet']);
    const tok = await CLIPTokenizer.fromPretrained(path.join(dir, 'tokenizer'));
    expect(tok.encode('a').at(-1)).toBe(0); // padded with "!"
    await using pipe = await StableDiffusionPipeline.fromPretrained(dir);
    expect(pipe.info.family).toBe('sd2');
    expect(pipe.scheduler.config.prediction_type).toBe('v_prediction');
    const out = await pipe.generate({ prompt: 'a cat', numInferenceSteps: 2, height: 32, width: 32, seed: 1 });
    expect(out.images[0].width).toBe(32);
  });

  it('sdxl tiny: loads in StableDiffusionXLPipeline and generates', async () => {
    const dir = path.join(tmp, 'sdxl');
    const r = await createModel({ preset: 'sdxl', scale: 'tiny', out: dir, seed: 2 });
    expect(Object.keys(r.parameters)).toEqual(['text_encoder', 'text_encoder_2', 'vae', 'unet']);
    const tok2 = await CLIPTokenizer.fromPretrained(path.join(dir, 'tokenizer_2'));
    expect(tok2.encode('a').at(-1)).toBe(0);
    await using pipe = await StableDiffusionXLPipeline.fromPretrained(dir);
    expect(pipe.info.family).toBe('sdxl');
    const out = await pipe.generate({ prompt: 'a cat', numInferenceSteps: 2, height: 32, width: 32, seed: 1 });
    expect(out.images[0].width).toBe(32);
    expect(out.timesteps.length).toBe(2);
  });
});

describe('CLI with the sdxl preset', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const cli = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });

  it('create-model --preset sdxl, then generate and info pick the SDXL pipeline', async () => {
    const dir = path.join(tmp, 'cli-sdxl');
    const made = await cli('create-model', '--preset', 'sdxl', '--scale', 'tiny', '-o', dir);
    expect(made.code, made.stderr).toBe(0);
    expect(fs.existsSync(path.join(dir, 'text_encoder_2', 'model.safetensors'))).toBe(true);
    const out = path.join(tmp, 'cli-sdxl.png');
    const gen = await cli('generate', '-m', dir, '-p', 'a cat', '--steps', '2', '--width', '32', '--height', '32', '--seed', '1', '-o', out, '--no-progress');
    expect(gen.code, gen.stderr).toBe(0);
    expect(gen.stderr).toContain('StableDiffusionXLPipeline (sdxl)');
    expect(fs.statSync(out).size).toBeGreaterThan(100);
    const info = await cli('info', dir, '--json');
    expect(info.code, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout).family).toBe('sdxl');
  }, 240_000);
});
