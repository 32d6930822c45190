// GeneratedImage encoding (PNG through sharp, A1111 `parameters` text chunk), scheduler →
// A1111 sampler names, and loadInputImage (path / Buffer / raw; resize; errors).
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as zlib from 'node:zlib';
import { deflateSync, inflateSync } from 'node:zlib';
import sharp from 'sharp';
import {
  GeneratedImage, InvalidArgumentError, formatA1111Parameters, insertPngText, loadInputImage, readPngText, samplerName,
  type GenerationParameters,
} from '../lib/index.js';
import { crc32 } from '../lib/image.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-img-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A deterministic RGB test pattern [h, w, 3]. */
function pattern(w: number, h: number, seed = 1): Buffer {
  const b = Buffer.alloc(w * h * 3);
  let s = seed;
  for (let i = 0; i < b.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    b[i] = (i * 7 + (s >>> 24)) & 0xff;
  }
  return b;
}

const params: GenerationParameters = {
  prompt: 'a photo of an astronaut riding a horse on mars',
  negativePrompt: 'blurry',
  numInferenceSteps: 20,
  guidanceScale: 7.5,
  seed: 42,
  width: 24,
  height: 16,
  scheduler: 'EulerAncestralDiscreteScheduler',
  model: 'tiny-sd15',
};

/** Independent PNG chunk walker (does not use lib/image.ts). */
function chunks(png: Buffer): { type: string; data: Buffer }[] {
  const out: { type: string; data: Buffer }[] = [];
  let pos = 8;
  while (pos < png.length) {
    const len = png.readUInt32BE(pos);
    out.push({ type: png.toString('latin1', pos + 4, pos + 8), data: png.subarray(pos + 8, pos + 8 + len) });
    pos += 12 + len;
  }
  return out;
}

describe('A1111 infotext', () => {
  it('formats like AUTOMATIC1111', () => {
    expect(formatA1111Parameters(params)).toBe(
      'a photo of an astronaut riding a horse on mars\n' +
      'Negative prompt: blurry\n' +
      'Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 24x16, Model: tiny-sd15');
  });
  it('omits an empty negative prompt and adds clip skip, strength, batch; quotes values with commas', () => {
    expect(formatA1111Parameters({
      ...params, negativePrompt: '', clipSkip: 2, strength: 0.6, batchSize: 2, batchIndex: 1, model: 'my, model',
      scheduler: 'DPMSolverMultistepScheduler', schedulerConfig: { use_karras_sigmas: true },
    })).toBe(
      'a photo of an astronaut riding a horse on mars\n' +
      'Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 24x16, Model: "my, model", ' +
      'Clip skip: 2, Denoising strength: 0.6, Batch size: 2, Batch pos: 1');
  });
  it('maps diffusers schedulers to A1111 sampler names', () => {
    expect(samplerName('EulerAncestralDiscreteScheduler')).toBe('Euler a');
    expect(samplerName('EulerDiscreteScheduler')).toBe('Euler');
    expect(samplerName('EulerDiscreteScheduler', { use_karras_sigmas: true })).toBe('Euler Karras');
    expect(samplerName('DPMSolverMultistepScheduler')).toBe('DPM++ 2M');
    expect(samplerName('DPMSolverMultistepScheduler', { use_karras_sigmas: true })).toBe('DPM++ 2M Karras');
    expect(samplerName('DPMSolverMultistepScheduler', { algorithm_type: 'sde-dpmsolver++', use_karras_sigmas: true })).toBe('DPM++ 2M SDE Karras');
    expect(samplerName('DDIMScheduler')).toBe('DDIM');
    expect(samplerName('PNDMScheduler')).toBe('PLMS');
    expect(samplerName('LMSDiscreteScheduler', { use_karras_sigmas: true })).toBe('LMS Karras');
    expect(samplerName('HeunDiscreteScheduler')).toBe('Heun');
    expect(samplerName('UniPCMultistepScheduler')).toBe('UniPC');
    expect(samplerName('LCMScheduler')).toBe('LCM');
    expect(samplerName('SomethingNew')).toBe('SomethingNew');
  });
});

