// Option validation (lib/options.ts): every rejection is an InvalidArgumentError with code
// E_INVALID_ARGUMENT and a message naming the field, the value received and the values allowed.
import { describe, it, expect } from 'vitest';
import {
  InvalidArgumentError, SdError, parseLoadOptions, resolveGenerateOptions,
  type GenerateOptions, type Img2ImgOptions, type ModelDefaults,
} from '../lib/index.js';

const sd15: ModelDefaults = { family: 'sd1', vaeScaleFactor: 8, sampleSize: 64 };
const tiny: ModelDefaults = { family: 'sd1', vaeScaleFactor: 2, sampleSize: 32 };
const sdxl: ModelDefaults = { family: 'sdxl', vaeScaleFactor: 8, sampleSize: 128 };

/** Runs fn, expects an InvalidArgumentError, returns its message. */
function rejection(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e).toBeInstanceOf(SdError);
    expect((e as SdError).code).toBe('E_INVALID_ARGUMENT');
    return (e as Error).message;
  }
  throw new Error('expected an InvalidArgumentError, nothing was thrown');
}
const bad = (o: unknown, model: ModelDefaults = sd15) => rejection(() => resolveGenerateOptions(o as GenerateOptions, model));
const badImg = (o: unknown) => rejection(() => resolveGenerateOptions(o as Img2ImgOptions, sd15, 'img2img', { width: 64, height: 64 }));

describe('generate options: defaults', () => {
  it('fills diffusers defaults and the model size', () => {
    const o = resolveGenerateOptions({ prompt: 'a cat' }, sd15);
    expect(o.prompts).toEqual(['a cat']);
    expect(o.negativePrompts).toBeUndefined();
    expect(o.numInferenceSteps).toBe(50);
    expect(o.guidanceScale).toBe(7.5);
    expect(o.width).toBe(512);
    expect(o.height).toBe(512);
    expect(o.numImagesPerPrompt).toBe(1);
    expect(o.eta).toBe(0);
    expect(o.outputType).toBe('image');
    expect(Number.isInteger(o.seed)).toBe(true);
    expect(o.seed).toBeGreaterThanOrEqual(0);
    expect(o.seed).toBeLessThan(2 ** 32);
  });

  it('derives the default size from sampleSize × vaeScaleFactor (tiny model: 64, SDXL: 1024)', () => {
    expect(resolveGenerateOptions({ prompt: '' }, tiny).width).toBe(64);
    expect(resolveGenerateOptions({ prompt: '' }, sdxl).height).toBe(1024);
  });

  it('keeps given values and repeats a string negative prompt per prompt', () => {
    const o = resolveGenerateOptions({
      prompt: ['a', 'b'], negativePrompt: 'blurry', numInferenceSteps: 10, guidanceScale: 1, width: 64, height: 128,
      seed: 42, numImagesPerPrompt: 2, clipSkip: 2, eta: 0.5, outputType: 'latent',
    }, sd15);
    expect(o.negativePrompts).toEqual(['blurry', 'blurry']);
    expect([o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.seed, o.numImagesPerPrompt, o.clipSkip, o.eta])
      .toEqual([10, 1, 64, 128, 42, 2, 2, 0.5]);
    expect(o.outputType).toBe('latent');
  });

  it('accepts latents of the expected shape [numPrompts·n, 4, h/8, w/8]', () => {
    const latents = { data: new Float32Array(4 * 4 * 8 * 16), shape: [4, 4, 8, 16] };
    const o = resolveGenerateOptions({ prompt: ['a', 'b'], numImagesPerPrompt: 2, width: 128, height: 64, latents }, sd15);
    expect(o.latents).toBe(latents);
  });

  it('random seeds differ between calls', () => {
    const seeds = new Set(Array.from({ length: 8 }, () => resolveGenerateOptions({ prompt: 'x' }, sd15).seed));
    expect(seeds.size).toBeGreaterThan(1);
  });
});

