/**
 * Only regular files are opened (issue 19, reliability): a named pipe (FIFO) where a weight,
 * config, tokenizer, LoRA or embedding file is expected is refused up front with a typed error
 * naming the path — promptly, since opening or reading a FIFO with no writer blocks forever —
 * and the next normal call works.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { CLIPTokenizer, SdError, StableDiffusionPipeline, readSafetensors, readSafetensorsHeader } from '../lib/index.js';
import { native } from '../lib/errors.js';
import { testingAddon as addon } from '../lib/native.js';
import { fixture } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-fifo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const fifo = path.join(tmp, 'pipe.safetensors');
const MODEL = fixture('models', 'tiny-sd15');

/** A copy of `src` with symlinks to its files, except `replaced`, which is a FIFO. */
function withFifo(src: string, replaced: string, name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(src)) {
    if (f !== replaced) fs.symlinkSync(path.join(src, f), path.join(dir, f));
  }
  execFileSync('mkfifo', [path.join(dir, replaced)]);
  return dir;
}

/** Awaits `p`, which must reject within a second with an SdError of one of `codes` naming `where`. */
async function refusedPromptly(p: () => Promise<unknown>, codes: string[], where: string): Promise<void> {
  const t0 = performance.now();
  const e = await p().then(() => undefined, (err) => err);
  const ms = performance.now() - t0;
  expect(e).toBeInstanceOf(SdError);
  expect(codes).toContain((e as SdError).code);
  expect((e as SdError).message).toContain(where);
  expect((e as SdError).message).toMatch(/named pipe|not a regular file/);
  expect(ms).toBeLessThan(1000);
}

describe('non-regular files are refused before opening', () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => {
    execFileSync('mkfifo', [fifo]);
    pipe = await StableDiffusionPipeline.fromPretrained(MODEL);
  });
  afterAll(() => pipe?.dispose());

  it('safetensors (header and tensors)', async () => {
    await refusedPromptly(() => readSafetensorsHeader(fifo), ['E_BAD_CHECKPOINT'], fifo);
    await refusedPromptly(() => readSafetensors(fifo), ['E_BAD_CHECKPOINT'], fifo);
    const h = await readSafetensorsHeader(fixture('goldens', 'tiny-sd15', 'vae.safetensors'));
    expect(Object.keys(h.tensors).length).toBeGreaterThan(0);
  });

  it('a component config.json and its weights', async () => {
    const cfgDir = withFifo(path.join(MODEL, 'unet'), 'config.json', 'unet-config');
    await refusedPromptly(() => native(() => addon().loadUNet(cfgDir)), ['E_BAD_CONFIG'], path.join(cfgDir, 'config.json'));
    const wDir = withFifo(path.join(MODEL, 'unet'), 'diffusion_pytorch_model.safetensors', 'unet-weights');
    await refusedPromptly(() => native(() => addon().loadUNet(wDir)), ['E_BAD_CHECKPOINT'], 'diffusion_pytorch_model.safetensors');
    const h = await native(() => addon().loadUNet(path.join(MODEL, 'unet')));
    addon().disposeUNet(h);
  });

  it('tokenizer files (vocab.json, merges.txt, tokenizer_config.json)', async () => {
    for (const f of ['vocab.json', 'merges.txt', 'tokenizer_config.json']) {
      const dir = withFifo(path.join(MODEL, 'tokenizer'), f, `tok-${f}`);
      await refusedPromptly(() => CLIPTokenizer.fromPretrained(dir), ['E_BAD_CONFIG'], path.join(dir, f));
    }
    const tok = await CLIPTokenizer.fromPretrained(path.join(MODEL, 'tokenizer'));
    expect(tok.encode('a photo')[0]).toBe(tok.bosTokenId); // reads its real files as before
  });

  it('LoRA and textual-inversion files', async () => {
    await refusedPromptly(() => pipe.loadLoraWeights(fifo), ['E_BAD_CHECKPOINT'], fifo);
    await refusedPromptly(() => pipe.loadTextualInversion(fifo, { token: '<fifo>' }), ['E_BAD_CHECKPOINT'], fifo);
    // the pipeline still works
    const out = await pipe.generate({ prompt: 'a', numInferenceSteps: 1, width: 32, height: 32, seed: 1 });
    expect(out.images).toHaveLength(1);
  });
});