describe('GeneratedImage.toPNG', () => {
  const img = new GeneratedImage(24, 16, pattern(24, 16), params);

  it('round-trips the pixels exactly through sharp', async () => {
    const png = await img.toPNG();
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([24, 16, 3]);
    expect(data.equals(img.data)).toBe(true);
  });

  it('carries the A1111 string in a tEXt chunk "parameters" right after IHDR, with a valid CRC', async () => {
    const png = await img.toPNG();
    const cs = chunks(png);
    expect(cs[0].type).toBe('IHDR');
    expect(cs[1].type).toBe('tEXt');
    const nul = cs[1].data.indexOf(0);
    expect(cs[1].data.toString('latin1', 0, nul)).toBe('parameters');
    expect(cs[1].data.toString('latin1', nul + 1)).toBe(img.infotext);
    // parsed back through the library reader too (which checks every CRC)
    expect(readPngText(png)).toEqual({ parameters: formatA1111Parameters(params) });
    // and sharp still decodes the file (chunk layout valid)
    const meta = await sharp(png).metadata();
    expect(meta.format).toBe('png');
  });

  it('writes non-Latin-1 text as UTF-8 iTXt (as PIL does)', async () => {
    const p2 = { ...params, prompt: '宇宙飛行士 🐴' };
    const png = await new GeneratedImage(24, 16, pattern(24, 16), p2).toPNG();
    const c = chunks(png)[1];
    expect(c.type).toBe('iTXt');
    expect(readPngText(png).parameters).toBe(formatA1111Parameters(p2));
  });

  it('can leave the metadata out', async () => {
    const png = await img.toPNG({ metadata: false });
    expect(readPngText(png)).toEqual({});
  });

  it('JPEG and WebP encode; save() picks the format by extension', async () => {
    const jpg = await img.toJPEG({ quality: 95 });
    expect((await sharp(jpg).metadata()).format).toBe('jpeg');
    const webp = await img.toWebP();
    expect((await sharp(webp).metadata()).format).toBe('webp');
    const file = path.join(tmp, 'saved.png');
    await img.save(file);
    expect(readPngText(fs.readFileSync(file)).parameters).toBe(img.infotext);
    await expect(img.save(path.join(tmp, 'x.gif'))).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });

  it('rejects pixel data of the wrong length', () => {
    expect(() => new GeneratedImage(24, 16, new Uint8Array(10), params)).toThrow(InvalidArgumentError);
  });
});