describe('generate options: rejections name the field, the value and the range', () => {
  it('width 7', () => {
    const m = bad({ prompt: 'x', width: 7 });
    expect(m).toBe('width must be a positive multiple of 8 not above 8192; received 7');
  });
  it('height 8200 and 0', () => {
    expect(bad({ prompt: 'x', height: 8200 })).toMatch(/^height .*8192; received 8200$/);
    expect(bad({ prompt: 'x', height: 0 })).toMatch(/^height .*; received 0$/);
  });
  it('steps 0, 1001, 2.5 and a string', () => {
    expect(bad({ prompt: 'x', numInferenceSteps: 0 })).toBe('numInferenceSteps must be an integer in [1, 1000]; received 0');
    expect(bad({ prompt: 'x', numInferenceSteps: 1001 })).toBe('numInferenceSteps must be an integer in [1, 1000]; received 1001');
    expect(bad({ prompt: 'x', numInferenceSteps: 2.5 })).toBe('numInferenceSteps must be an integer in [1, 1000]; received 2.5');
    expect(bad({ prompt: 'x', numInferenceSteps: '20' })).toBe('numInferenceSteps must be an integer in [1, 1000]; received "20"');
  });
  it('NaN, Infinity and negative guidance', () => {
    expect(bad({ prompt: 'x', guidanceScale: NaN })).toBe('guidanceScale must be a finite number ≥ 0; received NaN');
    expect(bad({ prompt: 'x', guidanceScale: Infinity })).toBe('guidanceScale must be a finite number ≥ 0; received Infinity');
    expect(bad({ prompt: 'x', guidanceScale: -1 })).toBe('guidanceScale must be a finite number ≥ 0; received -1');
  });
  it('empty prompt array, missing prompt, non-string entries', () => {
    expect(bad({ prompt: [] })).toBe('prompt must be a string or a non-empty array of strings; received []');
    expect(bad({})).toBe('prompt must be a string or a non-empty array of strings; received undefined');
    expect(bad({ prompt: ['a', 3] })).toBe('prompt must be a string or a non-empty array of strings; received ["a",3]');
  });
  it('negativePrompt length mismatch', () => {
    const m = bad({ prompt: ['a', 'b'], negativePrompt: ['x', 'y', 'z'] });
    expect(m).toBe('negativePrompt must be a string or an array with one entry per prompt (2); received an array of length 3');
  });
  it('latents of the wrong shape, wrong length, wrong type', () => {
    const m = bad({ prompt: 'x', width: 64, height: 64, latents: { data: new Float32Array(2 * 4 * 8 * 8), shape: [2, 4, 8, 8] } });
    expect(m).toBe('latents must have shape [1, 4, 8, 8] ([numPrompts·numImagesPerPrompt, 4, height/8, width/8]); received [2, 4, 8, 8]');
    // the tiny model's factor 2 is used, not a hard-coded 8
    expect(bad({ prompt: 'x', latents: { data: new Float32Array(4 * 8 * 8), shape: [1, 4, 8, 8] } }, tiny))
      .toMatch(/^latents must have shape \[1, 4, 32, 32\] .*height\/2, width\/2\]\); received \[1, 4, 8, 8\]$/);
    expect(bad({ prompt: 'x', width: 64, height: 64, latents: { data: new Float32Array(5), shape: [1, 4, 8, 8] } }))
      .toBe('latents.data must hold 256 float32 values for shape [1, 4, 8, 8]; received 5');
    expect(bad({ prompt: 'x', latents: { data: [1, 2], shape: [1, 4, 8, 8] } })).toMatch(/^latents must be \{ data: Float32Array/);
  });
  it('numImagesPerPrompt, seed, clipSkip, eta, outputType', () => {
    expect(bad({ prompt: 'x', numImagesPerPrompt: 65 })).toBe('numImagesPerPrompt must be an integer in [1, 64]; received 65');
    expect(bad({ prompt: 'x', seed: -1 })).toMatch(/^seed must be a non-negative safe integer .*; received -1$/);
    expect(bad({ prompt: 'x', seed: 2 ** 53 })).toMatch(/^seed .*; received 9007199254740992$/);
    expect(bad({ prompt: 'x', clipSkip: 0 })).toBe('clipSkip must be an integer ≥ 1; received 0');
    expect(bad({ prompt: 'x', eta: -0.1 })).toBe('eta must be a finite number ≥ 0; received -0.1');
    expect(bad({ prompt: 'x', outputType: 'pil' })).toBe('outputType must be \'image\' or \'latent\'; received "pil"');
  });
  it('onStep and signal types', () => {
    expect(bad({ prompt: 'x', onStep: 3 })).toBe('onStep must be a function; received 3');
    expect(bad({ prompt: 'x', signal: {} })).toBe('signal must be an AbortSignal; received {}');
  });
  it('unknown options (typos) are named', () => {
    expect(bad({ prompt: 'x', numSteps: 20 })).toMatch(/^generate options has no option 'numSteps'; known options: prompt, .*numInferenceSteps/);
  });
  it('options that are not an object', () => {
    expect(bad(undefined)).toBe('generate options must be an object; received undefined');
    expect(bad('a cat')).toBe('generate options must be an object; received "a cat"');
  });
  it('several problems are all reported', () => {
    const m = bad({ prompt: 'x', width: 7, numInferenceSteps: 0 });
    expect(m).toContain('width');
    expect(m).toContain('numInferenceSteps');
  });
  it('prompt2 on a non-SDXL model; accepted on SDXL', () => {
    expect(bad({ prompt: 'x', prompt2: 'y' })).toMatch(/^prompt2 is used by SDXL models only .*this model is sd1/);
    expect(resolveGenerateOptions({ prompt: ['x', 'z'], prompt2: 'y' }, sdxl).prompts2).toEqual(['y', 'y']);
  });
  it('size not divisible by the VAE factor', () => {
    expect(bad({ prompt: 'x', width: 8 }, { family: 'sd1', vaeScaleFactor: 16, sampleSize: 8 }))
      .toBe("width must be a multiple of the model's vaeScaleFactor (16); received 8");
  });
});

