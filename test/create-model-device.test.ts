/**
 * Issue 13: createModel's `device` option draws the random weights on that device ('cpu' default,
 * 'cuda', 'cuda:N'; scripts/gpu-check.sh makes the full SD 1.5 on the GPU). The CPU output is the
 * same with or without device: 'cpu' (test/create-model-presets.test.ts pins it further); CUDA in a
 * build or on a machine without it is E_DEVICE_UNAVAILABLE, like a pipeline's device.
 */
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createModel, buildInfo, DeviceUnavailableError, StableDiffusionPipeline } from '../lib/index.js';
import { addon } from '../lib/native.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-create-device-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const CUDA = buildInfo().cuda;
const files = ['text_encoder/model.safetensors', 'vae/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.safetensors'];

describe('createModel device', () => {
  it("device 'cpu' writes the same bytes as no device (the default)", async () => {
    const a = await createModel({ preset: 'sd15', scale: 'tiny', out: path.join(tmp, 'default'), seed: 3 });
    const b = await createModel({ preset: 'sd15', scale: 'tiny', out: path.join(tmp, 'cpu'), seed: 3, device: 'cpu' });
    expect(b.parameters).toEqual(a.parameters);
    for (const f of files) {
      expect(fs.readFileSync(path.join(b.path, f)).equals(fs.readFileSync(path.join(a.path, f))), f).toBe(true);
    }
    expect(fs.readFileSync(path.join(b.path, 'model_index.json'), 'utf8')).toBe(fs.readFileSync(path.join(a.path, 'model_index.json'), 'utf8'));
  }, 120_000);

  it('a malformed device is E_INVALID_ARGUMENT before anything is written', async () => {
    const out = path.join(tmp, 'bad');
    for (const device of ['gpu', 'cuda:', 'cuda:x', 'CPU', '']) {
      await expect(createModel({ preset: 'sd15', scale: 'tiny', out, device })).rejects.toMatchObject({
        code: 'E_INVALID_ARGUMENT', message: expect.stringContaining('device must be'),
      });
    }
    expect(fs.existsSync(out)).toBe(false);
  });

  it.skipIf(CUDA)("without CUDA, device 'cuda' is E_DEVICE_UNAVAILABLE (createModel and the binding)", async () => {
    for (const device of ['cuda', 'cuda:0', 'cuda:1']) {
      const err = await createModel({ preset: 'sd15', scale: 'tiny', out: path.join(tmp, `no-${device.replace(':', '')}`), device })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeviceUnavailableError);
      expect(err).toMatchObject({ code: 'E_DEVICE_UNAVAILABLE', message: expect.stringContaining('no CUDA') });
    }
    fs.mkdirSync(path.join(tmp, 'cfg'), { recursive: true });
    const cfgPath = path.join(tmp, 'cfg', 'config.json');
    fs.copyFileSync(path.join(tmp, 'default', 'vae', 'config.json'), cfgPath);
    await expect(addon().createRandomWeights({ component: 'vae', configPath: cfgPath, seed: 0, out: path.join(tmp, 'cfg', 'w.safetensors'), device: 'cuda' }))
      .rejects.toMatchObject({ code: 'E_DEVICE_UNAVAILABLE' });
    expect(fs.existsSync(path.join(tmp, 'cfg', 'w.safetensors'))).toBe(false);
  });

  it.runIf(CUDA)("with CUDA, device 'cuda' draws other values of the same shapes, reproducibly, and the model runs", async () => {
    const cpu = path.join(tmp, 'cpu');
    const g1 = await createModel({ preset: 'sd15', scale: 'tiny', out: path.join(tmp, 'cuda1'), seed: 3, device: 'cuda' });
    const g2 = await createModel({ preset: 'sd15', scale: 'tiny', out: path.join(tmp, 'cuda2'), seed: 3, device: 'cuda' });
    expect(g1.parameters).toEqual((await createModel({ preset: 'sd15', scale: 'tiny', out: cpu, seed: 3 })).parameters);
    for (const f of files) {
      expect(fs.readFileSync(path.join(g1.path, f)).equals(fs.readFileSync(path.join(g2.path, f))), `${f} reproducible`).toBe(true);
      expect(fs.readFileSync(path.join(g1.path, f)).equals(fs.readFileSync(path.join(cpu, f))), `${f} differs from the CPU draw`).toBe(false);
    }
    expect(JSON.parse(fs.readFileSync(path.join(g1.path, 'model_index.json'), 'utf8'))._sd_native.device).toBe('cuda');
    const pipe = await StableDiffusionPipeline.fromPretrained(g1.path);
    try {
      const r = await pipe.generate({ prompt: 'a cube', numInferenceSteps: 2, height: 64, width: 64, seed: 1 });
      expect(r.images[0].data.some((v) => v !== 0)).toBe(true);
    } finally {
      pipe.dispose();
    }
  }, 300_000);
});