describe('PNG text helpers', () => {
  it('crc32 matches the standard check value and zlib', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    const zc = (zlib as { crc32?: (b: Buffer) => number }).crc32; // Node ≥ 20.15 / 22.2
    if (zc) expect(crc32(Buffer.from('parameters'))).toBe(zc(Buffer.from('parameters')));
  });
  it('reads compressed iTXt and zTXt chunks written by others', async () => {
    const base = await sharp(pattern(8, 8), { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer();
    const mk = (type: string, body: Buffer) => {
      const b = Buffer.alloc(12 + body.length);
      b.writeUInt32BE(body.length, 0);
      b.write(type, 4, 'latin1');
      body.copy(b, 8);
      b.writeUInt32BE(crc32(b.subarray(4, 8 + body.length)), 8 + body.length);
      return b;
    };
    const itxt = mk('iTXt', Buffer.concat([Buffer.from('a\0\x01\0en\0\0'), deflateSync(Buffer.from('héllo', 'utf8'))]));
    const ztxt = mk('zTXt', Buffer.concat([Buffer.from('b\0\0'), deflateSync(Buffer.from('world', 'latin1'))]));
    const png = Buffer.concat([base.subarray(0, 33), itxt, ztxt, base.subarray(33)]);
    expect(readPngText(png)).toEqual({ a: 'héllo', b: 'world' });
    expect(inflateSync(deflateSync(Buffer.from('x'))).toString()).toBe('x');
  });
  it('insertPngText refuses a non-PNG; readPngText refuses a bad CRC', async () => {
    expect(() => insertPngText(Buffer.from('not a png'), { a: 'b' })).toThrow(/not a PNG/);
    const png = await new GeneratedImage(24, 16, pattern(24, 16), params).toPNG();
    const broken = Buffer.from(png);
    broken[45] ^= 0xff; // inside the tEXt chunk data
    expect(() => readPngText(broken)).toThrow(/bad CRC/);
  });
});

describe('loadInputImage', () => {
  const raw = pattern(40, 24, 3);

  it('decodes a PNG file path exactly', async () => {
    const file = path.join(tmp, 'in.png');
    await sharp(raw, { raw: { width: 40, height: 24, channels: 3 } }).png().toFile(file);
    const img = await loadInputImage(file);
    expect([img.width, img.height, img.channels]).toEqual([40, 24, 3]);
    expect(img.data.equals(raw)).toBe(true);
  });

  it('decodes a Buffer and drops alpha (no compositing)', async () => {
    const rgba = Buffer.alloc(40 * 24 * 4);
    for (let i = 0; i < 40 * 24; i++) {
      raw.copy(rgba, i * 4, i * 3, i * 3 + 3);
      rgba[i * 4 + 3] = i % 256;
    }
    const png = await sharp(rgba, { raw: { width: 40, height: 24, channels: 4 } }).png().toBuffer();
    const img = await loadInputImage(png);
    expect(img.data.equals(raw)).toBe(true);
  });

  it('decodes JPEG and WebP buffers', async () => {
    const jpg = await sharp(raw, { raw: { width: 40, height: 24, channels: 3 } }).jpeg().toBuffer();
    const webp = await sharp(raw, { raw: { width: 40, height: 24, channels: 3 } }).webp().toBuffer();
    for (const b of [jpg, webp]) {
      const img = await loadInputImage(b);
      expect([img.width, img.height, img.data.length]).toEqual([40, 24, 40 * 24 * 3]);
    }
  });

  it('takes raw RGB pixels as they are', async () => {
    const img = await loadInputImage({ data: new Uint8Array(raw), width: 40, height: 24, channels: 3 });
    expect(img.data.equals(raw)).toBe(true);
  });

  it('rounds a size that is not a multiple of 8 down (diffusers) and resizes to a target', async () => {
    const odd = pattern(45, 30, 4);
    const a = await loadInputImage({ data: odd, width: 45, height: 30, channels: 3 });
    expect([a.width, a.height, a.data.length]).toEqual([40, 24, 40 * 24 * 3]);
    const b = await loadInputImage({ data: odd, width: 45, height: 30, channels: 3 }, 64, 32);
    expect([b.width, b.height, b.data.length]).toEqual([64, 32, 64 * 32 * 3]);
    // one dimension given: the other comes from the image
    const c = await loadInputImage({ data: odd, width: 45, height: 30, channels: 3 }, 16);
    expect([c.width, c.height]).toEqual([16, 24]);
  });

  it('keeps a uniform image uniform when resizing (lanczos does not shift colours)', async () => {
    const flat = Buffer.alloc(20 * 20 * 3, 77);
    const r = await loadInputImage({ data: flat, width: 20, height: 20, channels: 3 }, 32, 32);
    expect(r.data.every((v) => v === 77)).toBe(true);
  });

  it('a non-image Buffer → E_INVALID_ARGUMENT "image is not a decodable image"', async () => {
    const p = loadInputImage(Buffer.from('this is not an image at all'));
    await expect(p).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(loadInputImage(Buffer.from('garbage'))).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(/^image is not a decodable image: /),
    });
  });

  it('a missing file, wrong raw length, too small, bad target size', async () => {
    await expect(loadInputImage(path.join(tmp, 'nope.png'))).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(/^image file ".*nope.png" cannot be read/),
    });
    await expect(loadInputImage({ data: new Uint8Array(5), width: 4, height: 4, channels: 3 })).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT', message: 'image.data must hold width×height×channels = 48 bytes; received 5',
    });
    await expect(loadInputImage({ data: new Uint8Array(7 * 7 * 3), width: 7, height: 7, channels: 3 })).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT', message: 'image must be at least 8×8 pixels; received 7×7',
    });
    await expect(loadInputImage(raw, 0, 8)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(/^width /) });
  });
});