describe('img2img options', () => {
  const image = { data: new Uint8Array(64 * 64 * 3), width: 64, height: 64, channels: 3 as const };
  it('defaults strength to 0.8 and takes the size from the image', () => {
    const o = resolveGenerateOptions({ prompt: 'x', image }, sd15, 'img2img', { width: 70, height: 69 });
    expect(o.strength).toBe(0.8);
    expect([o.width, o.height]).toEqual([64, 64]); // rounded down to a multiple of 8
  });
  it('strength 1.5 and -0.1', () => {
    expect(badImg({ prompt: 'x', image, strength: 1.5 })).toBe('strength must be a number in [0, 1]; received 1.5');
    expect(badImg({ prompt: 'x', image, strength: -0.1 })).toBe('strength must be a number in [0, 1]; received -0.1');
  });
  it('strength too small for any step', () => {
    expect(badImg({ prompt: 'x', image, strength: 0.05, numInferenceSteps: 10 }))
      .toMatch(/^strength × numInferenceSteps must give at least one denoising step .*received strength 0.05$/);
  });
  it('a missing or malformed image', () => {
    expect(badImg({ prompt: 'x' })).toMatch(/^image must be a file path, a Buffer .*; received undefined$/);
    expect(badImg({ prompt: 'x', image: { data: new Uint8Array(3), width: 1, height: 1, channels: 2 } }))
      .toMatch(/^image must be .*; received an object with keys \{data, width, height, channels\}$/);
  });
  it('latents are not an img2img option', () => {
    expect(badImg({ prompt: 'x', image, latents: { data: new Float32Array(1), shape: [1] } }))
      .toMatch(/^img2img options has no option 'latents'/);
  });
});

describe('load options', () => {
  const badLoad = (o: unknown) => rejection(() => parseLoadOptions(o as never));
  it('defaults to cpu / float32', () => {
    expect(parseLoadOptions(undefined)).toEqual({ device: 'cpu', dtype: 'float32' });
    expect(parseLoadOptions({ device: 'cuda:1', dtype: 'float16', variant: 'fp16', threads: 4 }))
      .toEqual({ device: 'cuda:1', dtype: 'float16', variant: 'fp16', threads: 4 });
  });
  it('rejects bad devices, dtypes, threads and unknown keys', () => {
    expect(badLoad({ device: 'gpu' })).toBe("device must be 'cpu', 'cuda' or 'cuda:N'; received \"gpu\"");
    expect(badLoad({ dtype: 'fp16' })).toBe("dtype must be 'float32', 'float16' or 'bfloat16'; received \"fp16\"");
    expect(badLoad({ threads: 0 })).toBe('threads must be an integer in [1, 1024]; received 0');
    expect(badLoad({ dtypes: 'float16' })).toMatch(/^load options has no option 'dtypes'; known options: device, dtype/);
  });
});
